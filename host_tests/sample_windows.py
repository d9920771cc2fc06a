"""Deterministic windows built the same way on CPython and on MicroPython
(exact binary fractions, no libm), so both interpreters must encode them to
the same bytes."""

from uingest.window import Window

IMU = (("accX", "m/s2"), ("accY", "m/s2"), ("accZ", "m/s2"))


def imu(rows=200, interval_ms=10):
    w = Window(IMU, interval_ms, rows)
    for i in range(rows):
        w.append((i % 17) * 0.125 - 1.0, (i % 101) / 1024.0 - 0.05, 9.80665 + (i % 5) * 0.001)
    return w


def audio(n=800):
    w = Window((("audio", "wav"),), 0.0625, n, "h")
    for i in range(n):
        v = ((i * 7919) % 65536) - 32768
        if i % 3 == 0:
            v = v // 1000  # many small values: 1- and 2-byte CBOR heads
        w.append(v)
    return w


def wide():
    w = Window([("s%d" % i, "V") for i in range(30)], 2.5, 3)
    for r in range(3):
        w.append(*[r + i / 4 for i in range(30)])
    return w


def stereo(n=300):
    w = Window((("left", "wav"), ("right", "wav")), 0.0625, n, "h")
    for i in range(n):
        w.append(i * 100 - 15000, 15000 - i * 97)
    return w


CASES = {"imu": imu, "audio": audio, "wide": wide, "stereo": stereo}
