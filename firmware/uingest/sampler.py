# Fixed-rate sampling on time.ticks_us: each sample has a deadline computed
# from the start of the run, not from the previous sample, so timing error
# does not accumulate (no sleep(interval)). It records how late each sample
# was, so drift and jitter can be reported.
import time

from micropython import const

_SPIN_US = const(1500)  # closer than this to a deadline: busy-wait, sleep is too coarse


class Sampler:
    def __init__(self, rate_hz):
        if not rate_hz > 0:
            raise ValueError("rate_hz: expected a positive number")
        self.rate_hz = rate_hz
        # period as whole us plus a fraction carried Bresenham-style, so 16 kHz
        # (62.5 us) keeps time without floats or big ints
        scale = 1000
        self._num = int(round(1_000_000 * scale / rate_hz))  # period in us/1000
        self._scale = scale
        self.reset_stats()
        self._next = None

    def reset_stats(self):
        self.samples = 0
        self.interval_err_sum_us = 0  # sum of |interval - period| between consecutive samples
        self.first_late_us = 0
        self.last_late_us = 0
        self.late_sum_us = 0  # sum of |actual - deadline|
        self.late_max_us = 0
        self.missed = 0  # deadlines more than one period late

    def start(self):
        """Restart the schedule now (after a pause such as an upload); the
        statistics then describe this run, and their sums stay small ints."""
        self.reset_stats()
        self._next = time.ticks_us()
        self._frac = 0

    def _advance(self):
        step = self._num + self._frac
        whole = step // self._scale
        self._frac = step - whole * self._scale
        self._next = time.ticks_add(self._next, whole)  # pyright: ignore[reportArgumentType] (set by start())

    def wait(self):
        """Block until the next deadline; returns how late we are (us)."""
        if self._next is None:
            self.start()
        while True:
            left = time.ticks_diff(self._next, time.ticks_us())  # pyright: ignore[reportCallIssue, reportArgumentType]
            if left <= 0:
                break
            if left > _SPIN_US:
                time.sleep_us(left - _SPIN_US)
        late = -left
        if self.samples:
            d = late - self.last_late_us
            self.interval_err_sum_us += d if d >= 0 else -d
        else:
            self.first_late_us = late
        self.last_late_us = late
        self.samples += 1
        self.late_sum_us += late
        if late > self.late_max_us:
            self.late_max_us = late
        if late * self.rate_hz > 1_000_000:
            self.missed += 1
        self._advance()
        return late

    def fill(self, window, sensor, tick=None):
        """Sample sensor.read(window) on schedule until the window is full;
        tick() every 256 samples (a watchdog feed during a long window)."""
        window.clear()
        while window.rows < window.capacity:
            self.wait()
            sensor.read(window)
            if tick is not None and not window.rows & 255:
                tick()

    def drift_us(self):
        """How far the last sample's interval sum is off the nominal schedule
        since start(): with deadlines this stays within one sample's lateness."""
        return self.last_late_us - self.first_late_us

    def mean_interval_error_us(self):
        return self.interval_err_sum_us / (self.samples - 1) if self.samples > 1 else 0

    def report(self):
        """One line: interval error, drift, lateness, missed deadlines."""
        period = 1_000_000 / self.rate_hz
        return "sampler %gHz: %d samples, mean interval error %.1fus (%.2f%%), drift %dus, max late %dus, missed %d" % (
            self.rate_hz,
            self.samples,
            self.mean_interval_error_us(),
            100 * self.mean_interval_error_us() / period,
            self.drift_us(),
            self.late_max_us,
            self.missed,
        )
