# unix-sim: the MicroPython unix port as a board. No hardware: a synthetic
# 3-axis accelerometer whose waveform is fixed by the label, so a test knows
# exactly what must arrive.
import math

DESCRIPTION = "MicroPython unix port with a synthetic 3-axis accelerometer (tests and demos)"
DEVICE_TYPE = "UINGEST_UNIX_SIM"
SENSORS = (("accX", "m/s2"), ("accY", "m/s2"), ("accZ", "m/s2"))


def label_seed(label):
    # a stable small number per label (Python's hash() is not stable across runs)
    h = 5381
    for ch in label.encode():
        h = (h * 33 + ch) & 0xFFFF
    return h


class SyntheticIMU:
    """accX/accY sine waves with a frequency and amplitude set by the label;
    accZ is gravity plus 1 mm/s2 per window index, so every window differs
    and a receiver can tell which one it got. Sample i of window w is fully
    determined."""

    def __init__(self, label, rate_hz):
        self.set_label(label)
        self.rate_hz = rate_hz

    def set_label(self, label):
        s = label_seed(label)
        self.freq_hz = 1 + s % 7 + 0.37  # not whole Hz: windows differ in phase
        self.amp = 1 + (s >> 3) % 5

    def fill(self, window, window_index):
        window.clear()
        n = window.capacity
        w = 2 * math.pi * self.freq_hz / self.rate_hz
        z = 9.80665 + (window_index % 1000) * 0.001
        for i in range(n):
            t = window_index * n + i
            window.append(self.amp * math.sin(w * t), self.amp * math.cos(w * t), z)
