"""Usage: reply_allocation.py URL N. Sends N+1 bodiless requests through one
http.Client (kept alive); for each but the first (which connects), prints the
bytes the heap gave out during the request, the collector off, as one JSON
line [status, body, bytes]."""

import gc
import json
import sys

from uingest import http

URL, N = sys.argv[1], int(sys.argv[2])
client = http.Client(URL, timeout_ms=5000)
client.request("GET", "/warm-up", {})
for _ in range(N):
    gc.collect()
    gc.disable()
    before = gc.mem_alloc()
    status, body = client.request("GET", "/reply", {})
    used = gc.mem_alloc() - before
    gc.enable()
    print(json.dumps([status, bytes(body).decode(), used]))
