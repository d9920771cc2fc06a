"""Usage: store_drain.py ROOT. Opens the Store at ROOT (its lines go to
stdout), sends every entry it hands out to a sink that hashes it, printing
"sent NAME SHA256", deletes it, then prints "left N" (what waits)."""

import hashlib
import sys
from binascii import hexlify

from uingest.store import Store


class HashSink:
    def __init__(self):
        self.h = hashlib.sha256()

    def write(self, b):
        self.h.update(b)
        return len(b)


st = Store(sys.argv[1], 1 << 20)
while True:
    e = st.oldest()
    if e is None:
        break
    s = HashSink()
    e.write(s)
    print("sent", e.name, hexlify(s.h.digest()).decode())
    st.delete(e)
print("left", len(st))
