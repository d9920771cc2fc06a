"""`uingest simulate`: the firmware itself, on the real MicroPython unix port
with the unix-sim board, posting synthetic windows to an ingestion server."""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile

from .bundle import BOARDS, build, romboot_args, romfs_image
from .common import DATA_CATEGORIES, add_key_options, ingest, resolve_keys
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


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(
        prog="uingest simulate",
        description="Run the firmware on the MicroPython unix port (board unix-sim) and post windows.",
        epilog="example: uingest simulate --url http://127.0.0.1:4810 --api-key ei_demo --label wave --windows 5",
    )
    ap.add_argument("--url", default="http://127.0.0.1:4810", help="ingestion server base URL")
    add_key_options(ap, api_key="API key", hmac_key="HMAC key")
    ap.add_argument("--label", required=True, action="append", help="label of the windows; repeat for several")
    ap.add_argument("--category", default="training", choices=DATA_CATEGORIES)
    ap.add_argument("--format", default="cbor", choices=list(ingest.CONTENT_TYPES))
    ap.add_argument("--windows", type=int, default=5, help="windows per label (default 5)")
    ap.add_argument("--rows", type=int, default=200, help="rows per window (default 200: 2 s at 100 Hz)")
    ap.add_argument("--heap", default="64K", help="MicroPython heap size, in K (default 64K)")
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
        print("uingest simulate: an API key is required (--api-key or UINGEST_API_KEY)", file=sys.stderr)
        return 2
    for label in args.label:
        try:
            ingest.headers(args.api_key, label=label, fmt=args.format)  # the board's own check, before it runs
        except ValueError as e:
            print("uingest simulate: --label %r: %s" % (label, e), file=sys.stderr)
            return 2
    settings = {
        "url": args.url,
        "api_key": args.api_key,
        "hmac_key": args.hmac_key,
        "labels": args.label,
        "category": args.category,
        "format": args.format,
        "windows": args.windows,
        "rows": args.rows,
        "device_name": args.device_name,
        "ca_file": args.ca_file,
        "insecure": args.insecure,
    }
    if args.romfs and not args.heap.upper().rstrip("K").isdigit():
        print("uingest simulate: with --romfs, --heap takes a size in K, like 64K: %s" % args.heap, file=sys.stderr)
        return 2
    rc, summary, lines = run(settings, heap=args.heap, echo=None if args.quiet else print, romfs=args.romfs)
    if summary is None:
        tail = lines[-1] if lines else "no output"
        print("uingest simulate: the firmware stopped: %s" % tail, file=sys.stderr)
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
    return 0 if rc == 0 and summary["accepted"] == total else 1
