"""`uingest bench`: run the benchmark programs on the MicroPython unix port
and print one table, every figure a ratio against a baseline measured in the
same run."""

from __future__ import annotations

import contextlib
import datetime
import os
import subprocess
import sys
from typing import NamedTuple

from .bundle import BOARDS, build, romboot_args, romfs_image
from .common import ArgumentParser, ingest, number_option
from .loopback import FakeRemoteManagement, FakeServer, LatencyProxy, reply, start_serve
from .mpytools import micropython, unix_port_env
from .progress import Progress

# micropython-lib's cbor2 and hmac, the baseline of the message table, are looked for (unless
# --baseline DIR names them) where `micropython -m mip install cbor2 hmac` puts them on the unix port.
# They are optional: without them the table has no micropython-lib row, and the bench says how to get one.
MIP_LIB = os.path.join(os.path.expanduser("~"), ".micropython", "lib")
BASELINE_HINT = (
    "bench: no micropython-lib cbor2 + hmac row: install them with `micropython -m mip install cbor2 hmac`"
    " or pass --baseline DIR (a folder holding cbor2/ and hmac.py)"
)


def _there(folder: str, name: str) -> bool:
    """A module or package name in folder (as MicroPython imports it)."""
    return any(os.path.exists(os.path.join(folder, name + ext)) for ext in ("", ".py", ".mpy"))


def _has_baselines(folder: str) -> bool:
    return os.path.isdir(folder) and _there(folder, "cbor2") and _there(folder, "hmac")


# The app-path row's HTTP client, looked for beside cbor2 and hmac: micropython-lib's requests, else its
# ancestor urequests (the same post()), else the requests frozen into the unix port (micropython-lib's too).
REQUESTS_HINT = (
    "bench: no app-path row (the app's per-window path against cbor2 + hmac + requests): install them with"
    " `micropython -m mip install cbor2 hmac requests`, or pass --baseline DIR holding cbor2/, hmac.py and"
    " requests/ or urequests/ (PyPI's micropython-urequests)"
)


def find_requests(baselines: str) -> tuple[str, str] | None:
    """(module, where) of the app-path row's HTTP client beside the baselines (a folder), or None: see
    REQUESTS_HINT."""
    for name in ("requests", "urequests"):
        if _there(baselines, name):
            return name, baselines
    frozen = subprocess.run(
        [micropython(), "-c", "import requests"], capture_output=True, env=unix_port_env(), timeout=30
    )
    return ("requests", "frozen into the unix port") if frozen.returncode == 0 else None


def find_baselines(given: str | None = None) -> str | None:
    """The folder holding micropython-lib's cbor2 and hmac, or None. given: --baseline (only that one)."""
    folder = given or MIP_LIB
    return folder if _has_baselines(folder) else None


# The programs the bench runs on the unix port (shipped in the package: see pyproject.toml)
PROGRAMS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "bench_programs")
BENCH_MESSAGE = os.path.join(PROGRAMS, "bench_message.py")
BENCH_UPLOAD = os.path.join(PROGRAMS, "bench_upload.py")
BENCH_SAMPLER = os.path.join(PROGRAMS, "bench_sampler.py")
BENCH_AUDIO_FLASH = os.path.join(PROGRAMS, "bench_audio_flash.py")
BENCH_SERVE_BODIES = os.path.join(PROGRAMS, "bench_serve_bodies.py")
BENCH_APP_PATH = os.path.join(PROGRAMS, "bench_app_path.py")
BENCH_API_KEY = "ei_bench_key"
ROUNDS = 5  # upload rounds per server; the table shows the median


def minimal_responder(tls_context=None) -> FakeServer:
    """A minimal HTTP/1.1 server: answers every request 200 at once, so
    upload timings show the client's own costs (connect, send, parse)."""
    return FakeServer(default=reply(200, b"stored.cbor\n"), tls=tls_context, record=False)


def run_upload_bench(
    n: int, url: str, bundle_dir: str, round_no: int = 0, ca_file: str | None = None
) -> dict[str, tuple[int, int, int]]:
    env = unix_port_env(bundle_dir)
    proc = subprocess.run(
        [micropython(), "-X", "heapsize=1M", BENCH_UPLOAD, url, str(n), str(round_no * 2 * n)]
        + ([ca_file] if ca_file else []),
        input=BENCH_API_KEY + "\n",
        capture_output=True,
        text=True,
        env=env,
    )
    if proc.returncode != 0:
        raise SystemExit("upload benchmark failed on MicroPython:\n" + proc.stdout + proc.stderr)
    out = {}
    for line in proc.stdout.splitlines():
        name, us, ok, conns = line.split()
        out[name] = (int(us), int(ok), int(conns))
    return out


def run_message_bench(repeats: int, bundle_dir: str, baselines: str | None = None) -> dict[str, tuple[int, int]]:
    path = [bundle_dir]
    if baselines:
        path.append(baselines)  # only this program sees the baselines
    env = unix_port_env(*path)
    proc = subprocess.run(
        [micropython(), "-X", "heapsize=4M", BENCH_MESSAGE, str(repeats)], capture_output=True, text=True, env=env
    )
    if proc.returncode != 0:
        raise SystemExit("benchmark failed on MicroPython:\n" + proc.stdout + proc.stderr)
    out = {}
    for line in proc.stdout.splitlines():
        name, us, size = line.split()
        out[name] = (int(us), int(size))
    return out


class Row(NamedTuple):
    """One row of the message table. case: the result whose time (and, with
    size, bytes) the row shows; None for a ratio alone. The ratio column is
    wording % (a / b for each (a, b) of over): times, or with sizes the
    bodies' sizes in percent; an a that is a tuple of cases is their sum.
    A row naming a case the run did not report (a baseline not installed)
    is left out."""

    label: str
    case: str | None
    wording: str
    over: tuple = ()
    target: str = ""
    size: bool = True
    sizes: bool = False


# the cases bench_message.py reports
IMU, IMU_PORTABLE, IMU_JSON = "imu_cbor_signed", "imu_cbor_signed_portable", "imu_json_signed"
IMU_JSON_PORTABLE, IMU_JSON_INTO = "imu_json_signed_portable", "imu_json_into_signed"
IMU_MPLIB, IMU_DUMPS = "imu_mplib_cbor2_signed", "imu_jsondumps_signed"
AUDIO, AUDIO_INTO, AUDIO_JSON, AUDIO_DUMPS = "audio_cbor", "audio_cbor_into", "audio_json", "audio_jsondumps"
AUDIO_SIGNED, AUDIO_INTO_SIGNED, SHA256 = "audio_cbor_signed", "audio_cbor_into_signed", "audio_sha256_only"
MESSAGE_ROWS = (
    Row("encode+sign 200x3 float window: uingest CBOR", IMU, "1.00 (reference)"),
    Row("  uingest CBOR, portable path (no viper)", IMU_PORTABLE, "%.1fx slower", ((IMU_PORTABLE, IMU),)),
    Row("  micropython-lib cbor2 + hmac", IMU_MPLIB, "uingest %.1fx faster", ((IMU_MPLIB, IMU),), "20x"),
    Row("  json.dumps + uingest hmac", IMU_DUMPS, "uingest %.1fx faster", ((IMU_DUMPS, IMU),), "3x"),
    Row("  uingest JSON", IMU_JSON, "%.1fx slower", ((IMU_JSON, IMU),)),
    Row("  uingest JSON vs json.dumps + uingest hmac", None, "uingest %.2fx faster", ((IMU_DUMPS, IMU_JSON),), "1x"),
    Row(
        "  uingest JSON encode_into() vs json.dumps + uingest hmac",
        IMU_JSON_INTO,
        "uingest %.2fx faster",
        ((IMU_DUMPS, IMU_JSON_INTO),),
        "1x",
    ),
    Row("  uingest JSON, portable path (no viper)", IMU_JSON_PORTABLE, "%.1fx slower", ((IMU_JSON_PORTABLE, IMU),)),
    Row("body size: uingest CBOR / json.dumps", None, "%.0f%%", ((IMU, IMU_DUMPS),), "<= 35%", sizes=True),
    Row("body size: uingest CBOR / uingest JSON", None, "%.0f%%", ((IMU, IMU_JSON),), sizes=True),
    Row("1 s of 16 kHz int16 audio, unsigned: uingest CBOR encode()", AUDIO, "1.00 (reference)"),
    Row("  uingest CBOR encode_into() a reused buffer", AUDIO_INTO, "%.2fx encode()'s time", ((AUDIO_INTO, AUDIO),)),
    Row("  json.dumps", AUDIO_DUMPS, "encode() %.1fx faster", ((AUDIO_DUMPS, AUDIO),), "50x"),
    Row("  json.dumps vs encode_into()", None, "encode_into() %.1fx faster", ((AUDIO_DUMPS, AUDIO_INTO),), "50x"),
    Row("  uingest JSON", AUDIO_JSON, "%.1fx json.dumps' speed", ((AUDIO_DUMPS, AUDIO_JSON),), "10x"),
    Row(
        "  uingest CBOR signed vs SHA-256 of the body alone",
        AUDIO_SIGNED,
        "%.2fx the hashing time",
        ((AUDIO_SIGNED, SHA256),),
        size=False,
    ),
    Row(
        "  uingest CBOR signed, encode_into()",
        AUDIO_INTO_SIGNED,
        "%.2fx hashing (encode+hash: %.2fx)",
        ((AUDIO_INTO_SIGNED, SHA256), ((AUDIO_INTO, SHA256), SHA256)),  # the second: encode_into + hash alone
        size=False,
    ),
)
MESSAGE_ROW = "| %-58s | %10s | %-40s | %8s |"


def table(r: dict[str, tuple[int, int]]) -> str:
    """The message table of run_message_bench's results (name -> (us, bytes))."""

    def cases(a):
        return a if isinstance(a, tuple) else (a,)

    def value(a, column):
        return sum(r[k][column] for k in cases(a))

    lines = [
        MESSAGE_ROW % ("case (MicroPython unix port, median)", "us", "ratio", "bytes"),
        "|" + "-" * 60 + "|" + "-" * 12 + "|" + "-" * 42 + "|" + "-" * 10 + "|",
    ]
    for row in MESSAGE_ROWS:
        named = [row.case] if row.case else []
        named += [k for a, b in row.over for k in cases(a) + (b,)]
        if any(k not in r for k in named):
            continue
        column = 1 if row.sizes else 0
        ratios = tuple((100 if row.sizes else 1) * value(a, column) / value(b, column) for a, b in row.over)
        text = row.wording % ratios if ratios else row.wording
        if row.target:
            text += " (target %s)" % row.target
        us, size = (r[row.case][0], r[row.case][1] if row.size else "") if row.case else ("", "")
        lines.append(MESSAGE_ROW % (row.label, us, text, size))
    return "\n".join(lines)


# the options' types: a size of 0 would fail minutes into the run
WHOLE, COUNT, POSITIVE = number_option(int, 1), number_option(int, 0), number_option(float, 0, strictly=True)


def main(argv=None) -> int:
    ap = ArgumentParser(prog="uingest bench", description="Benchmarks on the MicroPython unix port.")
    ap.add_argument("--repeats", type=WHOLE, default=25, help="runs per case; the median is reported (default 25)")
    ap.add_argument("--uploads", type=WHOLE, default=200, help="windows posted per upload case (default 200)")
    ap.add_argument(
        "--sampler-seconds",
        type=WHOLE,
        default=60,
        help="length of the 100 Hz sampler run (default 60; the 1 kHz run is a sixth of it)",
    )
    ap.add_argument("--link-windows", type=WHOLE, default=40, help="windows per round over the delayed link (40)")
    ap.add_argument(
        "--devices", type=WHOLE, default=20, help="concurrent devices posting to uingest serve (default 20)"
    )
    ap.add_argument(
        "--load-devices", type=WHOLE, default=100, help="devices of the larger serve-load runs (default 100)"
    )
    ap.add_argument(
        "--idle-connections",
        type=COUNT,
        default=500,
        help="idle connections held open during the second larger run, half silent, half kept alive (default 500)",
    )
    ap.add_argument("--device-windows", type=WHOLE, default=25, help="windows each device posts (default 25)")
    ap.add_argument(
        "--open-loop-rate",
        type=POSITIVE,
        default=1000,
        help="windows/s the --load-devices offer in all in the open-loop runs, each at its own pace (default 1000)",
    )
    ap.add_argument("--open-loop-seconds", type=POSITIVE, default=5, help="length of each open-loop run (default 5)")
    ap.add_argument("--large-window-mb", type=WHOLE, default=40, help="size of the large-window run (default 40)")
    ap.add_argument(
        "--app-windows",
        type=WHOLE,
        default=100,
        help="windows per round of the app-path row (default 100, %d rounds)" % APP_PATH_ROUNDS,
    )
    ap.add_argument(
        "--quick",
        action="store_true",
        help="leave out the whole app's heap searches with remote management and TLS (minutes of runs)",
    )
    ap.add_argument(
        "--baseline", metavar="DIR", help="folder holding micropython-lib's cbor2/ and hmac.py (default: mip's lib)"
    )
    args = ap.parse_args(argv)
    baselines = find_baselines(args.baseline)
    if args.baseline and baselines is None:
        print(
            "bench: --baseline %s holds no cbor2 and hmac: `micropython -m mip install --target %s cbor2 hmac`"
            % (args.baseline, args.baseline),
            file=sys.stderr,
        )
        return 2
    import tempfile

    # the serve runs on disk: in the home folder's disk, where fsync is real; their folders removed at the end
    with tempfile.TemporaryDirectory() as tmp, tempfile.TemporaryDirectory(dir=os.path.expanduser("~")) as disk:
        build(tmp, march="host")  # what we ship: .mpy with the viper kernels
        romfs = os.path.join(tmp, "uingest.romfs")
        with open(romfs, "wb") as f:
            f.write(romfs_image(tmp))
        run_steps(bench_steps(args, tmp, romfs, baselines, disk))
    return 0


def bench_steps(args, tmp: str, romfs: str, baselines: str | None, disk: str) -> list:
    """What `uingest bench` measures, in the order it prints: (what the progress bar names, a function that
    measures and returns the lines to print). disk: the folder the serve runs on disk keep their data folders in
    (see _data_folder)."""

    def message_table():
        r = run_message_bench(args.repeats, tmp, baselines)
        head = "uingest bench, %s, %d repeats per case, kernels %s" % (
            datetime.date.today().isoformat(),
            args.repeats,
            "on" if r["kernels"][0] else "off",
        )
        return [head, table(r)] + ([BASELINE_HINT] if baselines is None else [])

    per_device = args.device_windows
    serve_input = []  # the signed bodies every serve run posts, encoded once on the unix port

    def encode_bodies():
        encoders = max(args.devices, args.load_devices)
        open_windows = round(args.open_loop_rate * args.open_loop_seconds / args.load_devices) * args.load_devices
        serve_input.extend(serve_bodies(tmp, encoders, max(per_device, -(-open_windows // encoders))))  # distinct
        return []

    def load(devices, **kw):
        return lambda: [serve_load_line(serve_load(*serve_input, devices, per_device, **kw))]

    def open_loop(**kw):
        paced = (args.load_devices, args.open_loop_rate, args.open_loop_seconds)
        return lambda: [serve_open_loop_line(serve_open_loop(*serve_input, *paced, **kw))]

    def heap_with(kw):
        return "whole app's heap, " + " + ".join(kw), lambda: [app_heap_line(tmp, romfs, **kw)]

    extra_heaps = [] if args.quick else [{"remote": True}, {"tls": True}, {"remote": True, "tls": True}]
    return [
        ("message table", message_table),
        ("app path", lambda: [app_path_line(tmp, baselines, args.app_windows, APP_PATH_ROUNDS), ""]),
        ("uploads", lambda: [upload_table(args.uploads, tmp)]),
        ("delayed link", lambda: [delayed_link_line(tmp, args.link_windows), ""]),
        ("sampler at 100 Hz", lambda: [sampler_line(args.sampler_seconds, tmp)]),
        # test_sampler's drift
        ("sampler at 1 kHz", lambda: [sampler_line(max(1, args.sampler_seconds // 6), tmp, rate=1000.0)]),
        ("audio from flash", lambda: [audio_flash_line(tmp, romfs)]),
        ("smallest heap", lambda: [smallest_heap_line(tmp, romfs)]),
        ("whole app's heap", lambda: [app_heap_line(tmp, romfs)]),
        *(heap_with(kw) for kw in extra_heaps),
        ("serve: encoding the windows", encode_bodies),
        ("serve: %d devices" % args.devices, load(args.devices)),
        ("serve: %d devices" % args.load_devices, load(args.load_devices)),
        ("serve: %d idle connections" % args.idle_connections, load(args.load_devices, idle=args.idle_connections)),
        ("serve: data folder on disk", load(args.load_devices, disk=disk)),
        ("serve: open loop", open_loop()),
        ("serve: open loop on disk", open_loop(disk=disk)),
        ("serve: one large window", lambda: [large_window_line(*serve_input, args.large_window_mb)]),
    ]


def run_steps(steps: list, out=None, err=None) -> None:
    """Each step measured, then its lines printed at once (flushed: a long run shows each as it is measured),
    with a progress bar on err (stderr) when it is a terminal, naming the step being measured."""
    out = sys.stdout if out is None else out
    bar = Progress(len(steps), "bench", stream=err if err is not None else sys.stderr, min_interval=0)
    for i, (note, measure) in enumerate(steps):
        bar.update(1 if i else 0, note=note)
        lines = measure()
        bar.clear()
        for line in lines:
            print(line, file=out)
        out.flush()
    bar.update(1)
    bar.close()


APP_PATH_HEAP_KB = 384  # an ESP32's ~150K of free heap, doubled as this port's objects are
APP_PATH_ROUNDS = 9


def app_path_line(bundle_dir: str, baselines: str | None, windows: int, repeats: int) -> str:
    """Encode+sign+send where the app runs it (issue 16): bench_app_path.py in one unix-port process, the app's
    per-window path against micropython-lib's cbor2 + hmac + requests, to a minimal responder. The row's two lines,
    or REQUESTS_HINT when a baseline is missing."""
    import tempfile

    found = None if baselines is None else find_requests(baselines)
    if baselines is None or found is None:
        return REQUESTS_HINT
    lib, where = found
    with minimal_responder() as responder, tempfile.TemporaryDirectory() as queue:
        proc = subprocess.run(
            [
                micropython(),
                "-X",
                "heapsize=%dK" % APP_PATH_HEAP_KB,
                BENCH_APP_PATH,
                responder.url,
                queue,
                str(windows),
                str(repeats),
                lib,
            ],
            input=BENCH_API_KEY + "\n",
            capture_output=True,
            text=True,
            env=unix_port_env(bundle_dir, baselines),
            timeout=600,
        )
    if proc.returncode != 0:
        raise SystemExit("app-path benchmark failed on MicroPython:\n" + proc.stdout + proc.stderr)
    rounds, part, live = [], {}, 0
    for line in proc.stdout.splitlines():
        words = line.split()
        if words[0] == "part":
            part[words[1]] = int(words[2])
        elif words[0] == "heap_live":
            live = int(words[1])
        elif words[0] == "round":
            rounds.append([int(us) for us in words[1:]])

    def median(values):
        return sorted(values)[len(values) // 2]

    # windows/s of each path, the median over the rounds; a ratio, the median of the rounds' own ratios (the
    # paths of a round ran one after the other: the ratio of a round is the least touched by the machine's load)
    app, mplib, app_local, mplib_local = (median([windows / (r[k] / 1e6) for r in rounds]) for k in range(4))
    ratio = median([r[1] / r[0] for r in rounds])
    ratio_local = median([r[3] / r[2] for r in rounds])
    return (
        "encode+sign+send where the app runs it: %d signed 200x3 windows, median of %d rounds, one MicroPython "
        "process with a %dK heap, %d KB of it live (the app's modules, config, window, outbox; the baselines; an "
        "application's objects): the app's path (Message, sign pass, Outbox.send over one kept-alive connection, "
        "drain) %.0f windows/s; micropython-lib cbor2 + hmac + %s (%s; a connection each) %.0f windows/s: "
        "%.1fx (target 20x); without the network: %.0f vs %.0f windows/s = %.1fx\n"
        "  per window, us: app: Message %d, sign pass %d, send pass into a null sink %d, headers %d (built once: "
        "upload.send keeps them), Outbox.send "
        "(send pass, socket writes, the reply) %d, drain %d; a gc.collect() in this heap %d (not in the "
        "path: App.record makes two); micropython-lib: the dict of lists %d, cbor2.dumps with the placeholder %d, "
        "hmac %d, cbor2.dumps signed %d, %s.post %d"
        % (
            windows,
            repeats,
            APP_PATH_HEAP_KB,
            round(live / 1024),
            app,
            lib,
            where,
            mplib,
            ratio,
            app_local,
            mplib_local,
            ratio_local,
            part["app_message"],
            part["app_sign_pass"],
            part["app_send_pass_null"],
            part["app_headers"],
            part["app_send"],
            part["app_drain"],
            part["app_gc_collect"],
            part["mplib_dict"],
            part["mplib_dumps_placeholder"],
            part["mplib_hmac"],
            part["mplib_dumps_signed"],
            lib,
            part["mplib_post"],
        )
    )


def upload_table(n: int, bundle_dir: str) -> str:
    import tempfile

    from .serve import ServerThread, create_app

    rows = []
    responder = minimal_responder()
    try:
        runs = [run_upload_bench(n, responder.url, bundle_dir, k) for k in range(ROUNDS)]
        rows.append(("minimal responder (client costs only)", runs))
    finally:
        responder.close()
    # tmpfs when there is one: the disk's fsync time is not what this measures
    base = "/dev/shm" if os.path.isdir("/dev/shm") else None
    with tempfile.TemporaryDirectory(dir=base) as data:
        srv = ServerThread(create_app(data, api_key=BENCH_API_KEY)).start()
        try:
            runs = [run_upload_bench(n, srv.url, bundle_dir, k) for k in range(ROUNDS)]
            rows.append(("uingest serve (validates, stores)", runs))
        finally:
            srv.stop()
    fmt = "| %-40s | %-28s | %-28s | %-8s |"
    out = [
        fmt
        % (
            "%d signed 200x3 windows, median of %d rounds" % (n, ROUNDS),
            "uingest.http, kept alive",
            "requests, a connection each",
            "ratio",
        ),
        "|" + "-" * 42 + "|" + "-" * 30 + "|" + "-" * 30 + "|" + "-" * 10 + "|",
    ]
    for name, runs in rows:
        # the median of the rounds, each rate on its own (loopback timings are noisy)
        ka_rate = sorted(r["keepalive"][1] / (r["keepalive"][0] / 1e6) for r in runs)[len(runs) // 2]
        rq_rate = sorted(r["requests"][1] / (r["requests"][0] / 1e6) for r in runs)[len(runs) // 2]
        ka_conns = runs[0]["keepalive"][2]
        rq_conns = runs[0]["requests"][2]
        out.append(
            fmt
            % (
                name,
                "%.0f windows/s, %d conn" % (ka_rate, ka_conns),
                "%.0f windows/s, %d conn" % (rq_rate, rq_conns),
                "%.2fx" % (ka_rate / rq_rate),
            )
        )
    return "\n".join(out)


def sampler_line(seconds: int, bundle_dir: str, rate: float = 100.0) -> str:
    env = unix_port_env(bundle_dir)
    proc = subprocess.run(
        [micropython(), BENCH_SAMPLER, str(rate), str(seconds)], capture_output=True, text=True, env=env
    )
    if proc.returncode != 0:
        raise SystemExit("sampler benchmark failed on MicroPython:\n" + proc.stdout + proc.stderr)
    _, samples, err, period, drift, max_late, missed = proc.stdout.split()
    err, period, drift = float(err), float(period), float(drift)
    return (
        "sampler at %g Hz for %d s: %d samples; mean interval error %.1f us = %.2f%% of the period (target <= 1%%); "
        "drift %+.0f us = %.3f samples (target <= 1); max lateness %s us; missed deadlines %s"
        % (rate, seconds, int(samples), err, 100 * err / period, drift, drift / period, max_late, missed)
    )


BOARD_SIM = os.path.join(BOARDS, "unix-sim")
SIMULATOR = os.path.join(BOARD_SIM, "simulator.py")


def compile_program(bundle_dir: str, folder: str, sources) -> str:
    """A benchmark's own program compiled like the firmware (a board runs its
    program as .mpy or frozen, not parsed from source) into bundle_dir/folder;
    returns that folder."""
    from .bundle import compile_file

    prog_dir = os.path.join(bundle_dir, folder)
    os.makedirs(prog_dir, exist_ok=True)
    for src in sources:
        proc = compile_file(src, os.path.join(prog_dir, os.path.basename(src)[:-3] + ".mpy"), "host")
        if proc.returncode != 0:
            raise SystemExit("mpy-cross failed on %s: %s" % (os.path.basename(src), proc.stderr))
    return prog_dir


def program_run(
    program: str, heap_kb: int, prog_dir: str, bundle_dir: str, romfs: str | None = None, *args: str
) -> tuple[list[str], dict[str, str]]:
    """(argv, env) that run program (a compiled module's name, or a .py
    script, which the port runs from source) with args, a heap_kb heap and
    the firmware's .mpy files loaded into it; or, with romfs (an image of the
    bundle), with the firmware run in place from the image and heap_kb of free
    heap beside it (uingest then comes only from the image)."""
    if romfs is None:
        path = [prog_dir, bundle_dir]
        run = [program] if program.endswith(".py") else ["-m", program]
        argv = [micropython(), "-X", "heapsize=%dK" % heap_kb, *run, *args]
    else:
        path = [prog_dir]
        argv = romboot_args(micropython(), romfs, heap_kb, program, *args)
    return argv, unix_port_env(*path)


def cycle_program(bundle_dir: str) -> str:
    """The simulator and its board compiled into bundle_dir (see
    compile_program): the program of the IMU cycle searches."""
    return compile_program(bundle_dir, "cycle-program", (SIMULATOR, os.path.join(BOARD_SIM, "board.py")))


def cycle_completes(heap_kb: int, prog_dir: str, bundle_dir: str, url: str, romfs: str | None = None) -> bool:
    """One full cycle of a 200x3 IMU window (sample, encode, sign, post) in a
    fresh unix-port process with this heap (see program_run for romfs).
    prog_dir holds simulator.mpy and board.mpy."""
    import json

    cfg = {"url": url, "api_key": BENCH_API_KEY, "hmac_key": "k", "labels": ["idle"], "windows": 1, "retries": 0}
    args, env = program_run("simulator", heap_kb, prog_dir, bundle_dir, romfs)
    proc = subprocess.run(args, input=json.dumps(cfg) + "\n", capture_output=True, text=True, env=env)
    return proc.returncode == 0 and '"accepted": 1' in proc.stdout


def smallest_heaps(works, romfs: str, first_kb: int, last_kb: int) -> dict:
    """The smallest heap, in 2K steps from first_kb up to last_kb, for which
    works(kb, image) (a fresh unix-port process) returns a true value: with
    the firmware's .mpy files loaded into the heap (image None), and run in
    place from the ROMFS image romfs. Returns {"mpy": (kb, value), "romfs":
    (kb, value)}, leaving out a way that no size up to last_kb works for. A run
    that hangs (subprocess.TimeoutExpired) counts as failed at that size."""
    found = {}
    for mode, image in (("mpy", None), ("romfs", romfs)):
        for kb in range(first_kb, last_kb + 1, 2):
            try:
                value = works(kb, image)
            except subprocess.TimeoutExpired:
                continue
            if value:
                found[mode] = (kb, value)
                break
    return found


def _heap(found: dict, mode: str, last_kb: int) -> str:
    return "%dK" % found[mode][0] if mode in found else "over %dK" % last_kb


def smallest_heap_line(bundle_dir: str, romfs: str) -> str:
    prog_dir = cycle_program(bundle_dir)
    with minimal_responder() as responder:
        found = smallest_heaps(
            lambda kb, image: cycle_completes(kb, prog_dir, bundle_dir, responder.url, image), romfs, 16, 130
        )
    return (
        "full cycle (sample, encode, sign, post) of a 200x3 IMU window, smallest heap on the x64 unix port "
        "(target 32K; objects there are twice an ESP32's): %s with the .mpy files loaded into the heap, "
        "%s with them run in place from ROMFS" % (_heap(found, "mpy", 130), _heap(found, "romfs", 130))
    )


# the sample request the fake remote management service sends after each hello: one 200x3 window
REMOTE_REQUEST = {
    "sample": {
        "label": "idle",
        "length": 100,
        "path": "/api/training/data",
        "hmacKey": "bench-request-hmac",
        "interval": 0.5,
        "sensor": "Accelerometer",
    }
}


def app_heap_line(bundle_dir: str, romfs: str, windows: int = 5, remote: bool = False, tls: bool = False) -> str:
    """The smallest heap (see smallest_heaps) with which the whole app
    (main.py as a board runs it: config, store, sampler, Wi-Fi stand-in,
    uingest.app) samples, signs and posts `windows` 200x3 IMU windows on the
    unix-sim board. remote: in mode "both", with a remote management session
    (loopback.FakeRemoteManagement) that asks for one of the windows, which
    must be answered sampleFinished. tls: every service over TLS (https, and
    wss for remote management), verified with one ca_file (a trustme CA)."""
    import json
    import queue
    import ssl
    import tempfile

    main = os.path.join(bundle_dir, "main.py")
    server_ctx = None

    def app_posts(kb: int, image: str | None) -> bool:
        rm = FakeRemoteManagement(BENCH_API_KEY, [REMOTE_REQUEST], tls=server_ctx) if remote else None
        try:
            with tempfile.TemporaryDirectory() as tmp:
                if rm is not None:
                    cfg.update(mode="both", remote_url=rm.url)
                with open(os.path.join(tmp, "config.json"), "w") as f:
                    json.dump(cfg, f)
                # main.py's own folder (the bundle) comes first on the path, as on a board
                args, env = program_run(main, kb, BOARD_SIM, bundle_dir, image, "config.json", str(windows))
                run = subprocess.run(args, capture_output=True, text=True, env=env, cwd=tmp, timeout=60)
            if rm is not None:
                finished = False
                try:
                    while not finished:
                        finished = rm.received.get_nowait().get("sampleFinished") is True
                except queue.Empty:
                    return False
        finally:
            if rm is not None:
                rm.close()
        return run.returncode == 0 and (" sent=%d " % windows) in run.stdout

    with tempfile.TemporaryDirectory() as pki:
        cfg = {
            "board": "unix-sim",
            "api_key": BENCH_API_KEY,
            "hmac_key": "bench-hmac",
            "labels": ["idle"],
            "window_ms": 100,  # 200 rows at 2 kHz: a short run per heap size
            "sample_rate_hz": 2000,
            "timeout_ms": 2000,
        }
        if tls:
            import trustme

            ca = trustme.CA()
            cfg["ca_file"] = os.path.join(pki, "ca.pem")
            ca.cert_pem.write_to_path(cfg["ca_file"])
            server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            ca.issue_cert("127.0.0.1").configure_cert(server_ctx)
        with minimal_responder(server_ctx) as responder:
            cfg["url"] = responder.url
            found = smallest_heaps(app_posts, romfs, 32, 190)
    what = ", in mode both: one asked for by a remote management session" if remote else ""
    if tls:
        what += ", TLS to %s" % ("both services" if remote else "the ingestion service")
    return (
        "whole app (main.py on the unix-sim board: %d signed 200x3 IMU windows sampled and posted%s), smallest heap "
        "on the x64 unix port: %s with the .mpy files loaded into the heap, %s with them run in place from ROMFS"
        % (windows, what, _heap(found, "mpy", 190), _heap(found, "romfs", 190))
    )


def serve_bodies(bundle_dir: str, devices: int, per_device: int) -> tuple[list[bytes], dict[str, str]]:
    """The devices' distinct signed 200x3 windows, per_device each, encoded by
    the firmware on the unix port, and their request headers (the firmware's
    ingest.headers, run here: the key never crosses a pipe)."""
    import struct
    import tempfile

    env = unix_port_env(bundle_dir)
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "bodies")
        proc = subprocess.run(
            [micropython(), "-X", "heapsize=1M", BENCH_SERVE_BODIES, str(devices), str(per_device), out],
            capture_output=True,
            text=True,
            env=env,
        )
        if proc.returncode != 0:
            raise SystemExit("serve load benchmark: encoding failed on MicroPython:\n" + proc.stdout + proc.stderr)
        with open(out, "rb") as f:
            data = f.read()
    bodies = []
    at = 0
    while at < len(data):
        (n,) = struct.unpack_from(">I", data, at)
        bodies.append(data[at + 4 : at + 4 + n])
        at += 4 + n
    return bodies, ingest.headers(BENCH_API_KEY, label="load")


class IdleCount(NamedTuple):
    """The idle connections of a serve-load run."""

    silent: int  # connected, never sent a byte
    kept_alive: int  # sent one complete request, read the reply, stay open
    at_start: int  # held by the server (its accepted sockets) when the devices start
    at_end: int  # open at the end of the run, seen from our side
    held_at_end: int  # and held by the server
    reopened: int  # closed by the server during the run (an idle timeout) and opened again
    refused: int  # refused, or closed within a second of opening (a connection cap)


class LoadRun(NamedTuple):
    """What one serve-load run measured."""

    devices: int
    per_device: int
    accepted: int
    opened: int  # device connections opened: devices when every one stayed kept alive
    elapsed: float  # seconds
    latencies: list[float]  # seconds per request, sorted
    peak_mb: float
    server_cpu: float  # seconds of CPU the server used during the run
    load_cpu: float  # and the load generator (this process)
    idle: IdleCount | None
    on_disk: bool = False  # the data folder on a disk (fsync real), else in memory (/dev/shm)


@contextlib.contextmanager
def _data_folder(disk: str | None):
    """A new data folder for one serve run: in memory (/dev/shm: what the server costs) when disk is None, else
    in disk, a folder on a disk (fsync real) that the caller removes once every run on it is done. Not removed
    after its run: deleting a run's thousands of sample files just before the next run on that disk makes
    ext4's inode allocator pass over them at every file the next run creates (it skips inodes freed in the last
    seconds, minutes while their table block is dirty: `recently_deleted`), measured here at up to 1 ms of the
    kernel's time a window, a cost the run measured did not cause."""
    import tempfile

    if disk is not None:
        yield tempfile.mkdtemp(dir=disk)
        return
    with tempfile.TemporaryDirectory(dir="/dev/shm" if os.path.isdir("/dev/shm") else None) as data:
        yield data


def serve_load(
    bodies: list[bytes], hdrs: dict[str, str], devices: int, per_device: int, idle: int = 0, disk: str | None = None
) -> LoadRun:
    """`uingest serve` as its own process; devices threads (the load generator:
    http.client, one kept-alive HTTPConnection per device thread), started
    together, post distinct signed windows, timing each request. With idle,
    that many more connections are held open during the run: half connect and
    send nothing, half make one request and stay kept alive. disk: see _data_folder."""
    import http.client
    import threading
    import time

    with _data_folder(disk) as data:
        env = dict(os.environ, UINGEST_API_KEY=BENCH_API_KEY, UINGEST_HMAC_KEY="k")
        try:
            srv = start_serve("--data-dir", data, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        except RuntimeError as e:
            raise SystemExit("bench: %s" % e)
        port = srv.port
        held = None
        try:
            if idle:
                held = IdleConnections(port, idle // 2, idle - idle // 2)
                at_start = held.wait_held(srv.pid)
            accepted = [0]
            opened = [0]
            latencies: list[float] = []
            lock = threading.Lock()
            go = threading.Barrier(devices + 1)

            def device(d):
                c = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
                try:
                    c.connect()
                except OSError:
                    pass  # the first request connects again, and counts
                mine, ok, conns = [], 0, 1
                go.wait()
                for i in range(per_device):
                    if c.sock is None:  # the server closed it: http.client connects again
                        conns += 1
                    t = time.perf_counter()
                    try:
                        c.request("POST", "/api/training/data", bodies[d * per_device + i], hdrs)
                        r = c.getresponse()
                        r.read()
                        ok += r.status == 200
                    except (OSError, http.client.HTTPException):
                        c.close()
                    mine.append(time.perf_counter() - t)
                c.close()
                with lock:
                    accepted[0] += ok
                    opened[0] += conns
                    latencies.extend(mine)

            threads = [threading.Thread(target=device, args=(d,)) for d in range(devices)]
            for t in threads:
                t.start()
            cpu0, server_cpu0 = time.process_time(), _cpu_seconds(srv.pid)
            go.wait()
            t0 = time.monotonic()
            for t in threads:
                t.join()
            elapsed = time.monotonic() - t0
            load_cpu, server_cpu = time.process_time() - cpu0, _cpu_seconds(srv.pid) - server_cpu0
            count = None
            if held is not None:
                held.stop()
                count = IdleCount(
                    held.silent,
                    held.kept_alive,
                    at_start,
                    held.open_now(),
                    _held_connections(srv.pid, port),
                    held.reopened,
                    held.refused,
                )
            peak = _peak_rss_mb(srv.pid)
        finally:
            if held is not None:
                held.close()
            srv.terminate()
            srv.wait(20)
    latencies.sort()
    return LoadRun(
        devices,
        per_device,
        accepted[0],
        opened[0],
        elapsed,
        latencies,
        peak,
        server_cpu,
        load_cpu,
        count,
        disk is not None,
    )


class OpenLoopRun(NamedTuple):
    """What one open-loop serve-load run measured."""

    devices: int
    rate: float  # windows/s offered in all (each device rate / devices)
    sent: int
    accepted: int
    opened: int  # device connections opened: devices when every one stayed kept alive
    span: float  # seconds from the first scheduled send to the last reply
    latencies: list[float]  # seconds from each window's scheduled send to its whole reply, sorted
    late: int  # windows sent over 10 ms after their time (the device's previous reply was not back yet)
    peak_mb: float
    server_cpu: float
    load_cpu: float
    on_disk: bool


def serve_open_loop(
    bodies: list[bytes], hdrs: dict[str, str], devices: int, rate: float, seconds: float, disk: str | None = None
) -> OpenLoopRun:
    """`uingest serve` as its own process, and devices that post at their window rate: each device a kept-alive
    connection posting one window every devices / rate seconds, the devices' start times spread over one such
    period, for seconds. A window is timed from the moment it was due, not from when it could be sent: a window
    held back by a slow reply to the one before counts its wait (no coordinated omission). One thread, one event
    loop, non-blocking sockets (the generator must offer the rate on a shared 2-core machine). disk: see
    _data_folder."""
    import asyncio
    import time

    per_device = max(1, round(rate * seconds / devices))
    if len(bodies) < devices * per_device:
        raise ValueError("need %d distinct bodies, have %d" % (devices * per_device, len(bodies)))
    period = devices / rate
    with _data_folder(disk) as data:
        env = dict(os.environ, UINGEST_API_KEY=BENCH_API_KEY, UINGEST_HMAC_KEY="k")
        try:
            srv = start_serve("--data-dir", data, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        except RuntimeError as e:
            raise SystemExit("bench: %s" % e)
        head = "POST /api/training/data HTTP/1.1\r\nHost: 127.0.0.1:%d\r\n" % srv.port
        head += "".join("%s: %s\r\n" % kv for kv in hdrs.items())
        requests = [(head + "Content-Length: %d\r\n\r\n" % len(b)).encode() + b for b in bodies]
        latencies: list[float] = []
        counts = {"accepted": 0, "opened": 0, "late": 0, "sent": 0}

        async def connect():
            counts["opened"] += 1
            return await asyncio.open_connection("127.0.0.1", srv.port)

        async def device(d: int, start: float, ready) -> None:
            loop = asyncio.get_running_loop()
            reader, writer = await connect()
            await ready
            first = start + d * period / devices
            for i in range(per_device):
                due = first + i * period
                wait = due - loop.time()
                if wait > 0:
                    await asyncio.sleep(wait)
                elif wait < -0.01:
                    counts["late"] += 1
                if writer.is_closing():
                    reader, writer = await connect()
                counts["sent"] += 1
                try:
                    writer.write(requests[d * per_device + i])
                    status_head = await reader.readuntil(b"\r\n\r\n")
                    status = int(status_head.split(b" ", 2)[1])
                    length, close = 0, False
                    for line in status_head.lower().split(b"\r\n")[1:]:
                        if line.startswith(b"content-length:"):
                            length = int(line[15:])
                        elif line.startswith(b"connection:") and b"close" in line:
                            close = True
                    await reader.readexactly(length)
                    counts["accepted"] += status == 200
                    if close:
                        writer.close()
                except (OSError, asyncio.IncompleteReadError, ValueError):
                    writer.close()
                latencies.append(loop.time() - due)
            writer.close()

        async def run() -> float:
            loop = asyncio.get_running_loop()
            ready = loop.create_future()
            start = loop.time() + 0.5  # every device connected by then
            tasks = [asyncio.ensure_future(device(d, start, ready)) for d in range(devices)]
            await asyncio.sleep(start - loop.time())
            ready.set_result(None)
            await asyncio.gather(*tasks)
            return loop.time() - start

        try:
            cpu0, server_cpu0 = time.process_time(), _cpu_seconds(srv.pid)
            span = asyncio.run(run())
            load_cpu, server_cpu = time.process_time() - cpu0, _cpu_seconds(srv.pid) - server_cpu0
            peak = _peak_rss_mb(srv.pid)
        finally:
            srv.terminate()
            srv.wait(20)
    latencies.sort()
    return OpenLoopRun(
        devices,
        rate,
        counts["sent"],
        counts["accepted"],
        counts["opened"],
        span,
        latencies,
        counts["late"],
        peak,
        server_cpu,
        load_cpu,
        disk is not None,
    )


def serve_open_loop_line(run: OpenLoopRun) -> str:
    return (
        "uingest serve, open loop: %d devices each posting %g signed 200x3 windows/s on a kept-alive connection "
        "(%d opened)%s: %.0f windows/s offered, %.0f achieved (%d of %d accepted), latency from the time each was "
        "due p50 %.1f ms p99 %.1f ms max %.1f ms, %d sent late, server peak RSS %.0f MB; CPU of the run: server "
        "%.0f%%, load generator (one thread, asyncio) %.0f%% of a core"
        % (
            run.devices,
            run.rate / run.devices,
            run.opened,
            ", data folder on disk" if run.on_disk else "",
            run.rate,
            run.accepted / run.span,
            run.accepted,
            run.sent,
            _percentile(run.latencies, 50) * 1000,
            _percentile(run.latencies, 99) * 1000,
            (run.latencies[-1] if run.latencies else float("nan")) * 1000,
            run.late,
            run.peak_mb,
            100 * run.server_cpu / run.span,
            100 * run.load_cpu / run.span,
        )
    )


def large_window_body(rows: int, small_body: bytes) -> bytes:
    """A large unsigned CBOR window shaped as the firmware writes them (every value a float32): small_body, a
    message of the firmware's, with its signature off and its values replaced by rows rows."""
    import struct

    import cbor2

    msg = cbor2.loads(small_body)
    msg["protected"]["alg"] = "none"
    msg["payload"]["values"] = [[0, 0, 0]]
    head = cbor2.dumps(msg)
    row = b"\x83" + (b"\xfa" + struct.pack(">f", 1.2345)) * 3
    return head.replace(b"\x81\x83\x00\x00\x00", b"\x9a" + rows.to_bytes(4, "big") + row * rows)


def large_window_line(bodies: list[bytes], hdrs: dict[str, str], mb: int = 40, devices: int = 10) -> str:
    """One large window posted to `uingest serve` while devices post small ones: how much the server grows for
    it, and the small posts' latency before and while it is received and checked."""
    import http.client
    import tempfile
    import threading
    import time

    big = large_window_body(mb * 1000 * 1000 // 16, bodies[0])
    with tempfile.TemporaryDirectory() as data:
        env = dict(os.environ, UINGEST_API_KEY=BENCH_API_KEY)
        srv = start_serve("--data-dir", data, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            rss0 = _rss_mb(srv.pid, "VmRSS")
            posts: list = []  # (start, end) of each small post
            stop = threading.Event()

            def device(d):
                c = http.client.HTTPConnection("127.0.0.1", srv.port, timeout=60)
                i = 0
                while not stop.is_set():
                    t = time.perf_counter()
                    c.request("POST", "/api/training/data", bodies[(d * 7 + i) % len(bodies)], hdrs)
                    c.getresponse().read()
                    posts.append((t, time.perf_counter()))
                    i += 1
                    time.sleep(0.02)
                c.close()

            threads = [threading.Thread(target=device, args=(d,)) for d in range(devices)]
            for t in threads:
                t.start()
            time.sleep(1.5)
            c = http.client.HTTPConnection("127.0.0.1", srv.port, timeout=300)
            t0 = time.perf_counter()
            c.request("POST", "/api/training/data", big, dict(hdrs, **{"x-file-name": "large.cbor"}))
            r = c.getresponse()
            r.read()
            t1 = time.perf_counter()
            took = t1 - t0
            time.sleep(0.1)  # the small posts it held up end
            stop.set()
            for t in threads:
                t.join()
            grew = _rss_mb(srv.pid, "VmHWM") - rss0
        finally:
            srv.terminate()
            srv.wait(20)
    # before: ended before the large window was sent; meanwhile: overlapped its post (a small window answered
    # while it is checked, or held up by it)
    before = sorted(end - start for start, end in posts if end < t0)
    during = sorted(end - start for start, end in posts if start < t1 and end > t0)
    meanwhile = (
        "p50 %.1f ms p99 %.1f ms" % (_percentile(during, 50) * 1000, _percentile(during, 99) * 1000)
        if during
        else "none overlapped it"  # a small window stored quicker than the devices' pace
    )
    return (
        "uingest serve: one %.0f MB float32 window (status %d) stored in %.1f s, the server grew by %.0f MB (%.1fx the "
        "body); %d devices' small posts meanwhile: %s (%.1f and %.1f ms before it)"
        % (
            len(big) / 1e6,
            r.status,
            took,
            grew,
            grew * 1024 * 1024 / len(big),
            devices,
            meanwhile,
            _percentile(before, 50) * 1000,
            _percentile(before, 99) * 1000,
        )
    )


def serve_load_line(run: LoadRun) -> str:
    line = (
        "uingest serve: %d devices x %d signed 200x3 windows, a kept-alive connection each (%d opened)%s: "
        "%d of %d accepted, %.0f windows/s, latency p50 %.1f ms p99 %.1f ms, server peak RSS %.0f MB; "
        "CPU of the run: server %.0f%%, load generator (%d threads, http.client) %.0f%% of a core"
        % (
            run.devices,
            run.per_device,
            run.opened,
            ", data folder on disk" if run.on_disk else "",
            run.accepted,
            run.devices * run.per_device,
            run.accepted / run.elapsed,
            _percentile(run.latencies, 50) * 1000,
            _percentile(run.latencies, 99) * 1000,
            run.peak_mb,
            100 * run.server_cpu / run.elapsed,
            run.devices,
            100 * run.load_cpu / run.elapsed,
        )
    )
    i = run.idle
    if i is not None:
        line += (
            "; with %d idle connections held open (%d silent, %d kept alive after one request): "
            "%d held by the server at the start, %d open at the end (%d held by the server), %d re-opened, %d refused"
            % (
                i.silent + i.kept_alive,
                i.silent,
                i.kept_alive,
                i.at_start,
                i.at_end,
                i.held_at_end,
                i.reopened,
                i.refused,
            )
        )
    return line


def _percentile(ordered: list[float], p: float) -> float:
    """Nearest rank."""
    if not ordered:
        return float("nan")
    return ordered[max(0, min(len(ordered) - 1, -(-len(ordered) * p // 100) - 1))]


class IdleConnections:
    """Connections that hold a place on the server and do nothing: silent ones
    connect and never send a byte; kept-alive ones send one GET /api/health,
    read the reply and stay open. A thread watches them and opens again any
    the server closes (its idle timeouts), counting them, so that they stay
    open during the run."""

    def __init__(self, port: int, silent: int, kept_alive: int):
        import selectors
        import threading

        self.port = port
        self.silent = silent
        self.kept_alive = kept_alive
        self.reopened = 0
        self.refused = 0
        self._selector = selectors.DefaultSelector()
        self._stopping = threading.Event()
        for kept in [False] * silent + [True] * kept_alive:
            self._open(kept)
        self._thread = threading.Thread(target=self._watch, daemon=True)
        self._thread.start()

    def _open(self, kept_alive: bool) -> None:
        """Open one; one the server refuses (a connection cap: refused, closed
        or answered with an error) is counted, not retried."""
        import http.client
        import selectors
        import socket
        import time

        try:
            if kept_alive:
                c = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
                c.request("GET", "/api/health")
                r = c.getresponse()
                r.read()
                if r.status != 200 or r.will_close:
                    c.close()
                    self.refused += 1
                    return
                s = c.sock
            else:
                s = socket.create_connection(("127.0.0.1", self.port), timeout=10)
        except (OSError, http.client.HTTPException):
            self.refused += 1
            return
        s.setblocking(False)
        self._selector.register(s, selectors.EVENT_READ, (kept_alive, time.monotonic()))

    def _watch(self) -> None:
        import time

        while not self._stopping.is_set():
            for key, _ in self._selector.select(0.1):
                s = key.fileobj
                try:
                    if s.recv(4096):
                        continue  # a reply before the close (a timeout's 408): its end follows
                except BlockingIOError:
                    continue
                except OSError:
                    pass
                self._selector.unregister(s)
                s.close()
                kept_alive, opened_at = key.data
                if time.monotonic() - opened_at < 1:
                    self.refused += 1  # closed at once: a cap, not an idle timeout; opening again would spin
                elif not self._stopping.is_set():
                    self._open(kept_alive)
                    self.reopened += 1

    def wait_held(self, pid: int, timeout: float = 5) -> int:
        """Wait until the server holds them all (has accepted them); the number it holds."""
        import time

        n = len(self._selector.get_map())
        deadline = time.monotonic() + timeout
        while (held := _held_connections(pid, self.port)) < n and time.monotonic() < deadline:
            time.sleep(0.05)
        return held

    def stop(self) -> None:
        self._stopping.set()
        self._thread.join()

    def open_now(self) -> int:
        """How many are open: a peek that would block (or finds bytes) has no end of stream."""
        import socket

        n = 0
        for key in list(self._selector.get_map().values()):
            try:
                n += key.fileobj.recv(1, socket.MSG_PEEK) != b""
            except BlockingIOError:
                n += 1
            except OSError:
                pass
        return n

    def close(self) -> None:
        if self._thread.is_alive():
            self.stop()
        for key in list(self._selector.get_map().values()):
            key.fileobj.close()
        self._selector.close()


def _held_connections(pid: int, port: int) -> int:
    """Established TCP connections on port that process pid holds (accepted sockets among its open files)."""
    fds = "/proc/%d/fd" % pid
    inodes = set()
    for fd in os.listdir(fds):
        try:
            link = os.readlink(os.path.join(fds, fd))
        except OSError:
            continue  # closed meanwhile
        if link.startswith("socket:["):
            inodes.add(link[8:-1])
    n = 0
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(table) as f:
                next(f)
                for row in f:
                    fields = row.split()
                    local_port = int(fields[1].rsplit(":", 1)[1], 16)
                    n += fields[3] == "01" and local_port == port and fields[9] in inodes
        except OSError:
            continue
    return n


def _cpu_seconds(pid: int) -> float:
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime + stime


def _rss_mb(pid: int, field: str) -> float:
    """VmRSS (now) or VmHWM (peak) of a process, in MB."""
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    return float("nan")


def _peak_rss_mb(pid: int) -> float:
    return _rss_mb(pid, "VmHWM")


def audio_flash_line(bundle_dir: str, romfs: str, target_k: int = 48) -> str:
    """The smallest heap (see smallest_heaps) with which 10 s of 16 kHz int16
    audio is recorded to a file, then signed and streamed from it to a
    hashing sink and to a minimal responder."""
    import tempfile

    prog_dir = compile_program(bundle_dir, "bench-program", (BENCH_AUDIO_FLASH,))
    last_run = {}  # the last run of each way, for the error when no size works

    def records_and_uploads(kb: int, image: str | None):
        args, env = program_run("bench_audio_flash", kb, prog_dir, bundle_dir, image)
        run = subprocess.run(args, input=stdin, capture_output=True, text=True, env=env, timeout=60)
        last_run["mpy" if image is None else "romfs"] = run
        out = dict(line.split(" ", 1) for line in run.stdout.splitlines() if " " in line)
        if run.returncode == 0 and out.get("outcome") == "ACCEPTED 200":
            return round(int(out["code"]) / 1024), int(out["us"]) / 1000
        return None

    with minimal_responder() as responder, tempfile.TemporaryDirectory() as tmp:
        stdin = "%s\n%s\n%s\nbench-hmac\n160000\n" % (responder.url, os.path.join(tmp, "audio.bin"), BENCH_API_KEY)
        found = smallest_heaps(records_and_uploads, romfs, 16, 128)
    for mode in ("mpy", "romfs"):
        if mode not in found:
            run = last_run.get(mode)
            tail = run.stdout + run.stderr if run else "every run timed out"
            raise SystemExit("audio from flash benchmark (%s): no heap up to 128K worked:\n%s" % (mode, tail))
    (k, (code, _)), (rk, (_, rms)) = found["mpy"], found["romfs"]
    return (
        "10 s 16 kHz audio (320 KB) streamed from flash and uploaded, smallest heap on the x64 unix port "
        "(target %dK): %dK with the .mpy files loaded into the heap (%d KB of it the modules), "
        "%dK with them run in place from ROMFS; upload %.0f ms" % (target_k, k, code, rk, rms)
    )


def responder_rates(url: str, n: int, bundle_dir: str, rounds: int = 3, ca_file=None) -> tuple[float, float]:
    """Median windows/s, kept alive and a connection each."""
    runs = [run_upload_bench(n, url, bundle_dir, k, ca_file) for k in range(rounds)]
    ka = sorted(r["keepalive"][1] / (r["keepalive"][0] / 1e6) for r in runs)[rounds // 2]
    rq = sorted(r["requests"][1] / (r["requests"][0] / 1e6) for r in runs)[rounds // 2]
    return ka, rq


def delayed_link_line(bundle_dir: str, n: int, one_way_ms: float = 5) -> str:
    """Keep-alive against a connection per window over a slow link (a latency
    proxy in front of a minimal responder), plain and over TLS (where each new
    connection also costs a handshake)."""
    import ssl
    import tempfile

    import trustme

    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1")
    results = []
    with tempfile.TemporaryDirectory() as d:
        ca_path = os.path.join(d, "ca.pem")
        ca.cert_pem.write_to_path(ca_path)
        server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        cert.configure_cert(server_ctx)
        for tls in (False, True):
            responder = minimal_responder(server_ctx if tls else None)
            proxy = LatencyProxy(responder.port, one_way_ms)
            url = "%s://127.0.0.1:%d" % ("https" if tls else "http", proxy.port)
            try:
                results.append(responder_rates(url, n, bundle_dir, ca_file=ca_path if tls else None))
            finally:
                proxy.close()
                responder.close()
    (pka, prq), (tka, trq) = results
    return (
        "%d windows over a %g ms round trip (a latency proxy): kept alive vs a connection each "
        "(requests): plain HTTP %.0f vs %.0f windows/s = %.2fx; TLS %.0f vs %.0f windows/s = %.2fx (target 3x)"
        % (n, 2 * one_way_ms, pka, prq, pka / prq, tka, trq, tka / trq)
    )
