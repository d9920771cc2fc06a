"""What uingest.ws costs the heap on the MicroPython unix port (x64: objects
are twice an ESP32's), the shipped .mpy files loaded into the heap: the
module imported, a Client's buffers, and receiving. A message costs the
same few objects (the (kind, view) poll returns) whatever its size: frames
are read into the buffer made once, never joined; an idle poll costs
nothing; a message that comes in pieces, a view per piece."""

import json
import random

from ws_servers import EchoServer, RawServer, frame, pattern

SLACK = 64  # bytes: two of the x64 port's GC blocks
IMPORT_CAP = 8 * 1024  # measured 7104 (the .mpy loaded into the heap); 10048 before the cold path moved to wscold
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
    # the 2 KB message buffer, 256 to send, 125 for control frames, views; its attribute dict at its full size
    # (752 B on x64: made by the constructor, not grown at the first connect) and the names of uingest.wscold,
    # loaded for the first time (interned for good). Import and client together: 12K, from 13.5K
    assert out["client"] <= 2048 + 2048


def test_a_message_in_pieces_costs_a_view_per_piece_not_per_poll(mpy, bundle):
    data = frame(2, pattern(2000))
    pieces = [data[i : i + 40] for i in range(0, len(data), 40)]
    srv = RawServer([step for piece in pieces for step in (piece, 0.01)], hold=5)
    try:
        proc = mpy.run_program("ws_pieces_heap.py", srv.url, path=bundle, heap="64K", timeout=60)
    finally:
        srv.close()
    length, used, polls = json.loads(proc.stdout.decode().strip().splitlines()[-1])
    print("2000 bytes in %d pieces: %d bytes given out over %d polls" % (len(pieces), used, polls))
    assert length == 2000
    assert polls > 10 * len(pieces)  # most polls found nothing new
    assert used <= PER_MESSAGE + len(pieces) * 32 + SLACK  # a 32-byte memoryview per piece on x64
