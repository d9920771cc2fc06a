"""Reads little-endian float32 bit patterns from the file argv[1] into one
3-axis window (the count must be a multiple of 3) and writes the window's
JSON message to stdout: the firmware's float text for every value, as a
board would send it. With argv[2] "portable" without the viper kernels;
stderr says which path wrote it ("kernels True" or "kernels False")."""

import os
import sys

from uingest import message
from uingest.window import Window

sys.stderr.write("kernels %s\n" % message.use_kernels(sys.argv[2:] != ["portable"]))
rows = os.stat(sys.argv[1])[6] // 12
w = Window((("x", "u"), ("y", "u"), ("z", "u")), 10, rows)
with open(sys.argv[1], "rb") as f:
    f.readinto(w.samples)  # the exact bits: no detour through Python floats
w.rows = rows
sys.stdout.buffer.write(message.encode(w, "json"))
