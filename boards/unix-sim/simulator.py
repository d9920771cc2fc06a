# Run on the MicroPython unix port by `uingest simulate`: the firmware posts
# synthetic windows to an ingestion server. Settings arrive as one JSON line
# on stdin (so keys never show in a process list). One line per window, then
# a summary line starting with "summary".
import gc

# As main.py does: hold a block of the fresh heap while the modules load, so
# the window and the network buffers find contiguous room afterwards.
_room = bytearray(8 * 1024)

import json  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402

import board  # noqa: E402

from uingest import http  # noqa: E402
from uingest.upload import post_window  # noqa: E402
from uingest.window import Window  # noqa: E402

_room = None
gc.collect()


def unix_time():
    # The unix port's clock is the host's, synchronised and counted from 1970;
    # a board's may count from 2000 and is only right after NTP.
    t = time.time()
    if time.gmtime(0)[0] == 2000:
        t += 946684800
    return int(t) if t > 1577836800 else None  # after 2020-01-01, or not set


def main():
    cfg = json.loads(sys.stdin.readline())
    rate_hz = cfg.get("rate_hz", 100)
    rows = cfg.get("rows", 200)
    labels = cfg["labels"]
    per_label = cfg.get("windows", 5)
    window = Window(board.SENSORS, 1000 / rate_hz, rows)
    sensor = board.SyntheticIMU(labels[0], rate_hz)
    client = http.Client(
        cfg["url"],
        timeout_ms=cfg.get("timeout_ms", 5000),
        ca_file=cfg.get("ca_file"),
        insecure=cfg.get("insecure", False),
    )
    counts = {http.ACCEPTED: 0, http.RETRY: 0, http.REJECTED: 0}
    retries_left = cfg.get("retries", 20)
    for label in labels:
        sensor.set_label(label)
        for i in range(per_label):
            sensor.fill(window, i)
            gc.collect()  # sampling leaves garbage: free it before the upload needs RAM
            # iat once per window: a retry must send the same bytes, or a window
            # whose reply was lost would be stored again instead of getting 409
            iat = unix_time()
            while True:
                out = post_window(
                    client,
                    window,
                    cfg["api_key"],
                    label=label,
                    category=cfg.get("category", "training"),
                    fmt=cfg.get("format", "cbor"),
                    hmac_key=cfg.get("hmac_key"),
                    device_type=board.DEVICE_TYPE,
                    device_name=cfg.get("device_name", "unix-sim"),
                    iat=iat,
                )
                gc.collect()
                print("window", label, i, out.kind, out.status, out.detail, "free=%d" % gc.mem_free())
                if out.kind == http.RETRY and retries_left > 0:
                    retries_left -= 1
                    # the server's Retry-After when it gave one, else the configured pause
                    time.sleep_ms(out.retry_after_ms or cfg.get("retry_delay_ms", 200))
                    continue
                break
            counts[out.kind] += 1
            if cfg.get("pause_ms"):
                time.sleep_ms(cfg["pause_ms"])  # a real board spends the window's length sampling
    client.close()
    summary = {
        "accepted": counts[http.ACCEPTED],
        "rejected": counts[http.REJECTED],
        "failed": counts[http.RETRY],
        "connections": client.connections,
    }
    print("summary", json.dumps(summary))
    return 0 if counts[http.ACCEPTED] == per_label * len(labels) else 1


sys.exit(main())
