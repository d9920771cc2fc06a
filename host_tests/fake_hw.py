"""Fake I2C bus and I2S microphone for the sensor tests; runs on CPython and
inside MicroPython (keep it small and portable)."""

import struct

# MPU6050/MPU6886 registers the drivers write and the tests check
PWR_MGMT_1, PWR_MGMT_2, SMPLRT_DIV, CONFIG, GYRO_CONFIG, ACCEL_CONFIG, ACCEL_CONFIG2 = (
    0x6B,
    0x6C,
    0x19,
    0x1A,
    0x1B,
    0x1C,
    0x1D,
)


class FakeI2C:
    """Register files of 128 bytes per address, auto-increment on burst
    access; every write is recorded as (addr, reg, bytes). An address with no
    device raises OSError(19) (ENODEV, as an ESP32 does)."""

    def __init__(self):
        self.devices = {}
        self.writes = []

    def add(self, addr, who_am_i, power=0x40):
        regs = bytearray(128)
        regs[0x75] = who_am_i
        regs[PWR_MGMT_1] = power  # after power-on: asleep
        self.devices[addr] = regs
        return regs

    def _regs(self, addr):
        if addr not in self.devices:
            raise OSError(19)
        return self.devices[addr]

    def writeto_mem(self, addr, reg, buf):
        regs = self._regs(addr)
        for i in range(len(buf)):
            regs[reg + i] = buf[i]
        self.writes.append((addr, reg, bytes(buf)))

    def readfrom_mem_into(self, addr, reg, buf):
        regs = self._regs(addr)
        for i in range(len(buf)):
            buf[i] = regs[reg + i]

    def readfrom_mem(self, addr, reg, n):
        buf = bytearray(n)
        self.readfrom_mem_into(addr, reg, buf)
        return bytes(buf)


def put_int16(regs, reg, *values):
    """Store big-endian int16 values from register reg on, as the chips do."""
    for i in range(len(values)):
        struct.pack_into(">h", regs, reg + 2 * i, values[i])


class FakeI2S:
    """machine.I2S in blocking RX mode, bits=32, MONO: readinto() fills the
    whole buffer with the next 32-bit little-endian words of `words`."""

    def __init__(self, words):
        self.words = words
        self.pos = 0
        self.reads = []  # bytes asked for by each readinto

    def readinto(self, buf):
        n = len(bytes(buf))  # bytes, whatever the buffer's item size
        self.reads.append(n)
        for i in range(n // 4):
            struct.pack_into("<i", buf, 4 * i, self.words[self.pos % len(self.words)])
            self.pos += 1
        return n
