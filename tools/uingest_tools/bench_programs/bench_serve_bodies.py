# The signed 200x3 windows `uingest bench` posts to `uingest serve` from its
# simulated devices, encoded by the firmware ON MicroPython (unix port):
#   micropython bench_serve_bodies.py DEVICES PER_DEVICE OUT_FILE
# Writes each message to OUT_FILE as a 4-byte big-endian length and the body,
# device by device.
import struct
import sys

from uingest import message
from uingest.window import Window

devices = int(sys.argv[1])
per_device = int(sys.argv[2])
with open(sys.argv[3], "wb") as f:
    for d in range(devices):
        for i in range(per_device):
            w = Window((("accX", "m/s2"), ("accY", "m/s2"), ("accZ", "m/s2")), 10, 200)
            for r in range(200):
                w.append(d + r * 0.01, i - r * 0.02, 9.80665)
            body = message.encode(w, "cbor", hmac_key="k", device_name="dev%d" % d, iat=i)
            f.write(struct.pack(">I", len(body)))
            f.write(body)
