"""Encodes a signed 200-row IMU window: prints the message's length and the
heap that was free before."""

# isort: off
# in the order the test always loaded them: in a 64K heap, the order modules load in
# decides how the heap fragments, and a message needs one block of a few KB
from uingest import message
import sample_windows
import gc

# isort: on

w = sample_windows.imu(200)
gc.collect()
free = gc.mem_free()
b = message.encode(w, "cbor", hmac_key="k")
print(len(b), free)
