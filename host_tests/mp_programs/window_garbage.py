"""Usage: window_garbage.py URL N. Posts N+1 signed 200x3 float windows the
way the app does (Message, the sign pass, upload.send over one kept-alive
http.Client); for each but the first (which connects and formats the header
lines), prints the bytes the heap gave out, the collector off, as one JSON
line [outcome, the message's bytes (Message and the sign pass), the post's]."""

import gc
import json
import sys

from sample_windows import imu
from uingest import http, upload
from uingest.message import Message

URL, N = sys.argv[1], int(sys.argv[2])
window = imu(200)
client = http.Client(URL, timeout_ms=5000)
for n in range(N + 1):
    gc.collect()
    gc.disable()
    before = gc.mem_alloc()
    msg = Message(window, "cbor", "hmac-key", "UINGEST_UNIX_SIM", "aa:bb:cc:dd:ee:ff", 1700000000 + n)
    msg.prepare()
    made = gc.mem_alloc()
    out = upload.send(client, msg, "ei_key", "walk", "training", "cbor")
    sent = gc.mem_alloc()
    gc.enable()
    if n:
        print(json.dumps([out.kind, made - before, sent - made]))
