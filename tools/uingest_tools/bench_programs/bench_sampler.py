# Sampler accuracy, run ON MicroPython (unix port) by `uingest bench`:
#   micropython bench_sampler.py RATE_HZ SECONDS
# Samples a null sensor back to back (windows of 1 s) and prints
# "sampler samples mean_interval_error_us period_us drift_us max_late_us missed".
import sys

from uingest.sampler import Sampler
from uingest.window import Window


class NullSensor:
    sensors = (("x", "V"),)

    def read(self, window):
        window.append(0.0)


rate = float(sys.argv[1])
seconds = int(sys.argv[2])
s = Sampler(rate)
w = Window(NullSensor.sensors, 1000 / rate, int(rate))
sensor = NullSensor()
s.start()
for _ in range(seconds):
    s.fill(w, sensor)  # the schedule runs on across windows: one start, no gaps
print("sampler", s.samples, s.mean_interval_error_us(), 1_000_000 / rate, s.drift_us(), s.late_max_us, s.missed)
