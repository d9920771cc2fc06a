"""`uingest bench`: run the benchmark programs on the MicroPython unix port
and print one table, every figure a ratio against a baseline measured in the
same run."""

from __future__ import annotations

import argparse
import datetime
import os
import subprocess
import sys

from .bundle import ROOT, build

BASELINES = os.path.join(os.path.dirname(ROOT), "shared", "baselines", "micropython-lib")
BENCH = os.path.join(ROOT, "host_tests", "bench", "bench_message.py")


def micropython() -> str:
    exe = os.path.join(os.path.dirname(sys.executable), "micropython")
    return exe if os.path.exists(exe) else "micropython"


def run_message_bench(repeats: int, bundle_dir: str) -> dict[str, tuple[int, int]]:
    path = [bundle_dir]
    if os.path.isdir(BASELINES):
        path.append(BASELINES)  # only this program sees the baselines
    env = dict(os.environ, MICROPYPATH=os.pathsep.join(path + [".frozen"]))
    proc = subprocess.run(
        [micropython(), "-X", "heapsize=4M", BENCH, str(repeats)], capture_output=True, text=True, env=env
    )
    if proc.returncode != 0:
        raise SystemExit("benchmark failed on MicroPython:\n" + proc.stdout + proc.stderr)
    out = {}
    for line in proc.stdout.splitlines():
        name, us, size = line.split()
        out[name] = (int(us), int(size))
    return out


def table(r: dict[str, tuple[int, int]]) -> str:
    rows = []

    def line(what, us, ratio_text, size=""):
        rows.append("| %-58s | %10s | %-34s | %8s |" % (what, us, ratio_text, size))

    ours = r["imu_cbor_signed"][0]
    line("encode+sign 200x3 float window: uingest CBOR", ours, "1.00 (reference)", r["imu_cbor_signed"][1])
    line(
        "  uingest CBOR, portable path (no viper)",
        r["imu_cbor_signed_portable"][0],
        "%.1fx slower" % (r["imu_cbor_signed_portable"][0] / ours),
        r["imu_cbor_signed_portable"][1],
    )
    if "imu_mplib_cbor2_signed" in r:
        t = r["imu_mplib_cbor2_signed"][0]
        line(
            "  micropython-lib cbor2 + hmac",
            t,
            "uingest %.1fx faster (target 20x)" % (t / ours),
            r["imu_mplib_cbor2_signed"][1],
        )
    t = r["imu_jsondumps_signed"][0]
    line(
        "  json.dumps + uingest hmac", t, "uingest %.1fx faster (target 3x)" % (t / ours), r["imu_jsondumps_signed"][1]
    )
    line(
        "  uingest JSON",
        r["imu_json_signed"][0],
        "%.1fx slower" % (r["imu_json_signed"][0] / ours),
        r["imu_json_signed"][1],
    )
    cb = r["imu_cbor_signed"][1]
    line(
        "body size: uingest CBOR / json.dumps",
        "",
        "%.0f%% (target <= 35%%)" % (100 * cb / r["imu_jsondumps_signed"][1]),
    )
    line("body size: uingest CBOR / uingest JSON", "", "%.0f%%" % (100 * cb / r["imu_json_signed"][1]))
    a = r["audio_cbor"][0]
    t = r["audio_jsondumps"][0]
    line("1 s of 16 kHz int16 audio, unsigned: uingest CBOR", a, "1.00 (reference)", r["audio_cbor"][1])
    line("  json.dumps", t, "uingest %.1fx faster (target 50x)" % (t / a), r["audio_jsondumps"][1])
    line(
        "  uingest JSON",
        r["audio_json"][0],
        "%.1fx faster than json.dumps" % (t / r["audio_json"][0]),
        r["audio_json"][1],
    )
    s = r["audio_cbor_signed"][0]
    h = r["audio_sha256_only"][0]
    line("  uingest CBOR signed vs SHA-256 of the body alone", s, "%.2fx the hashing time" % (s / h))
    head = "| %-58s | %10s | %-34s | %8s |" % ("case (MicroPython unix port, median)", "us", "ratio", "bytes")
    sep = "|" + "-" * 60 + "|" + "-" * 12 + "|" + "-" * 36 + "|" + "-" * 10 + "|"
    return "\n".join([head, sep] + rows)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="uingest bench", description="Benchmarks on the MicroPython unix port.")
    ap.add_argument("--repeats", type=int, default=25, help="runs per case; the median is reported (default 25)")
    args = ap.parse_args(argv)
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        build(tmp, march="host")  # what we ship: .mpy with the viper kernels
        r = run_message_bench(args.repeats, tmp)
    print(
        "uingest bench, %s, %d repeats per case, kernels %s"
        % (datetime.date.today().isoformat(), args.repeats, "on" if r["kernels"][0] else "off")
    )
    print(table(r))
    return 0
