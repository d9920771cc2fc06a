"""`make demo`: start `uingest serve` with a demo key, run the firmware on the
MicroPython unix port (board unix-sim) for two labels x 5 windows, with its
remote management session open; halfway, record one more sample by asking the
collector's Studio-compatible API (as a Studio script would); show what arrived
and the dashboard's URL with the demo key, stop the server cleanly (with --keep,
`make demo KEEP=1`: once Ctrl-C is pressed, so the dashboard can be looked at)."""

from __future__ import annotations

import collections
import json
import os
import signal
import sys
import threading
import time
import urllib.request

from . import simulate
from .datafolder import INDEX, read_index
from .loopback import free_port, start_serve

DEMO_API_KEY = "ei_demo_api_key"
DEMO_HMAC_KEY = "demo_hmac_key"
LABELS = ["idle", "wave"]
REMOTE = {"label": "knock", "lengthMs": 1000, "category": "testing", "intervalMs": 10}  # what the demo asks for


def main(argv=None) -> int:
    argv = list(argv or [])
    keep = "--keep" in argv
    argv = [a for a in argv if a != "--keep"]
    data_dir = os.path.abspath(argv[0] if argv else "dataset")
    device_dir = os.path.abspath(argv[1] if len(argv) > 1 else "demo-device")
    port = free_port(4810)
    remote_port = free_port(4820)
    url = "http://127.0.0.1:%d" % port
    env = dict(os.environ, UINGEST_API_KEY=DEMO_API_KEY, UINGEST_HMAC_KEY=DEMO_HMAC_KEY)
    uingest_serve = [sys.executable, "-m", "uingest_tools.cli", "serve"]
    print("demo: uingest serve on %s, data in %s" % (url, data_dir), flush=True)
    try:
        server = start_serve(
            "--data-dir", data_dir, "--remote-port", str(remote_port), port=port, command=uingest_serve, env=env
        )
    except RuntimeError as e:
        raise SystemExit("demo: %s" % e)
    config = {
        "board": "unix-sim",
        "url": url,
        "api_key": DEMO_API_KEY,
        "hmac_key": DEMO_HMAC_KEY,
        "labels": LABELS,
        "window_ms": 1000,
        "sample_rate_hz": 100,
        "device_name": "demo-unix-sim",
        "queue_dir": "queue",
        "mode": "both",  # stream windows, and record what the collector asks for between them
        "remote_url": "ws://127.0.0.1:%d" % remote_port,
    }
    asked = []
    threading.Thread(target=ask_for_a_recording, args=(url, config["device_name"], asked), daemon=True).start()
    try:
        before = count(data_dir)
        print(
            "demo: the firmware (%s) runs on the MicroPython unix port; halfway it is told 'label wave'" % device_dir,
            flush=True,
        )
        rc = simulate.run_app(device_dir, config, max_windows=11, commands={4: "label " + LABELS[1]})
        ok = report(data_dir, before, asked) and rc == 0
        print(dashboard_line(url, keep), flush=True)
        if keep:
            wait_until_stopped(server, dashboard_url(url))
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=20)
    return 0 if ok else 1


def report(data_dir: str, before: collections.Counter, asked: list) -> bool:
    """Print what this run stored; whether it is what the demo expects."""
    after = count(data_dir)
    print("demo: stored this run, per label:")
    for label in LABELS:
        print(
            "  %-6s %d windows  (%d in total) in %s"
            % (label, after[label] - before[label], after[label], os.path.join(data_dir, "training", label + ".*.cbor"))
        )
    knock = after[REMOTE["label"]] - before[REMOTE["label"]]
    print(
        "  %-6s %d sample   recorded when the collector asked (%s) in %s"
        % (
            REMOTE["label"],
            knock,
            asked[0] if asked else "it was never asked: the board did not connect",
            os.path.join(data_dir, REMOTE["category"], REMOTE["label"] + ".*.cbor"),
        )
    )
    print("demo: index of every sample: %s" % os.path.join(data_dir, INDEX))
    new = [after[label] - before[label] for label in LABELS]
    return sum(new) == 10 and min(new) > 0 and knock == 1  # the switch lands on window 5 or 6


def dashboard_url(url: str) -> str:
    """The dashboard, opened with the demo key (a local demo key: printing it is the point)."""
    return "%s/?key=%s" % (url, DEMO_API_KEY)


def dashboard_line(url: str, keep: bool) -> str:
    """The demo's last line."""
    then = "the collector keeps running: Ctrl-C stops it" if keep else "`make demo KEEP=1` keeps the collector running"
    return "demo: dashboard: %s (%s)" % (dashboard_url(url), then)


def wait_until_stopped(server, page: str) -> None:
    """Until Ctrl-C or a SIGTERM (or the server exits by itself), while the dashboard (page) is looked at; the
    caller stops the server then. SIGTERM too, so that `kill` of the demo does not leave the server running."""

    def interrupt(signum, frame):
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        server.wait()
    except KeyboardInterrupt:
        print("demo: stopping the collector", flush=True)
    finally:
        signal.signal(signal.SIGTERM, previous)


def ask_for_a_recording(url: str, device: str, asked: list, timeout: float = 30) -> None:
    """Once the board is connected, POST Studio's start-sampling to the collector (as a Studio script would,
    with only the base URL changed); what it answered goes into asked."""
    headers = {"x-api-key": DEMO_API_KEY, "Content-Type": "application/json"}
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        try:
            req = urllib.request.Request(url + "/v1/api/1/devices", headers=headers)
            with urllib.request.urlopen(req, timeout=5) as r:
                devices = [d for d in json.load(r).get("devices", []) if d.get("deviceId") == device]
            if devices and devices[0].get("sensors"):
                body = dict(REMOTE, sensor=devices[0]["sensors"][0]["name"])
                req = urllib.request.Request(
                    url + "/v1/api/1/device/%s/start-sampling" % device, json.dumps(body).encode(), headers
                )
                with urllib.request.urlopen(req, timeout=5) as r:
                    answer = json.load(r)
                asked.append("POST /v1/api/1/device/%s/start-sampling: %s" % (device, json.dumps(answer)))
                return
        except (OSError, ValueError):
            pass
        time.sleep(0.2)


def count(data_dir: str) -> collections.Counter:
    try:
        records, _ = read_index(data_dir)
    except FileNotFoundError:
        records = []
    return collections.Counter(rec.get("label") for rec in records)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
