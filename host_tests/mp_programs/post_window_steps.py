"""Usage: post_window_steps.py STEPS API_KEY HMAC_KEY, STEPS a JSON list of
[url, ca_file, insecure]. One window, posted once per step through a new
Client each time; the window is the caller's and must come out unchanged.
The result (outcomes, unchanged, the window's values) is in `result`, and
printed as JSON when run as the main program. The same program runs on
CPython (the shim) and on MicroPython."""

import json
import sys

import sample_windows
from uingest import http
from uingest.upload import post_window

STEPS, KEY, HKEY = json.loads(sys.argv[1]), sys.argv[2], sys.argv[3]


def snap(w):
    return [w.rows, [w.samples[i] for i in range(w.rows * w.width)]]


window = sample_windows.imu(20)
before = snap(window)
outcomes = []
for url, ca_file, insecure in STEPS:
    client = http.Client(url, timeout_ms=5000, ca_file=ca_file, insecure=insecure)
    o = post_window(client, window, KEY, label="tls", hmac_key=HKEY, device_name="tls")
    client.close()
    outcomes.append([o.kind, o.status, o.detail])
result = {"outcomes": outcomes, "unchanged": snap(window) == before, "values": before[1]}
if __name__ == "__main__":
    print(json.dumps(result))
