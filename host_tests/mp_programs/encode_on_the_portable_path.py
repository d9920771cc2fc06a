"""Writes a signed CBOR message of a small window to stdout, then a line,
then whether the viper kernels are absent (True for a plain bytecode build)."""

import sys

from uingest import message
from uingest.window import Window

w = Window((("accX", "m/s2"), ("accY", "m/s2")), 10, 50)
for i in range(50):
    w.append(i * 0.5, -i)
sys.stdout.buffer.write(message.encode(w, "cbor", hmac_key="k", device_name="plain"))
print()
print(message._kernels is None)
