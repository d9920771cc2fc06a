"""Usage: ws_heap.py URL ROUNDS: what uingest.ws costs the heap on MicroPython;
ROUNDS a JSON file, a list of lists of message sizes.
Prints one JSON object:

    import    bytes the module holds once imported (http and wifi, which the app
              has loaded already, imported before it)
    client    bytes a Client holds (its buffers), not connected
    rounds    per round [command, messages, bytes given out while polling them
              all], the collector off: each command asks the server (a
              ws_servers.EchoServer) for its messages, which the program
              lets arrive whole before it polls them
    idle      bytes given out by 1000 polls while nothing comes
"""

import gc
import json
import sys
import time

import uingest.http  # noqa: F401 (loaded by the app before remote management)
import uingest.wifi  # noqa: F401

URL = sys.argv[1]
with open(sys.argv[2]) as f:
    ROUNDS = json.load(f)
gc.collect()
before = gc.mem_alloc()
from uingest import ws  # noqa: E402

gc.collect()
imported = gc.mem_alloc() - before
before = gc.mem_alloc()
client = ws.Client(URL, timeout_ms=5000)
gc.collect()
held = gc.mem_alloc() - before
assert client.connect(), client.reason
rounds = []
for sizes in ROUNDS:
    command = "sizes " + ",".join(str(n) for n in sizes)
    assert client.send(command), client.reason
    time.sleep_ms(300)  # all of them in the socket before the count starts
    got = 0
    gc.collect()
    gc.disable()
    before = gc.mem_alloc()
    t0 = time.ticks_ms()
    while got < len(sizes) and time.ticks_diff(time.ticks_ms(), t0) < 5000:
        m = client.poll()
        if m is not None:
            got += 1
    used = gc.mem_alloc() - before
    gc.enable()
    rounds.append([len(sizes), got, used, client.reason])
gc.collect()
gc.disable()
before = gc.mem_alloc()
for _ in range(1000):
    client.poll()
idle = gc.mem_alloc() - before
gc.enable()
client.close()
print(json.dumps({"import": imported, "client": held, "rounds": rounds, "idle": idle}))
