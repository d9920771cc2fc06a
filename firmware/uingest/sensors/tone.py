# A synthetic int16 tone for the unix port, demos and tests: every sample is
# a function of the label and a sample counter t, so a receiver can check
# exactly what arrived (expected_audio() runs the same code as fill()).
#
# int16 at a whole rate_hz, label seed s (synthetic.label_seed): a stepped
# sine from a 256-entry table,
#   f = 200 + (s % 16) * 50 Hz,  A = 2000 + ((s >> 4) % 8) * 3000
#   sample t = SINE[((t mod rate_hz) * f mod rate_hz) * 256 // rate_hz] * A // 32767
#   SINE[k] = round(32767 sin(2 pi k / 256))
from math import pi, sin

from .synthetic import label_seed


class SyntheticAudio:
    """An int16 tone fixed by the label: fill(window) fills the window,
    read(window) appends one sample; both advance t."""

    _sine = None  # the table, built on first use: 256 int16, shared

    def __init__(self, label, rate_hz=16000):
        if isinstance(rate_hz, bool) or not isinstance(rate_hz, int) or rate_hz < 1:
            raise ValueError("rate_hz: expected a whole positive number of Hz, got %r" % (rate_hz,))
        if SyntheticAudio._sine is None:
            from array import array

            SyntheticAudio._sine = array("h", [round(32767 * sin(2 * pi * k / 256)) for k in range(256)])
        self.rate_hz = rate_hz
        self.sensors = (("audio", "wav"),)
        self.typecode = "h"
        self.set_label(label)

    def set_label(self, label):
        s = label_seed(label)
        self.label = label
        self.freq_hz = 200 + (s % 16) * 50
        self.amp = 2000 + ((s >> 4) % 8) * 3000
        self.t = 0

    def row(self, t):
        rate = self.rate_hz
        # every product stays a small int: (t mod rate) * f < rate * 950
        return self._sine[(t % rate * self.freq_hz % rate) * 256 // rate] * self.amp // 32767  # pyright: ignore[reportOptionalSubscript]

    def read(self, window):
        window.append(self.row(self.t))
        self.t += 1

    def fill(self, window):
        if window.typecode != "h" or window.width != 1:
            raise ValueError("SyntheticAudio: needs a one-sensor window with typecode 'h'")
        dst = window.samples
        j = window.rows
        t = self.t
        for _ in range(window.capacity - j):
            dst[j] = self.row(t)
            j += 1
            t += 1
        window.commit(j - window.rows)
        self.t = t


def expected_audio(label, t, rate_hz=16000):
    """The int16 audio sample t."""
    return SyntheticAudio(label, rate_hz).row(t)
