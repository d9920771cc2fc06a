"""The ADC driver (uingest.sensors.adc): raw 16-bit readings to volts (or any
unit), one or more channels per row."""

import pytest

from helpers import f32
from uingest.sensors.adc import ADCSensor
from uingest.window import Window

# -- ADC ------------------------------------------------------------------------------------------------


class FakeADC:
    def __init__(self, *values):
        self.values = list(values)

    def read_u16(self):
        return self.values.pop(0)


def test_adc_one_channel():
    s = ADCSensor(FakeADC(0, 65535, 32768))
    assert s.sensors == (("adc", "V"),) and s.typecode == "f"
    w = Window(s.sensors, 10, 3)
    for _ in range(3):
        s.read(w)
    assert list(w.samples) == [0.0, f32(3.3), f32(32768 * 3.3 / 65535)]


def test_adc_scale_and_names():
    s = ADCSensor(FakeADC(1000), name="light", units="lx", scale=0.5)
    w = Window(s.sensors, 10, 1)
    s.read(w)
    assert s.sensors == (("light", "lx"),) and list(w.samples) == [500.0]


def test_adc_channels_in_one_row():
    s = ADCSensor((FakeADC(100, 300), FakeADC(200, 400)), name=("a0", "a1"), scale=1)
    assert s.sensors == (("a0", "V"), ("a1", "V"))
    w = Window(s.sensors, 10, 2)
    s.read(w)
    s.read(w)
    assert w.rows == 2 and list(w.samples) == [100, 200, 300, 400]
    with pytest.raises(IndexError, match="full"):
        s.read(w)
    with pytest.raises(ValueError, match="2 channel names"):
        ADCSensor((FakeADC(), FakeADC()), name="a")
