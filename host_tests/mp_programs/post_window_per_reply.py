"""Usage: post_window_per_reply.py URL N API_KEY HMAC_KEY. Posts the same
signed window N times, each through a new http.Client: prints each outcome
(or the exception raised) as a JSON line, then whether the window came out
unchanged."""

# isort: off
# in the order the test always loaded them: in a 64K heap, the order modules load in
# decides how the heap fragments, and a message needs one block of a few KB
import gc
import json
import sys
from uingest import http
from uingest.upload import post_window
import sample_windows

# isort: on

URL, N, KEY, HKEY = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]


def snap(w):
    return [w.rows, [w.samples[i] for i in range(w.rows * w.width)]]


window = sample_windows.imu(20)
before = snap(window)
for _ in range(N):
    gc.collect()  # as the app does before each upload
    client = http.Client(URL, timeout_ms=2000)
    try:
        o = post_window(client, window, KEY, label="fuzz", hmac_key=HKEY, device_name="fz", iat=1700000000)
        out = [o.kind, o.status, o.detail]
    except Exception as e:
        out = ["RAISED", 0, "%s: %s" % (type(e).__name__, e)]
    client.close()
    print(json.dumps(out))
print(json.dumps(snap(window) == before))
