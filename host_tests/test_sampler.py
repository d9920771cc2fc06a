"""uingest.sampler on the real unix port: deadlines, not sleeps."""

from conftest import FIRMWARE
from uingest_tools.bench import BENCH_SAMPLER as BENCH


def run(mpy, rate, seconds):
    out = mpy.run_program(BENCH, rate, seconds, path=FIRMWARE).stdout.decode().split()
    return dict(zip(["samples", "err", "period", "drift", "max_late", "missed"], map(float, out[1:])))


def test_100hz_for_3s_is_accurate(mpy):
    r = run(mpy, 100, 3)
    assert r["samples"] == 300
    assert r["err"] <= 0.01 * r["period"]  # mean interval error within 1 %
    assert abs(r["drift"]) <= r["period"]  # drift within one sample


def test_1khz_keeps_time_without_drift(mpy):
    r = run(mpy, 1000, 1)
    assert r["samples"] == 1000
    assert abs(r["drift"]) <= r["period"]


def test_fractional_period_keeps_the_average_rate():
    # 16 kHz: 62.5 us; the Bresenham carry alternates 62 and 63 us
    import time

    from uingest.sampler import Sampler

    s = Sampler(16000)
    s.start()
    t0 = s._next
    for _ in range(16000):
        s._advance()
    assert time.ticks_diff(s._next, t0) == 1_000_000
