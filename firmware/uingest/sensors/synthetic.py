# A synthetic 3-axis accelerometer for the unix port, demos and tests. Every
# value is a function of the label and a sample counter t, so a receiver can
# check exactly what arrived: expected() runs the same code as read(). The
# audio twin is tone.py, a module of its own so an IMU board never loads it.
#
# IMU, sample t at rate_hz, label seed s (label_seed below):
#   f = 1 + s % 7 + 0.37 Hz,  A = 1 + (s >> 3) % 5 m/s2,  D = round(100 rate_hz)
#   phase = 2 pi ((t mod D) * round(100 f) mod D) / D      (= 2 pi f t / rate_hz)
#   accX = A sin(phase),  accY = A cos(phase)
#   accZ = 9.80665 + (t // marker_rows % 1000) * 0.001     (marker_rows 100 by default)
# The phase drops whole turns in integers first: exact for any t, and small
# enough for an ESP32's single-precision floats.
from math import cos, pi, sin

SENSORS = (("accX", "m/s2"), ("accY", "m/s2"), ("accZ", "m/s2"))


def label_seed(label):
    # a stable small number per label (Python's hash() is not stable across runs)
    h = 5381
    for ch in label.encode():
        h = (h * 33 + ch) & 0xFFFF
    return h


class SyntheticIMU:
    """A 3-axis accelerometer: read(window) appends sample t, then t += 1.
    set_label() starts t again at base (0 unless given: a simulated board
    passes a per-boot base, so windows of different boots never repeat)."""

    def __init__(self, label, rate_hz, marker_rows=100, base=0):
        if isinstance(rate_hz, bool) or not isinstance(rate_hz, (int, float)) or not rate_hz >= 0.01:
            raise ValueError("rate_hz: expected a positive rate in Hz, got %r" % (rate_hz,))
        self._d = int(rate_hz * 100 + 0.5)
        self.rate_hz = rate_hz
        self.marker_rows = marker_rows
        self.sensors = SENSORS
        self.typecode = "f"
        self.base = base
        self.set_label(label)

    def set_label(self, label):
        s = label_seed(label)
        self.label = label
        self._fc = 100 * (1 + s % 7) + 37  # centi-Hz
        self.freq_hz = self._fc / 100
        self.amp = 1 + (s >> 3) % 5
        self.t = self.base

    def row(self, t):
        d = self._d
        ph = 2 * pi * ((t % d) * self._fc % d) / d
        return self.amp * sin(ph), self.amp * cos(ph), 9.80665 + (t // self.marker_rows % 1000) * 0.001

    def read(self, window):
        x, y, z = self.row(self.t)
        window.append(x, y, z)
        self.t += 1


def expected(label, t, rate_hz, marker_rows=100):
    """The IMU row (accX, accY, accZ) of sample t, as floats."""
    return SyntheticIMU(label, rate_hz, marker_rows).row(t)
