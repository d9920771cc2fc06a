"""Sensor drivers (uingest.sensors) against fake hardware, and the boards.

The fake I2C bus (fake_hw.py) emulates the chips' register files: the tests
check the exact bytes each driver writes and the values it reads back. The
same scenarios then run inside the MicroPython unix port and must print the
same bytes as under CPython."""

import contextlib
import glob
import importlib.util
import io
import math
import os
import random
import struct
import sys
import types

import pytest

from conftest import FIRMWARE, HERE, ROOT, run_on_cpython
from fake_hw import FakeI2C, FakeI2S, put_int16
from uingest.sensors import sim, synthetic, tone
from uingest.sensors.adc import ADCSensor
from uingest.sensors.csv_replay import CSVReplay
from uingest.sensors.hardware import Hardware
from uingest.sensors.i2s_mic import I2SMic
from uingest.sensors.imu import MPU6050, MPU6886
from uingest.window import Window
from uingest_tools import bundle

G = 9.80665
PWR_MGMT_1, PWR_MGMT_2, SMPLRT_DIV, CONFIG, GYRO_CONFIG, ACCEL_CONFIG, ACCEL_CONFIG2 = (
    0x6B,
    0x6C,
    0x19,
    0x1A,
    0x1B,
    0x1C,
    0x1D,
)
CHIPS = {MPU6050: 0x68, MPU6886: 0x19}
BOARDS = sorted(glob.glob(os.path.join(ROOT, "boards", "*", "board.py")))


def f32(x):
    return struct.unpack("<f", struct.pack("<f", x))[0]


def bus_with(chip, addr=0x68):
    bus = FakeI2C()
    regs = bus.add(addr, CHIPS[chip])
    return bus, regs


def written(bus):
    """{reg: value} of the single-byte writes, checking there were no others."""
    out = {}
    for _, reg, data in bus.writes:
        assert len(data) == 1
        out[reg] = data[0]
    return out


# -- IMU: the bytes written at init -----------------------------------------------------------------


def test_mpu6050_init_writes_exact_bytes():
    bus, regs = bus_with(MPU6050)
    MPU6050(bus)
    assert bus.writes == [
        (0x68, PWR_MGMT_1, b"\x01"),  # awake (SLEEP cleared), PLL clock
        (0x68, PWR_MGMT_2, b"\x00"),  # no axis in standby
        (0x68, SMPLRT_DIV, b"\x09"),  # 1 kHz / (1 + 9) = 100 Hz
        (0x68, CONFIG, b"\x03"),  # DLPF 44 Hz (accel) / 42 Hz (gyro), under 50 Hz
        (0x68, GYRO_CONFIG, b"\x00"),  # +-250 dps
        (0x68, ACCEL_CONFIG, b"\x00"),  # +-2 g
    ]
    assert regs[PWR_MGMT_1] == 0x01


def test_mpu6886_init_writes_exact_bytes():
    bus, regs = bus_with(MPU6886)
    regs[PWR_MGMT_1] = 0x41  # the MPU6886's reset value
    MPU6886(bus)
    assert bus.writes == [
        (0x68, PWR_MGMT_1, b"\x01"),
        (0x68, PWR_MGMT_2, b"\x00"),
        (0x68, SMPLRT_DIV, b"\x09"),
        (0x68, CONFIG, b"\x03"),  # gyro DLPF 41 Hz
        (0x68, GYRO_CONFIG, b"\x00"),  # FCHOICE_B 00: DLPF and divider in use
        (0x68, ACCEL_CONFIG, b"\x00"),
        (0x68, ACCEL_CONFIG2, b"\x03"),  # accel DLPF 44.8 Hz, no averaging
    ]
    assert regs[PWR_MGMT_1] == 0x01


@pytest.mark.parametrize("chip", [MPU6050, MPU6886])
@pytest.mark.parametrize("g, bits", [(2, 0x00), (4, 0x08), (8, 0x10), (16, 0x18)])
def test_accel_range_bits(chip, g, bits):
    bus, _ = bus_with(chip)
    chip(bus, accel_range_g=g)
    assert written(bus)[ACCEL_CONFIG] == bits


@pytest.mark.parametrize("chip", [MPU6050, MPU6886])
@pytest.mark.parametrize("dps, bits", [(250, 0x00), (500, 0x08), (1000, 0x10), (2000, 0x18)])
def test_gyro_range_bits(chip, dps, bits):
    bus, _ = bus_with(chip)
    chip(bus, gyro_range_dps=dps, gyro=True)
    assert written(bus)[GYRO_CONFIG] == bits


# rate -> (SMPLRT_DIV, DLPF_CFG): the chip runs at rate_hz or just above, its
# filter's widest 3-dB bandwidth stays under rate_hz / 2
MPU6050_RATES = [
    (1000, 0, 1),
    (500, 1, 1),
    (400, 1, 1),
    (200, 4, 2),
    (100, 9, 3),
    (62.5, 15, 4),
    (50, 19, 4),
    (25, 39, 5),
    (10, 99, 6),
    (1, 255, 6),
]
MPU6886_RATES = [
    (1000, 0, 1),
    (400, 1, 2),  # 218 Hz of accel bandwidth is over 200: the next filter
    (200, 4, 2),
    (100, 9, 3),
    (50, 19, 4),
    (25, 39, 5),
    (12, 82, 6),
    (2, 255, 6),
]


@pytest.mark.parametrize("rate, div, cfg", MPU6050_RATES)
def test_mpu6050_rate_sets_divider_and_filter(rate, div, cfg):
    bus, _ = bus_with(MPU6050)
    m = MPU6050(bus, rate_hz=rate)
    w = written(bus)
    assert (w[SMPLRT_DIV], w[CONFIG]) == (div, cfg) and m.dlpf_cfg == cfg
    assert ACCEL_CONFIG2 not in w  # the MPU6050 has no such register (0x1D is motion detection)


@pytest.mark.parametrize("rate, div, cfg", MPU6886_RATES)
def test_mpu6886_rate_sets_divider_and_both_filters(rate, div, cfg):
    bus, _ = bus_with(MPU6886)
    MPU6886(bus, rate_hz=rate)
    w = written(bus)
    assert (w[SMPLRT_DIV], w[CONFIG], w[ACCEL_CONFIG2]) == (div, cfg, cfg)


def test_other_address():
    bus, _ = bus_with(MPU6050, addr=0x69)  # AD0 high
    MPU6050(bus, addr=0x69)
    assert {a for a, _, _ in bus.writes} == {0x69}


# -- IMU: raw registers to m/s2 and dps ---------------------------------------------------------------


@pytest.mark.parametrize(
    "g, raw, want",
    [
        (2, (16384, -16384, 0), (G, -G, 0)),
        (2, (32767, -32768, 1), (32767 / 16384 * G, -2 * G, G / 16384)),
        (4, (8192, -4096, 100), (G, -G / 2, 100 / 8192 * G)),
        (8, (4096, -4096, -1), (G, -G, -G / 4096)),
        (16, (2048, -32768, 32767), (G, -16 * G, 32767 / 2048 * G)),
    ],
)
@pytest.mark.parametrize("chip", [MPU6050, MPU6886])
def test_accel_values(chip, g, raw, want):
    bus, regs = bus_with(chip)
    put_int16(regs, 0x3B, *raw)
    m = chip(bus, accel_range_g=g)
    assert m.sensors == (("accX", "m/s2"), ("accY", "m/s2"), ("accZ", "m/s2"))
    w = Window(m.sensors, 10, 2, m.typecode)
    m.read(w)
    assert w.rows == 1
    assert list(w.samples[:3]) == [f32(v) for v in want]


@pytest.mark.parametrize(
    "dps, raw, want",
    [
        (250, (131, -131, 0), (1.0, -1.0, 0.0)),
        (500, (655, -32768, 1), (10.0, -32768 / 65.5, 1 / 65.5)),
        (1000, (328, -328, 32767), (10.0, -10.0, 32767 / 32.8)),
        (2000, (164, -32768, -164), (10.0, -32768 / 16.4, -10.0)),
    ],
)
@pytest.mark.parametrize("chip", [MPU6050, MPU6886])
def test_gyro_values(chip, dps, raw, want):
    bus, regs = bus_with(chip)
    put_int16(regs, 0x3B, 16384, 0, -16384, 0x1234, *raw)  # accel, temperature (ignored), gyro
    m = chip(bus, gyro_range_dps=dps, gyro=True)
    assert [n for n, _ in m.sensors] == ["accX", "accY", "accZ", "gyrX", "gyrY", "gyrZ"]
    assert [u for _, u in m.sensors] == ["m/s2"] * 3 + ["dps"] * 3
    w = Window(m.sensors, 10, 1)
    m.read(w)
    assert list(w.samples) == [f32(v) for v in (G, 0, -G) + want]


@pytest.mark.parametrize("gyro, n", [(False, 6), (True, 14)])
def test_one_burst_read_per_row(gyro, n):
    class CountingI2C(FakeI2C):
        def __init__(self):
            super().__init__()
            self.reads = []

        def readfrom_mem_into(self, addr, reg, buf):
            self.reads.append((addr, reg, len(buf)))
            super().readfrom_mem_into(addr, reg, buf)

    bus = CountingI2C()
    bus.add(0x68, 0x68)
    m = MPU6050(bus, gyro=gyro)
    bus.reads.clear()
    w = Window(m.sensors, 10, 5)
    for _ in range(5):
        m.read(w)
    assert bus.reads == [(0x68, 0x3B, n)] * 5


def test_rows_follow_the_registers():
    bus, regs = bus_with(MPU6050)
    m = MPU6050(bus, accel_range_g=8)
    w = Window(m.sensors, 10, 3)
    for k in range(3):
        put_int16(regs, 0x3B, 4096 * k, -4096 * k, 1)
        m.read(w)
    assert list(w.samples) == [f32(v) for k in range(3) for v in (G * k, -G * k, G / 4096)]


# -- IMU: errors ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("chip, other", [(MPU6050, 0x19), (MPU6886, 0x68), (MPU6050, 0x70)])
def test_wrong_who_am_i(chip, other):
    bus = FakeI2C()
    bus.add(0x68, other)
    with pytest.raises(ValueError) as e:
        chip(bus)
    msg = str(e.value)
    name = chip.__name__
    assert msg.startswith(name + ":") and "0x68" in msg and "0x%02x" % other in msg and "\n" not in msg
    assert "WHO_AM_I" in msg and "expected 0x%02x" % CHIPS[chip] in msg
    assert bus.writes == []  # nothing written to a chip we do not know


def test_wrong_who_am_i_names_a_known_chip():
    bus = FakeI2C()
    bus.add(0x68, 0x19)
    with pytest.raises(ValueError, match="looks like an MPU6886"):
        MPU6050(bus)
    bus = FakeI2C()
    bus.add(0x68, 0x00)
    with pytest.raises(ValueError) as e:
        MPU6050(bus)
    assert "looks like" not in str(e.value)


@pytest.mark.parametrize("chip", [MPU6050, MPU6886])
def test_absent_device(chip):
    bus = FakeI2C()  # nothing answers: OSError(19), ENODEV
    with pytest.raises(OSError) as e:
        chip(bus)
    msg = str(e.value)
    assert msg.startswith(chip.__name__ + ": no answer at I2C address 0x68") and "\n" not in msg


def test_device_at_another_address_only():
    bus, _ = bus_with(MPU6050, addr=0x69)
    with pytest.raises(OSError, match="0x68"):
        MPU6050(bus)


@pytest.mark.parametrize(
    "kw, name",
    [
        ({"accel_range_g": 3}, "accel_range_g"),
        ({"gyro_range_dps": 300}, "gyro_range_dps"),
        ({"rate_hz": 0}, "rate_hz"),
        ({"rate_hz": 1001}, "rate_hz"),
        ({"rate_hz": True}, "rate_hz"),
        ({"rate_hz": "100"}, "rate_hz"),
    ],
)
def test_bad_arguments(kw, name):
    bus, _ = bus_with(MPU6050)
    with pytest.raises(ValueError, match=name):
        MPU6050(bus, **kw)
    assert bus.writes == []


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


# -- CSV replay -----------------------------------------------------------------------------------------


def write(tmp_path, text, name="data.csv"):
    p = tmp_path / name
    p.write_text(text)
    return str(p)


def rows_of(w):
    return [list(w.samples[i * w.width : (i + 1) * w.width]) for i in range(w.rows)]


def test_csv_header_units_and_looping(tmp_path):
    path = write(tmp_path, "timestamp,accX,accY,accZ\nms,m/s2,m/s2,m/s2\n0,1.5,-2,9.75\n10,0.25,3,9.5\n\n20,-1,0,10\n")
    s = CSVReplay(path)
    assert s.sensors == (("accX", "m/s2"), ("accY", "m/s2"), ("accZ", "m/s2")) and s.typecode == "f"
    w = Window(s.sensors, 10, 7)
    for _ in range(7):
        s.read(w)
    first = [[1.5, -2, 9.75], [0.25, 3, 9.5], [-1, 0, 10]]
    assert rows_of(w) == first + first + first[:1]  # back to the first row after the last
    s.close()


def test_csv_without_timestamp_and_units_given(tmp_path):
    path = write(tmp_path, "x,y\r\n1,2\r\n3,4\r\n")
    s = CSVReplay(path, sensors=(("x", "g"), ("y", "g")))
    w = Window(s.sensors, 10, 3)
    for _ in range(3):
        s.read(w)
    assert s.sensors == (("x", "g"), ("y", "g")) and rows_of(w) == [[1, 2], [3, 4], [1, 2]]


def test_csv_sensors_argument_overrides_a_units_row(tmp_path):
    path = write(tmp_path, "timestamp,a\nms,V\n0,1\n")
    assert CSVReplay(path, (("a", "mV"),)).sensors == (("a", "mV"),)


@pytest.mark.parametrize(
    "text, sensors, line, why",
    [
        ("", None, 1, "empty"),
        ("\n1,2\n", None, 1, "empty"),
        ("a,b\n1,2\n", None, 2, "no units row"),
        ("a,b\nV,V\n", None, 3, "no data rows"),
        ("a,b\n", (("a", "V"), ("b", "V")), 2, "no data rows"),
        ("a,,b\nV,V,V\n1,2,3\n", None, 1, "empty column name"),
        ("a,b\nV,V,V\n1,2\n", None, 2, "units row has 3 columns"),
        ("a,b\nV,V\n1,2\n", (("a", "V"),), 2, "sensors= gives 1"),
    ],
)
def test_csv_bad_file_names_file_and_line(tmp_path, text, sensors, line, why):
    path = write(tmp_path, text)
    with pytest.raises(ValueError) as e:
        CSVReplay(path, sensors)
    msg = str(e.value)
    assert msg.startswith("%s line %d: " % (path, line)) and why in msg and "\n" not in msg


@pytest.mark.parametrize(
    "bad, why",
    [
        ("1,2,3", "expected 4 values, got 3"),
        ("1,2,abc,4", "'abc' is not a finite number"),
        ("1,2,nan,4", "'nan' is not a finite number"),
        ("1,2,-inf,4", "'-inf' is not a finite number"),
    ],
)
def test_csv_malformed_row(tmp_path, bad, why):
    path = write(tmp_path, "timestamp,a,b,c\nms,V,V,V\n0,1,2,3\n\n%s\n9,9,9,9\n" % bad)
    s = CSVReplay(path)
    w = Window(s.sensors, 10, 5)
    s.read(w)
    with pytest.raises(ValueError) as e:
        s.read(w)
    assert str(e.value) == "%s line 5: %s" % (path, why)  # line 4 is blank
    assert w.rows == 1  # the bad row was not counted


def test_csv_window_of_another_width(tmp_path):
    s = CSVReplay(write(tmp_path, "a,b\nV,V\n1,2\n"))
    with pytest.raises(ValueError, match="2 columns"):
        s.read(Window((("a", "V"),), 10, 1))


def test_csv_missing_file(tmp_path):
    with pytest.raises(OSError):
        CSVReplay(str(tmp_path / "nope.csv"))


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


# -- the same scenarios inside MicroPython ------------------------------------------------------------------


def scenario_files(tmp_path):
    """The paths mp_programs/sensor_scenario.py takes: a good CSV file and a bad one."""
    csv = write(tmp_path, "timestamp,a,b\nms,V,A\n0,1.5,-2\n1,0.25,3e2\n2,-1,0\n")
    bad = write(tmp_path, "a,b\n1,2\n", "bad.csv")
    return csv, bad


def test_scenario_same_bytes_on_micropython(mpy, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # sim.setup() counts boots in a file in the current folder
    files = scenario_files(tmp_path)
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        run_on_cpython("sensor_scenario.py", *files)
    want = out.getvalue()
    # 256K: this checks correctness, not a memory budget
    got = mpy.run_program("sensor_scenario.py", *files, path=FIRMWARE + ":" + HERE, heap="256K", cwd=str(tmp_path))
    got = got.stdout.decode()
    assert got == want
    lines = want.split("\n")
    assert lines[0] == "writes 6b=01 6c=00 19=09 1a=03 1b=00 1c=00"
    assert lines[2] == "writes 6b=01 6c=00 19=01 1a=01 1b=18 1c=18"
    assert lines[4] == "writes 6b=01 6c=00 19=13 1a=04 1b=08 1c=08 1d=04"
    assert lines[6:9] == ["ValueError True True True 0", "ValueError True True True 0", "OSError True True True 0"]
    assert "csv error PATH line 2: no units row" in want
    assert "synthetic imu True" in want and "synthetic audio True" in want
    assert "sim SyntheticIMU None None None" in want and want.count("adc 3 ") == 2


def test_i2s_fill_allocates_nothing_per_sample_on_micropython(mpy):
    # 1 s of 16 kHz audio through the driver: the heap use must not grow
    # with the samples (only a slice view for a window's last, short read).
    out = mpy.run_program("i2s_fill_allocation.py", path=FIRMWARE + ":" + HERE, heap="128K").stdout.decode().split()
    assert out[0::3] == ["16", "12"] and out[1::3] == ["16000", "16000"]
    assert all(int(used) <= 256 for used in out[2::3]), out


# -- boards -------------------------------------------------------------------------------------------------


def board_name(path):
    return os.path.basename(os.path.dirname(path))


def load_board(path):
    spec = importlib.util.spec_from_file_location("board_" + board_name(path).replace("-", "_"), path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_the_boards_are_there():
    assert {board_name(p) for p in BOARDS} >= {
        "esp32-devkitc-mpu6050",
        "esp32-s3-devkitc-1",
        "m5stack-atom-matrix",
        "esp32-inmp441",
        "unix-sim",
    }


@pytest.mark.parametrize("path", BOARDS, ids=board_name)
def test_board_compiles_for_xtensawin(tmp_path, path):
    proc = bundle.compile_file(path, str(tmp_path / "board.mpy"), "xtensawin")
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "board.mpy").read_bytes()[:2] == b"M\x06"


@pytest.mark.parametrize("path", BOARDS, ids=board_name)
def test_board_imports_without_hardware(monkeypatch, path):
    # None in sys.modules makes `import machine` fail: importing a board must not need it
    monkeypatch.setitem(sys.modules, "machine", None)
    monkeypatch.setitem(sys.modules, "neopixel", None)
    mod = load_board(path)
    assert isinstance(mod.DESCRIPTION, str) and mod.DESCRIPTION and "\n" not in mod.DESCRIPTION
    assert isinstance(mod.DEVICE_TYPE, str) and mod.DEVICE_TYPE.isupper() and " " not in mod.DEVICE_TYPE
    assert isinstance(mod.PINS, dict) and all(isinstance(v, int) for v in mod.PINS.values())
    assert callable(mod.setup)


def test_boards_import_on_micropython(mpy):
    out = mpy.run_program("exec_board_files.py", *BOARDS).stdout.decode().split("\n")[:-1]
    assert [line.split()[0] for line in out] == [load_board(p).DEVICE_TYPE for p in BOARDS]


class FakePin:
    IN, OUT, PULL_UP = 1, 3, 2

    def __init__(self, pin, mode=None, pull=None):
        self.pin, self.mode, self.pull = pin, mode, pull

    def value(self):
        return 1


class FakeNeoPixel:
    def __init__(self, pin, n):
        self.pin, self.pixels, self.writes = pin, [(9, 9, 9)] * n, 0

    def __setitem__(self, i, color):
        self.pixels[i] = color

    def fill(self, color):
        self.pixels = [color] * len(self.pixels)

    def write(self):
        self.writes += 1


def fake_machine(who_am_i):
    m = types.ModuleType("machine")

    class I2C(FakeI2C):
        made = []

        def __init__(self, i2c_id, sda, scl, freq=400000):
            super().__init__()
            self.args = (i2c_id, sda.pin, scl.pin, freq)
            self.add(0x68, who_am_i)
            I2C.made.append(self)

    class I2S(FakeI2S):
        RX, MONO = 1, 0
        made = []

        def __init__(self, i2s_id, **kw):
            super().__init__([0])
            self.kw = kw
            I2S.made.append(self)

    m.Pin, m.I2C, m.I2S = FakePin, I2C, I2S
    return m


HARDWARE = {
    # board: (WHO_AM_I of the fake chip, sensor class, I2C (sda, scl), LED (pin, pixels, index), button pin)
    "esp32-devkitc-mpu6050": (0x68, MPU6050, (21, 22), None, None),
    "esp32-s3-devkitc-1": (0x68, MPU6050, (8, 9), (48, 1, 0), 0),
    "m5stack-atom-matrix": (0x19, MPU6886, (25, 21), (27, 25, 12), 39),
    "esp32-inmp441": (None, I2SMic, None, None, None),
}


@pytest.mark.parametrize("name", sorted(HARDWARE))
def test_board_setup_with_fake_hardware(monkeypatch, name):
    who, cls, i2c_pins, led, button = HARDWARE[name]
    machine = fake_machine(who)
    neopixel = types.ModuleType("neopixel")
    neopixel.NeoPixel = FakeNeoPixel
    monkeypatch.setitem(sys.modules, "machine", machine)
    monkeypatch.setitem(sys.modules, "neopixel", neopixel)
    mod = load_board(os.path.join(ROOT, "boards", name, "board.py"))
    assert not machine.I2C.made and not machine.I2S.made  # nothing built at import
    hw = mod.setup({"sample_rate_hz": 16000 if cls is I2SMic else 100, "label": "idle"})
    assert isinstance(hw, Hardware) and type(hw.sensor) is cls
    assert isinstance(hw.wdt_timeout_ms, int) and hw.wdt_timeout_ms >= 10000
    if i2c_pins:
        (bus,) = machine.I2C.made
        assert bus.args[1:3] == i2c_pins and bus.args[3] == 400000
        assert bus.writes[0] == (0x68, PWR_MGMT_1, b"\x01") and hw.sensor.rate_hz == 100
    else:
        (i2s,) = machine.I2S.made
        kw = dict(i2s.kw, sck=i2s.kw["sck"].pin, ws=i2s.kw["ws"].pin, sd=i2s.kw["sd"].pin)
        assert {k: kw[k] for k in ("sck", "ws", "sd", "bits", "rate", "mode", "format")} == {
            "sck": 14,
            "ws": 15,
            "sd": 32,
            "bits": 32,
            "rate": 16000,
            "mode": machine.I2S.RX,
            "format": machine.I2S.MONO,
        }
        assert hw.sensor.shift == 16 and hw.sensor.typecode == "h"
    if led is None:
        assert hw.led is None
    else:
        pin, n, index = led
        np = hw.led._np
        assert np.pin.pin == pin and len(np.pixels) == n and set(np.pixels) == {(0, 0, 0)}
        hw.led.on()
        assert np.pixels[index] != (0, 0, 0) and max(np.pixels[index]) <= 32  # dim
        assert sum(p != (0, 0, 0) for p in np.pixels) == 1
        hw.led.off()
        assert set(np.pixels) == {(0, 0, 0)}
    if button is None:
        assert hw.button is None
    else:
        assert hw.button.pin == button and hw.button.mode == FakePin.IN


def test_board_setup_reports_a_missing_imu(monkeypatch):
    machine = fake_machine(0x68)

    class NoDevice(machine.I2C):
        def __init__(self, *a, **kw):
            super().__init__(*a, **kw)
            self.devices.clear()

    machine.I2C = NoDevice
    monkeypatch.setitem(sys.modules, "machine", machine)
    mod = load_board(os.path.join(ROOT, "boards", "esp32-devkitc-mpu6050", "board.py"))
    with pytest.raises(OSError, match="MPU6050: no answer at I2C address 0x68"):
        mod.setup({"sample_rate_hz": 100, "label": "idle"})


def test_unix_sim_setup(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # sim.setup() counts boots in a file in the current folder
    mod = load_board(os.path.join(ROOT, "boards", "unix-sim", "board.py"))
    hw = mod.setup({"sample_rate_hz": 100, "label": "wave"})
    assert type(hw.sensor) is synthetic.SyntheticIMU and not hasattr(hw.sensor, "fill")  # sampled by read()
    assert (hw.led, hw.button, hw.wdt_timeout_ms) == (None, None, None)
    assert mod.SENSORS == hw.sensor.sensors
    hw = mod.setup({"sample_rate_hz": 16000, "label": "wave", "audio": True})
    assert type(hw.sensor) is tone.SyntheticAudio and hw.sensor.rate_hz == 16000
    path = write(tmp_path, "timestamp,a\nms,V\n0,1\n")
    hw = mod.setup({"sample_rate_hz": 100, "label": "wave", "csv": path})
    assert type(hw.sensor) is CSVReplay and hw.sensor.sensors == (("a", "V"),)
    assert sim.setup({"sample_rate_hz": 100, "label": "x"}).sensor.label == "x"


def test_unix_sim_window_fill_keeps_the_simulator_formula():
    # boards/unix-sim/simulate.py: fill(window, w) is samples w*n.. with accZ marking w
    mod = load_board(os.path.join(ROOT, "boards", "unix-sim", "board.py"))
    s = mod.SyntheticIMU("circle", 100)
    w = Window(mod.SENSORS, 10, 200)
    s.fill(w, 7)
    seed = synthetic.label_seed("circle")
    f, amp = 1 + seed % 7 + 0.37, 1 + (seed >> 3) % 5
    assert (s.freq_hz, s.amp) == (pytest.approx(f), amp)
    for i, row in enumerate(rows_of(w)):
        t = 7 * 200 + i
        ph = 2 * math.pi * f * t / 100
        assert row == pytest.approx([amp * math.sin(ph), amp * math.cos(ph), G + 7 * 0.001], abs=1e-5)
