# Upload benchmark, run ON MicroPython (unix port) by `uingest bench`:
#   micropython bench_upload.py URL N [IAT_BASE [CA_FILE]]   (API key on stdin)
# Posts N signed 200x3 windows over one kept-alive uingest.http connection,
# then N through the frozen `requests` module (a new connection per window,
# what urequests users do), and prints "name total_us windows connections".
import sys
import time

import requests

from uingest import http, ingest, message
from uingest.upload import post_window
from uingest.window import Window

url = sys.argv[1]
n = int(sys.argv[2])
base = int(sys.argv[3]) if len(sys.argv) > 3 else 0  # iat offset: every round's windows differ
ca_file = sys.argv[4] if len(sys.argv) > 4 else None  # https: our client verifies with it
api_key = sys.stdin.readline().strip()
w = Window((("accX", "m/s2"), ("accY", "m/s2"), ("accZ", "m/s2")), 10, 200)
for i in range(200):
    w.append(i * 0.01, -i * 0.02, 9.80665)

client = http.Client(url, ca_file=ca_file)
t0 = time.ticks_us()
ok = 0
for i in range(n):
    if post_window(client, w, api_key, label="bench", hmac_key="k", iat=base + i).kind == http.ACCEPTED:
        ok += 1
print("keepalive", time.ticks_diff(time.ticks_us(), t0), ok, client.connections)
client.close()

target = ingest.endpoint(url, "training")
t0 = time.ticks_us()
ok = 0
for i in range(n):
    body = message.encode(w, "cbor", hmac_key="k", iat=base + n + i)
    r = requests.post(target, data=body, headers=ingest.headers(api_key, label="bench"))
    if r.status_code == 200:
        ok += 1
    r.close()
print("requests", time.ticks_diff(time.ticks_us(), t0), ok, n)
