"""Usage: ws_pieces_heap.py URL: polls one uingest.ws.Client in a tight loop,
the collector off, until a message has come (or 10 s); prints one JSON line
[its length, bytes the heap gave out, polls made]. A message that comes in
pieces must cost a view per piece, not per poll."""

import gc
import json
import sys
import time

from uingest import ws

client = ws.Client(sys.argv[1], timeout_ms=10000)
assert client.connect(), client.reason
gc.collect()
gc.disable()
before = gc.mem_alloc()
polls = 0
t0 = time.ticks_ms()
m = None
while m is None and not client.closed and time.ticks_diff(time.ticks_ms(), t0) < 10000:
    m = client.poll()
    polls += 1
used = gc.mem_alloc() - before
gc.enable()
print(json.dumps([len(m[1]) if m else client.reason, used, polls]))
