"""The MPU6050 and MPU6886 drivers (uingest.sensors.imu) against the fake I2C
bus of fake_hw.py, which emulates the chips' register files: the exact bytes
each driver writes at init, the values it reads back, and its errors."""

import pytest

from fake_hw import (
    ACCEL_CONFIG,
    ACCEL_CONFIG2,
    CONFIG,
    GYRO_CONFIG,
    PWR_MGMT_1,
    PWR_MGMT_2,
    SMPLRT_DIV,
    FakeI2C,
    put_int16,
)
from helpers import G, f32
from uingest.sensors.imu import MPU6050, MPU6886
from uingest.window import Window

CHIPS = {MPU6050: 0x68, MPU6886: 0x19}


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
