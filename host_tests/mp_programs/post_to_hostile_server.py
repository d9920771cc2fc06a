"""Usage: post_to_hostile_server.py URL N TIMEOUT_MS API_KEY HMAC_KEY [PAUSE_MS].
Posts the same signed window N times through one http.Client (kept alive
between posts, as the app's is), PAUSE_MS apart (default 0). After the first post (to a good server) the client
is closed and the heap taken as the baseline; after the last one (to a good
server again) the same. Prints one JSON line per post, [kind, status, detail,
milliseconds it took], then [baseline, heap after]."""

import gc
import json
import sys
import time

import sample_windows
from uingest import http
from uingest.upload import post_window

URL, N, TIMEOUT_MS, KEY, HKEY = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4], sys.argv[5]
PAUSE_MS = int(sys.argv[6]) if len(sys.argv) > 6 else 0

window = sample_windows.imu(20)
client = http.Client(URL, timeout_ms=TIMEOUT_MS)
heap = [0, 0]  # made before the first figure is taken: its storage is in both
for i in range(N):
    if i:
        time.sleep_ms(PAUSE_MS)
    gc.collect()  # as the app does before each upload
    t0 = time.ticks_ms()
    o = post_window(client, window, KEY, label="hostile", hmac_key=HKEY, device_name="h", iat=1700000000)
    ms = time.ticks_diff(time.ticks_ms(), t0)
    print(json.dumps([o.kind, o.status, o.detail, ms]))
    o = None
    if i in (0, N - 1):
        client.close()
        gc.collect()
        heap[i > 0] = gc.mem_alloc()
print(json.dumps(heap))
