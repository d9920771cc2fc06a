"""The I2S microphone driver (uingest.sensors.i2s_mic) against the fake I2S of
fake_hw.py: the top 16 bits of each 32-bit word, the shift as gain with
saturation, DMA-sized reads, and no heap allocated per sample inside MicroPython."""

import random

import pytest

from conftest import FIRMWARE, HERE
from fake_hw import FakeI2S
from uingest.sensors.i2s_mic import I2SMic
from uingest.window import Window

# -- I2S microphone -----------------------------------------------------------------------------------


def clamp16(v):
    return max(-32768, min(32767, v))


WORDS = [0x7FFFFF00, -0x100, 0x00010000, 0x12345600, -0x80000000, 0x00008000, -0x12345600, 0x0000FF00]


def test_i2s_keeps_the_top_16_bits():
    mic = I2SMic(FakeI2S(WORDS), chunk_frames=3)
    assert mic.sensors == (("audio", "wav"),) and mic.typecode == "h"
    w = Window(mic.sensors, 1000 / 16000, 8, "h")
    mic.fill(w)
    assert w.rows == 8
    assert list(w.samples) == [v >> 16 for v in WORDS] == [32767, -1, 1, 0x1234, -32768, 0, -0x1235, 0]
    assert mic._i2s.reads == [12, 12, 8]  # 32-bit words, chunk by chunk, the last one shorter


def test_i2s_fills_only_the_free_rows():
    mic = I2SMic(FakeI2S(WORDS))
    w = Window(mic.sensors, 1000 / 16000, 5, "h")
    w.append(7)
    w.append(-7)
    mic.fill(w)
    assert list(w.samples) == [7, -7] + [v >> 16 for v in WORDS[:3]]
    assert mic._i2s.reads == [12]
    mic.fill(w)  # already full: no read
    assert mic._i2s.reads == [12]


@pytest.mark.parametrize("shift", range(8, 17))
def test_i2s_shift_is_gain_with_saturation(shift):
    rnd = random.Random(shift)
    words = WORDS + [rnd.randrange(-(2**23), 2**23) << 8 for _ in range(300)] + [rnd.randrange(-(2**31), 2**31)]
    mic = I2SMic(FakeI2S(words), shift=shift, chunk_frames=64)
    w = Window(mic.sensors, 1000 / 16000, len(words), "h")
    mic.fill(w)
    assert list(w.samples) == [clamp16(v >> shift) for v in words]


def test_i2s_large_window_in_dma_sized_reads():
    words = [(k * 2654435761 % 2**32 - 2**31) & ~0xFF for k in range(16000)]
    mic = I2SMic(FakeI2S(words))
    w = Window(mic.sensors, 1000 / 16000, 16000, "h")
    mic.fill(w)
    assert list(w.samples) == [v >> 16 for v in words]
    assert mic._i2s.reads == [1024] * 62 + [512]


def test_i2s_errors():
    with pytest.raises(ValueError, match="shift"):
        I2SMic(FakeI2S(WORDS), shift=17)
    with pytest.raises(ValueError, match="shift"):
        I2SMic(FakeI2S(WORDS), shift=7)
    with pytest.raises(ValueError, match="chunk_frames"):
        I2SMic(FakeI2S(WORDS), chunk_frames=0)
    mic = I2SMic(FakeI2S(WORDS))
    with pytest.raises(ValueError, match="typecode 'h'"):
        mic.fill(Window(mic.sensors, 1, 4, "f"))
    with pytest.raises(ValueError, match="one-sensor"):
        mic.fill(Window((("a", "wav"), ("b", "wav")), 1, 4, "h"))

    class Silent:
        def readinto(self, buf):
            return 0  # what a non-blocking I2S gives when no data is ready

    with pytest.raises(OSError, match="blocking"):
        I2SMic(Silent()).fill(Window((("audio", "wav"),), 1, 4, "h"))


def test_i2s_fill_allocates_nothing_per_sample_on_micropython(mpy):
    # 1 s of 16 kHz audio through the driver: the heap use must not grow
    # with the samples (only a slice view for a window's last, short read).
    out = mpy.run_program("i2s_fill_allocation.py", path=FIRMWARE + ":" + HERE, heap="128K").stdout.decode().split()
    assert out[0::3] == ["16", "12"] and out[1::3] == ["16000", "16000"]
    assert all(int(used) <= 256 for used in out[2::3]), out
