"""uingest.sampler on the real unix port: deadlines, not sleeps. What is asserted holds on a loaded machine
(every deadline gets exactly one sample, never early, in order, and the schedule does not slide); how
accurate the intervals are is `uingest bench` output (sampler_line), not a test."""

from conftest import FIRMWARE

# how late the last sample may be: one scheduling delay on a busy machine, never the sum of them; a sampler
# that sleeps an interval instead of waiting for a deadline ends a whole stall late
LAST_SAMPLE_LATE_US = 400_000


def reads(mpy, rate, seconds, stall_at=-1, stall_ms=0):
    out = mpy.run_program("sampler_deadlines.py", rate, seconds, stall_at, stall_ms, path=FIRMWARE).stdout.split()
    assert out[:3] == [b"samples", str(rate * seconds).encode(), str(rate * seconds).encode()], out[:3]
    return [int(t) for t in out[3:]]


def check_schedule(reads_us, rate):
    """Each read i at or after deadline i (t0 + i periods: never early, so no deadline has two samples), the
    reads in order, and the last one within LAST_SAMPLE_LATE_US of its deadline (none missed, no drift)."""
    period_us = 1_000_000 // rate
    early = [(i, t) for i, t in enumerate(reads_us) if t < i * period_us]
    assert not early, "read before its deadline (sample, us after start): %s" % early[:5]
    assert all(a <= b for a, b in zip(reads_us, reads_us[1:])), "reads out of order"
    last = len(reads_us) - 1
    assert reads_us[last] - last * period_us < LAST_SAMPLE_LATE_US, (reads_us[last], last * period_us)


def test_100hz_for_3s_meets_every_deadline_once(mpy):
    check_schedule(reads(mpy, 100, 3), 100)


def test_1khz_keeps_time_without_drift(mpy):
    check_schedule(reads(mpy, 1000, 1), 1000)


def test_a_stall_is_caught_up_not_carried(mpy):
    # sample 50's read blocks 1 s: the 100 deadlines it covered are each sampled right after it, and the run
    # still ends on schedule (a sampler that sleeps an interval would end 1 s late)
    r = reads(mpy, 100, 3, stall_at=50, stall_ms=1000)
    check_schedule(r, 100)
    assert r[51] - r[50] >= 990_000  # the stall happened (sleep_ms and ticks_us are different clocks)
    assert r[149] - r[51] < LAST_SAMPLE_LATE_US  # the deadlines it covered: sampled back to back, not spread


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
