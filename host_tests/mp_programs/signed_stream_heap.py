"""Usage: signed_stream_heap.py KERNELS (True or False). Prints whether the
viper kernels are in use and the heap one signed streaming write of the same
window takes with 200, 400 and 800 of its rows."""

# isort: off
# in the order the test always loaded them: in a 64K heap, the order modules load in
# decides how the heap fragments, and a message needs one block of a few KB
import gc
import sys
from uingest import message
from uingest.hmac import HMAC
import sample_windows

# isort: on

kernels = sys.argv[1] == "True"


class HashSink:
    # the socket stand-in: hashes what it is sent, keeps nothing
    def __init__(self):
        self.h = HMAC("sink")
        self.n = 0

    def write(self, b):
        self.h.update(b)
        self.n += len(b)
        return len(b)


# one window, sent with 200, 400 and 800 of its rows: only the row count changes
window = sample_windows.imu(800)


def cost(rows):
    # bytes allocated during one write (GC off, so nothing is hidden by a
    # collection); the portable path boxes a float per sample and cannot run
    # with GC off, so for it report the growth of live heap instead
    w = window
    w.rows = rows
    sink = HashSink()
    message.write(w, sink, "cbor", hmac_key="k", device_name="d", iat=1)  # warm-up: scratch buffer
    gc.collect()
    before = gc.mem_alloc()
    if message.use_kernels(kernels):
        gc.disable()
    message.write(w, sink, "cbor", hmac_key="k", device_name="d", iat=1)
    if not message.use_kernels(kernels):
        gc.collect()
    used = gc.mem_alloc() - before
    gc.enable()
    return used


print(message.use_kernels(kernels), cost(200), cost(400), cost(800))
