"""Usage: store_drain.py ROOT. Opens the Store at ROOT (its lines go to
stdout), sends every entry it hands out to a sink that hashes it, printing
"sent NAME SHA256", deletes it, then prints "left N" (what waits)."""

import sys
from binascii import hexlify

from hash_sink import HashSink
from uingest.store import Store

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
