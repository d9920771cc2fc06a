"""The synthetic sensors, the IMU (uingest.sensors.synthetic) and the audio tone
(uingest.sensors.tone): exactly the rows their formulas give."""

import math

import pytest

from helpers import G, f32, rows_of
from uingest.sensors import synthetic, tone
from uingest.window import Window

# -- synthetic sensors ------------------------------------------------------------------------------------


@pytest.mark.parametrize("label, rate", [("idle", 100), ("wave", 62.5), ("circle", 1000)])
def test_synthetic_imu_rows_equal_expected(label, rate):
    s = synthetic.SyntheticIMU(label, rate)
    assert s.sensors == (("accX", "m/s2"), ("accY", "m/s2"), ("accZ", "m/s2")) and s.typecode == "f"
    w = Window(s.sensors, 1000 / rate, 250)
    for _ in range(250):
        s.read(w)
    assert s.t == 250
    assert rows_of(w) == [[f32(v) for v in synthetic.expected(label, t, rate)] for t in range(250)]
    z = [r[2] for r in rows_of(w)]
    assert z[0] == z[99] == f32(G) and z[100] == z[199] == f32(G + 0.001) and z[200] == f32(G + 0.002)


def test_synthetic_imu_formula():
    for label in ("idle", "wave", "circle", "x"):
        seed = synthetic.label_seed(label)
        f, amp = 1 + seed % 7 + 0.37, 1 + (seed >> 3) % 5
        for t in (0, 1, 77, 1234, 10**6 + 3):
            x, y, z = synthetic.expected(label, t, 100)
            ph = 2 * math.pi * f * t / 100
            assert x == pytest.approx(amp * math.sin(ph), abs=1e-6) and y == pytest.approx(amp * math.cos(ph), abs=1e-6)
            assert z == G + (t // 100 % 1000) * 0.001
        # whole turns are dropped exactly: 100 s later is the same row
        assert synthetic.expected(label, 5, 100)[:2] == synthetic.expected(label, 5 + 100 * 100, 100)[:2]


def test_synthetic_imu_labels_and_set_label():
    s = synthetic.SyntheticIMU("idle", 100)
    assert synthetic.label_seed("idle") != synthetic.label_seed("wave")
    s.t = 40
    s.set_label("wave")
    assert s.t == 0 and s.label == "wave"
    w = Window(s.sensors, 10, 2)
    s.read(w)
    s.read(w)
    assert rows_of(w) == [[f32(v) for v in synthetic.expected("wave", t, 100)] for t in (0, 1)]
    assert synthetic.expected("idle", 3, 100) != synthetic.expected("wave", 3, 100)
    assert synthetic.expected("idle", 250, 100, marker_rows=50)[2] == G + 0.005


def test_synthetic_audio_fill_and_read_equal_expected():
    a = tone.SyntheticAudio("wave")
    assert a.sensors == (("audio", "wav"),) and a.typecode == "h" and a.rate_hz == 16000
    w = Window(a.sensors, 1000 / 16000, 16000, "h")
    a.fill(w)
    a.fill(w)  # full: nothing more
    assert w.rows == 16000 and a.t == 16000
    want = [tone.expected_audio("wave", t) for t in range(16000)]
    assert list(w.samples) == want
    assert abs(max(want) + min(want)) <= 1  # a symmetric tone
    assert 1000 < max(want) <= 32767
    w.clear()
    a.read(w)
    a.read(w)
    assert list(w.samples[:2]) == [tone.expected_audio("wave", t) for t in (16000, 16001)]


def test_synthetic_audio_is_the_stated_tone():
    for label in ("idle", "wave", "circle"):
        seed = synthetic.label_seed(label)
        f, amp = 200 + (seed % 16) * 50, 2000 + ((seed >> 4) % 8) * 3000
        for t in (0, 3, 100, 15999, 16000, 123456):
            k = (t % 16000 * f % 16000) * 256 // 16000
            want = round(32767 * math.sin(2 * math.pi * k / 256)) * amp // 32767
            assert tone.expected_audio(label, t) == want
        assert tone.SyntheticAudio(label).freq_hz == f


def test_synthetic_errors():
    with pytest.raises(ValueError, match="rate_hz"):
        synthetic.SyntheticIMU("idle", 0)
    with pytest.raises(ValueError, match="rate_hz"):
        tone.SyntheticAudio("idle", 16000.5)
    with pytest.raises(ValueError, match="typecode 'h'"):
        tone.SyntheticAudio("idle").fill(Window((("audio", "wav"),), 1, 2, "f"))
