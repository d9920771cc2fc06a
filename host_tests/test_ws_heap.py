"""What uingest.ws costs the heap on the MicroPython unix port (x64: objects
are twice an ESP32's), the shipped .mpy files loaded into the heap: the
module imported, a Client's buffers, and receiving. A message costs the
same few objects (the (kind, view) poll returns) whatever its size: frames
are read into the buffer made once, never joined; an idle poll costs
nothing."""

import json
import random

from ws_servers import EchoServer

SLACK = 64  # bytes: two of the x64 port's GC blocks
IMPORT_CAP = 10 * 1024  # measured 10048 (the .mpy loaded into the heap; 5088 run in place from ROMFS)
PER_MESSAGE = 64  # a 2-tuple and a memoryview


def test_receiving_costs_a_fixed_amount_per_message_whatever_its_size(mpy, bundle, tmp_path):
    r = random.Random(15)
    rounds = {
        "1 byte": [1] * 100,
        "various": [r.randrange(0, 2049) for _ in range(100)],
        "the bound": [2048] * 100,
        "empty": [0] * 100,
    }
    path = tmp_path / "rounds.json"
    path.write_text(json.dumps(list(rounds.values())))
    srv = EchoServer()
    try:
        proc = mpy.run_program("ws_heap.py", srv.url, str(path), path=bundle, heap="64K", timeout=60)
    finally:
        srv.close()
    out = json.loads(proc.stdout.decode().strip().splitlines()[-1])
    used = {name: row[2] for name, row in zip(rounds, out["rounds"])}
    print("ws import:", out["import"], "client:", out["client"], "100 messages:", used, "1000 idle polls:", out["idle"])
    assert [row[:2] for row in out["rounds"]] == [[100, 100]] * len(rounds)  # every message came
    assert all(row[3] == "" for row in out["rounds"])  # and the connection stayed up
    assert max(used.values()) <= min(used.values()) + SLACK, used
    assert max(used.values()) <= 100 * PER_MESSAGE, used
    assert out["idle"] == 0
    assert out["import"] <= IMPORT_CAP
    assert out["client"] <= 2048 + 1536  # the 2 KB message buffer, 256 to send, 125 for control frames, views
