# The sampler's schedule as a loaded machine sees it, run on MicroPython:
#   micropython sampler_deadlines.py RATE_HZ SECONDS [STALL_AT STALL_MS]
# Samples a sensor through Sampler.fill (windows of 1 s, one start) and prints
# "t0 <us>" and then one line per sample: the ticks_us offset from t0 at which
# the sensor was read. STALL_AT: that sample's read blocks for STALL_MS, as a
# busy machine or a slow upload would (the deadlines behind it must still each
# get one sample, at once, and the schedule must not slide).
import sys
import time
from array import array

from uingest.sampler import Sampler
from uingest.window import Window

rate = float(sys.argv[1])
seconds = int(sys.argv[2])
stall_at = int(sys.argv[3]) if len(sys.argv) > 3 else -1
stall_ms = int(sys.argv[4]) if len(sys.argv) > 4 else 0
n = int(rate) * seconds
reads = array("i", [0] * n)


class Recorder:
    sensors = (("x", "V"),)

    def __init__(self, t0):
        self.t0 = t0
        self.i = 0

    def read(self, window):
        reads[self.i] = time.ticks_diff(time.ticks_us(), self.t0)
        if self.i == stall_at:
            time.sleep_ms(stall_ms)
        self.i += 1
        window.append(0.0)


s = Sampler(rate)
w = Window(Recorder.sensors, 1000 / rate, int(rate))
t0 = time.ticks_us()  # before start(): every deadline is at or after t0 + i * period
sensor = Recorder(t0)
s.start()
for _ in range(seconds):
    s.fill(w, sensor)
print("samples", s.samples, sensor.i)
for t in reads:
    print(t)
