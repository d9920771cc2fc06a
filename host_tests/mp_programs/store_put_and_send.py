"""Usage: store_put_and_send.py ROOT. Queues three messages in a Store at
ROOT, writes the oldest to stdout and deletes it, then prints a line and
the queue's length and first name."""

import sys

import sample_windows
from uingest import message
from uingest.store import Store

root = sys.argv[1]
st = Store(root, 1 << 20)
for i in range(3):
    st.put(message.Message(sample_windows.imu(20), "cbor", hmac_key="k", iat=1000 + i), "idle", "training")


class Sink:
    def __init__(self):
        self.parts = []

    def write(self, b):
        self.parts.append(bytes(b))
        return len(b)


e = st.oldest()
s = Sink()
e.write(s)  # pyright: ignore[reportOptionalMemberAccess] (three were put)
sys.stdout.buffer.write(b"".join(s.parts))
st.delete(e)
print()
print(len(st), st.names()[0])
