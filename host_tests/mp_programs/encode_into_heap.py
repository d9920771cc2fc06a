"""1 s and 4 s of 16 kHz audio encoded into one preallocated buffer: prints
each message's length and the heap encode_into() allocated for it (GC off)."""

import gc

from uingest import message
from uingest.window import Window

buf = bytearray(3 * 64000 + 200)


def cost(rows):
    w = Window((("audio", "wav"),), 0.0625, rows, "h")
    for i in range(rows):
        w.append(i - 32768)
    message.encode_into(w, buf, "cbor", hmac_key="k")  # warm-up
    gc.collect()
    gc.disable()
    before = gc.mem_alloc()
    n = message.encode_into(w, buf, "cbor", hmac_key="k")
    used = gc.mem_alloc() - before
    gc.enable()
    return n, used


print(*cost(16000), *cost(64000))
