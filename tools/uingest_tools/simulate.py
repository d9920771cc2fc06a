"""`uingest simulate`: the firmware itself, on the real MicroPython unix port
with the unix-sim board, posting synthetic windows to an ingestion server."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tempfile
import urllib.parse

from .bundle import BOARDS, build, romboot_args, romfs_image
from .common import DATA_CATEGORIES, ArgumentParser, add_key_options, ingest, missing_api_key, resolve_keys
from .mpytools import micropython, unix_port_env

BOARD_DIR = os.path.join(BOARDS, "unix-sim")


def run(
    settings: dict,
    heap: str = "64K",
    firmware_dir: str | None = None,
    timeout: float = 600,
    echo=None,
    romfs: bool = False,
) -> tuple[int, dict | None, list[str]]:
    """Run the simulator; returns (exit status, summary dict or None, output lines).
    firmware_dir: a folder holding the uingest package (.py or .mpy); default: a
    fresh .mpy build for this CPU, i.e. what deploy ships. romfs: the package
    runs in place from a ROMFS image of that build, as on a board with a ROMFS
    partition, and heap (in K) is the free heap it gets."""
    with tempfile.TemporaryDirectory() as tmp:
        if firmware_dir is None:
            build(tmp, march="host")
            firmware_dir = tmp
        script = os.path.join(BOARD_DIR, "simulator.py")
        if romfs:
            image = os.path.join(tmp, "uingest.romfs")
            with open(image, "wb") as f:
                f.write(romfs_image(firmware_dir))
            env = unix_port_env(BOARD_DIR)
            args = romboot_args(micropython(), image, int(heap.upper().rstrip("K")), script)
        else:
            env = unix_port_env(firmware_dir, BOARD_DIR)
            args = [micropython(), "-X", "heapsize=" + heap, script]
        proc = subprocess.Popen(
            args,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            env=env,
            text=True,
        )
        proc.stdin.write(json.dumps(settings) + "\n")
        proc.stdin.close()
        lines = []
        summary = None
        for line in proc.stdout:
            line = line.rstrip("\n")
            lines.append(line)
            if line.startswith("summary "):
                summary = json.loads(line[8:])
            elif echo:
                echo(line)
        rc = proc.wait(timeout=timeout)
    return rc, summary, lines


def run_app(device_dir: str, config: dict, max_windows: int, heap: str = "128K", commands=None, echo=print) -> int:
    """Install the firmware into device_dir as on a board (main.py, uingest/*.mpy,
    config.json) and run the whole app on the unix port with the unix-sim board.
    commands: {status line number: text typed on the REPL}, e.g. {5: "label wave"}."""
    os.makedirs(device_dir, exist_ok=True)
    build(device_dir, march="host")
    with open(os.path.join(device_dir, "config.json"), "w") as f:
        json.dump(config, f, indent=2)
    env = unix_port_env(device_dir, BOARD_DIR)
    proc = subprocess.Popen(
        [micropython(), "-X", "heapsize=" + heap, "main.py", "config.json", str(max_windows)],
        cwd=device_dir,
        env=env,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    statuses = 0
    for line in proc.stdout:
        echo(line.rstrip("\n"))
        if line.startswith("status: "):
            statuses += 1
            if commands and statuses in commands:
                proc.stdin.write(commands[statuses] + "\n")
                proc.stdin.flush()
    proc.stdin.close()
    return proc.wait()


# The smallest heap each format posted windows of 6 axes in, on the unix port (x64), measured with
# `uingest simulate --heap`: cbor 60K (200 rows), 72K (800), 88K (2000); json 72K, 80K, 92K; https (TLS)
# needs about 8-12K more. The defaults leave room above those.
DEFAULT_HEAP_K = {"cbor": 64, "json": 80}  # for 200 rows (2 s at 100 Hz) over http
TLS_HEAP_K = 16
ROWS_PER_16K = 800  # rows above 200 that take up to 16K more


def default_heap(fmt: str, url: str, rows: int = 200) -> str:
    more_rows = -(-max(0, rows - 200) // ROWS_PER_16K)  # ceiling division
    return "%dK" % (DEFAULT_HEAP_K[fmt] + (TLS_HEAP_K if url.startswith("https://") else 0) + 16 * more_rows)


def _url_problem(url: str) -> str | None:
    # what the firmware's http.parse_url refuses (it needs MicroPython's modules, so not imported here)
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in ("http", "https") or not url.startswith(parts.scheme + "://"):
        return "expected http://host[:port] or https://host[:port]"
    if not parts.hostname:
        return "no host"
    try:
        port = parts.port
    except ValueError:
        port = 0
    if port == 0 or (port is None and parts.netloc.endswith(":")):
        return "the port must be a number from 1 to 65535"
    return None


def usage_problem(args) -> str | None:
    """What the firmware could not use on this command line, as the one line that says what to do."""
    url_problem = _url_problem(args.url)
    if url_problem:
        return "--url %s: %s, like http://127.0.0.1:4810" % (args.url, url_problem)
    for label in args.label:
        try:
            ingest.headers(args.api_key, label=label, fmt=args.format)  # the board's own check, before it runs
        except ValueError as e:
            return "--label %r: %s" % (label, e)
    if not args.device_name:  # the message's device_name: the firmware refuses an empty one as it runs
        return "--device-name: give the device a name, or leave the option out (unix-sim)"
    if args.url.startswith("https://") and not args.insecure:
        if not args.ca_file:
            return (
                "an https --url needs --ca-file, the server's CA certificate (`uingest ca %s --out ca.der` "
                "fetches it), or --insecure" % args.url
            )
        if not os.path.isfile(args.ca_file):
            return "--ca-file %s: no such file (`uingest ca %s --out %s` fetches it)" % (
                args.ca_file,
                args.url,
                args.ca_file,
            )
    if args.rows is not None and args.rows < 1 or args.windows < 1 or not args.rate_hz > 0:
        return "--rows and --windows take a positive whole number, --rate-hz a positive number"
    heap = (args.heap or "64K").upper().rstrip("K")
    if not heap.isdigit() or int(heap) < 16:
        return "--heap takes a size in K of at least 16K, like %s: got %s" % (
            default_heap(args.format, args.url),
            args.heap,
        )
    return None


def stopped_reason(lines: list[str], args) -> str:
    """The firmware's last line, and what to do when it ran out of heap."""
    tail = lines[-1] if lines else "no output"
    if tail.startswith("MemoryError"):
        heap = int(args.heap.upper().rstrip("K"))
        fits = max(heap * 2, int(default_heap(args.format, args.url, args.rows)[:-1]))  # twice 20K does not fit
        return "the firmware ran out of heap (--heap %dK, --format %s, %d rows): give it more, like --heap %dK" % (
            heap,
            args.format,
            args.rows,
            fits,
        )
    if not lines:  # the unix port did not start: a heap it cannot have, or it could not run
        return "the MicroPython unix port exited without output (--heap %s, %d rows): a smaller --heap or --rows?" % (
            args.heap,
            args.rows,
        )
    return "the firmware stopped: %s" % tail


RETRY_LINE = re.compile(r"^window .* RETRY \d+ (.*) free=\d+$")  # the simulator's line for a window not sent


def unreachable_reason(lines: list[str], args, summary: dict) -> str | None:
    """When no window got a connection: the one line saying where and why (the firmware's last reason)."""
    if summary["connections"] or summary["accepted"] or summary["rejected"]:
        return None
    reasons = [m.group(1) for m in map(RETRY_LINE.match, lines) if m]
    reason = reasons[-1] if reasons else "no answer"
    if reason.startswith("[addrinfo error"):  # MicroPython's getaddrinfo failure
        reason = "its host name does not resolve: " + reason.strip("[]")
    if "cert" in reason:  # the server answered; the certificate check failed
        todo = "check --ca-file (`uingest ca %s --out ca.der` fetches the server's)" % args.url
    elif args.url.startswith("https://") and "network error" in reason:  # TLS failed: TLS's own error number
        todo = "does the server speak https there? (`uingest serve` does with --ssl-certfile)"
    else:
        todo = "is `uingest serve` (or the service) there? give its address with --url"
    return "no connection to %s (%s): %s" % (args.url, reason, todo)


def main(argv=None) -> int:
    ap = ArgumentParser(
        prog="uingest simulate",
        description="Run the firmware on the MicroPython unix port (board unix-sim) and post windows.",
        epilog="example: uingest simulate --url http://127.0.0.1:4810 --api-key ei_demo --label wave --windows 5",
    )
    ap.add_argument("--url", default="http://127.0.0.1:4810", help="ingestion server base URL")
    add_key_options(ap, api_key="API key", hmac_key="HMAC key")
    ap.add_argument("--label", required=True, action="append", help="label of the windows; repeat for several")
    ap.add_argument(
        "--category",
        default="training",
        choices=DATA_CATEGORIES,
        help="where the windows go (default training); split: the service picks training or testing",
    )
    ap.add_argument("--format", default="cbor", choices=list(ingest.CONTENT_TYPES))
    ap.add_argument("--windows", type=int, default=5, help="windows per label (default 5)")
    ap.add_argument("--rate-hz", type=float, default=100.0, help="sampling rate of the windows (default 100)")
    ap.add_argument("--rows", type=int, help="rows per window (default: 2 s at --rate-hz, 200 at 100 Hz)")
    ap.add_argument(
        "--heap",
        help="MicroPython heap size, in K (default: %s for cbor, %s for json; %dK more for https, and per %d rows "
        "above 200)" % (default_heap("cbor", ""), default_heap("json", ""), TLS_HEAP_K, ROWS_PER_16K),
    )
    ap.add_argument(
        "--romfs",
        action="store_true",
        help="run the firmware in place from a ROMFS image, as on a board with a ROMFS partition "
        "(--heap is then the heap left free beside it)",
    )
    ap.add_argument("--device-name", default="unix-sim")
    ap.add_argument("--ca-file", help="CA certificate file for https URLs")
    ap.add_argument("--insecure", action="store_true", help="skip TLS certificate verification")
    ap.add_argument("--quiet", action="store_true", help="only the summary line")
    args = ap.parse_args(argv)
    args.api_key, args.hmac_key = resolve_keys(args)
    if not args.api_key:
        print("uingest simulate: an API key is required (%s)" % missing_api_key(), file=sys.stderr)
        return 2
    problem = usage_problem(args)
    if problem:
        print("uingest simulate: " + problem, file=sys.stderr)
        return 2
    if args.rows is None:
        args.rows = max(1, round(2 * args.rate_hz))
    if args.heap is None:
        args.heap = default_heap(args.format, args.url, args.rows)
    settings = {
        "url": args.url,
        "api_key": args.api_key,
        "hmac_key": args.hmac_key,
        "labels": args.label,
        "category": args.category,
        "format": args.format,
        "windows": args.windows,
        "rows": args.rows,
        "rate_hz": args.rate_hz,
        "device_name": args.device_name,
        "ca_file": args.ca_file,
        "insecure": args.insecure,
    }
    rc, summary, lines = run(settings, heap=args.heap, echo=None if args.quiet else print, romfs=args.romfs)
    if summary is None:
        print("uingest simulate: " + stopped_reason(lines, args), file=sys.stderr)
        return 1
    total = args.windows * len(args.label)
    print(
        "simulate %s: %d/%d windows accepted, %d rejected, %d failed, over %d connection(s)"
        % (
            ",".join(args.label),
            summary["accepted"],
            total,
            summary["rejected"],
            summary["failed"],
            summary["connections"],
        )
    )
    unreachable = unreachable_reason(lines, args, summary)
    if unreachable:
        print("uingest simulate: " + unreachable, file=sys.stderr)
    return 0 if rc == 0 and summary["accepted"] == total else 1
