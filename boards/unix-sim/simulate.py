# Run on the MicroPython unix port by `uingest simulate`: the firmware posts
# synthetic windows to an ingestion server. Settings arrive as one JSON line
# on stdin (so keys never show in a process list). One line per window, then
# a summary line starting with "summary".
import json
import sys
import time

import board

from uingest import http
from uingest.upload import post_window
from uingest.window import Window


def main():
    cfg = json.loads(sys.stdin.readline())
    rate_hz = cfg.get("rate_hz", 100)
    rows = cfg.get("rows", 200)
    window = Window(board.SENSORS, 1000 / rate_hz, rows)
    sensor = board.SyntheticIMU(cfg["label"], rate_hz)
    client = http.Client(
        cfg["url"],
        timeout_ms=cfg.get("timeout_ms", 5000),
        ca_file=cfg.get("ca_file"),
        insecure=cfg.get("insecure", False),
    )
    counts = {http.ACCEPTED: 0, http.RETRY: 0, http.REJECTED: 0}
    retries_left = cfg.get("retries", 5)
    start = cfg.get("first_window", 0)
    for i in range(start, start + cfg.get("windows", 5)):
        sensor.fill(window, i)
        while True:
            out = post_window(
                client,
                window,
                cfg["api_key"],
                label=cfg["label"],
                category=cfg.get("category", "training"),
                fmt=cfg.get("format", "cbor"),
                hmac_key=cfg.get("hmac_key"),
                device_type=board.DEVICE_TYPE,
                device_name=cfg.get("device_name", "unix-sim"),
            )
            print("window", i, out.kind, out.status, out.detail)
            if out.kind == http.RETRY and retries_left > 0:
                retries_left -= 1
                time.sleep_ms(cfg.get("retry_delay_ms", 200))
                continue
            break
        counts[out.kind] += 1
    client.close()
    print(
        "summary",
        json.dumps(
            {
                "accepted": counts[http.ACCEPTED],
                "rejected": counts[http.REJECTED],
                "failed": counts[http.RETRY],
                "connections": client.connections,
            }
        ),
    )
    return 0 if counts[http.ACCEPTED] == cfg.get("windows", 5) else 1


sys.exit(main())
