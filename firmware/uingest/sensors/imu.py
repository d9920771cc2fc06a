# MPU6050 and MPU6886 accelerometer/gyroscope over I2C, at register level.
# One burst read per row (6 bytes of accel, or 14 with temperature and gyro),
# big-endian int16 decoded by hand (struct.unpack would build a tuple per
# row), scaled to m/s2 and dps, appended to the window.
#
# Registers from the InvenSense register maps: MPU-6000/6050 RM rev 4.2 and
# MPU-6886 datasheet v1.1 (the MPU6886 is MPU6500-like: same data and config
# addresses, WHO_AM_I 0x19, and a separate accelerometer filter in ACCEL_CONFIG2).
import time

from micropython import const

_SMPLRT_DIV = const(0x19)  # sample rate = 1 kHz / (1 + div) while the DLPF is on
_CONFIG = const(0x1A)  # DLPF_CFG in bits 2..0 (gyro on the MPU6886, both on the MPU6050)
_GYRO_CONFIG = const(0x1B)  # FS_SEL in bits 4..3; MPU6886 FCHOICE_B 1..0 left 0 (DLPF used)
_ACCEL_CONFIG = const(0x1C)  # AFS_SEL in bits 4..3
_ACCEL_CONFIG2 = const(0x1D)  # MPU6886: A_DLPF_CFG 2..0, ACCEL_FCHOICE_B 3, DEC2_CFG 5..4
_ACCEL_XOUT_H = const(0x3B)  # accX, accY, accZ, temp, gyrX, gyrY, gyrZ: 7 big-endian int16
_PWR_MGMT_1 = const(0x6B)  # resets to SLEEP (0x40 MPU6050, 0x41 MPU6886)
_PWR_MGMT_2 = const(0x6C)  # standby bits per axis
_WHO_AM_I = const(0x75)

# SLEEP cleared, clock from the gyro PLL: both datasheets recommend it over the
# internal RC oscillator (on the MPU6886, 1 = "auto-select best clock").
_CLKSEL_PLL = const(0x01)
_WAKE_MS = const(10)  # let the clock switch settle before configuring
_INTERNAL_HZ = const(1000)  # the output rate the divider divides, with the DLPF on
_G = 9.80665  # standard gravity, m/s2 per g

_ACCEL_RANGES_G = (2, 4, 8, 16)  # AFS_SEL 0..3: 16384, 8192, 4096, 2048 LSB/g
_GYRO_RANGES_DPS = (250, 500, 1000, 2000)  # FS_SEL 0..3
_GYRO_LSB_PER_DPS = (131.0, 65.5, 32.8, 16.4)

ACC = (("accX", "m/s2"), ("accY", "m/s2"), ("accZ", "m/s2"))
ACC_GYR = ACC + (("gyrX", "dps"), ("gyrY", "dps"), ("gyrZ", "dps"))


def _choose(options, value, name):
    for i in range(len(options)):
        if options[i] == value:
            return i
    raise ValueError("%s: expected one of %s, got %r" % (name, ", ".join(str(o) for o in options), value))


class _MPU:
    _NAME = ""
    _ID = 0
    # The widest 3-dB bandwidth (Hz, accel or gyro, rounded up) of DLPF_CFG
    # 1..6. The driver takes the widest that stays under rate_hz / 2, so the
    # chip itself filters what the sampling rate would alias.
    _DLPF_HZ = ()

    def __init__(self, i2c, addr, accel_range_g, gyro_range_dps, rate_hz, gyro):
        afs = _choose(_ACCEL_RANGES_G, accel_range_g, "accel_range_g")
        gfs = _choose(_GYRO_RANGES_DPS, gyro_range_dps, "gyro_range_dps")
        if isinstance(rate_hz, bool) or not isinstance(rate_hz, (int, float)) or not 0 < rate_hz <= _INTERNAL_HZ:
            raise ValueError("rate_hz: expected a rate in Hz, 0 < rate_hz <= 1000, got %r" % (rate_hz,))
        self._i2c = i2c
        self.addr = addr
        self.rate_hz = rate_hz
        self.accel_range_g = accel_range_g
        self.gyro_range_dps = gyro_range_dps
        self.gyro = bool(gyro)
        self.sensors = ACC_GYR if gyro else ACC
        self.typecode = "f"
        self._acc_scale = _G * accel_range_g / 32768  # m/s2 per LSB; 2 g: 1/16384 g
        self._gyr_scale = 1 / _GYRO_LSB_PER_DPS[gfs]
        self._buf = bytearray(14 if gyro else 6)
        self._reg = bytearray(1)
        self._check_id()
        self._set(_PWR_MGMT_1, _CLKSEL_PLL)
        time.sleep_ms(_WAKE_MS)
        self._set(_PWR_MGMT_2, 0)  # all axes out of standby (a previous program may have left some)
        self.dlpf_cfg = cfg = self._dlpf(rate_hz)
        div = int(_INTERNAL_HZ / rate_hz) - 1  # the chip runs at rate_hz or just above it
        self._set(_SMPLRT_DIV, 255 if div > 255 else div)
        self._set(_CONFIG, cfg)
        self._set(_GYRO_CONFIG, gfs << 3)
        self._set(_ACCEL_CONFIG, afs << 3)
        self._config_accel_filter(cfg)

    def _dlpf(self, rate_hz):
        table = self._DLPF_HZ
        for i in range(len(table)):
            if 2 * table[i] <= rate_hz:
                return i + 1
        return len(table)

    def _config_accel_filter(self, cfg):
        pass

    def _check_id(self):
        try:
            who = self._i2c.readfrom_mem(self.addr, _WHO_AM_I, 1)[0]
        except OSError as e:
            raise OSError(
                "%s: no answer at I2C address 0x%02x (%s): check wiring, SDA/SCL pins and address"
                % (self._NAME, self.addr, e)
            )
        if who != self._ID:
            known = {0x68: "MPU6050", 0x19: "MPU6886", 0x70: "MPU6500", 0x71: "MPU9250"}.get(who)
            raise ValueError(
                "%s: the device at I2C address 0x%02x has WHO_AM_I 0x%02x, expected 0x%02x%s"
                % (self._NAME, self.addr, who, self._ID, " (it looks like an %s)" % known if known else "")
            )

    def _set(self, reg, value):
        self._reg[0] = value
        self._i2c.writeto_mem(self.addr, reg, self._reg)

    def read(self, window):
        """Append one row: accX, accY, accZ in m/s2 (then gyrX..Z in dps)."""
        b = self._buf
        self._i2c.readfrom_mem_into(self.addr, _ACCEL_XOUT_H, b)
        a = self._acc_scale
        # (hi << 8 | lo) is the unsigned 16-bit value; ^ 0x8000 then - 0x8000
        # sign-extends it. Small ints only: no heap object until the scaling.
        x = (((b[0] << 8) | b[1]) ^ 0x8000) - 0x8000
        y = (((b[2] << 8) | b[3]) ^ 0x8000) - 0x8000
        z = (((b[4] << 8) | b[5]) ^ 0x8000) - 0x8000
        if len(b) == 6:
            window.append(x * a, y * a, z * a)
            return
        g = self._gyr_scale
        # bytes 6..7 are the temperature, not sampled
        window.append(
            x * a,
            y * a,
            z * a,
            ((((b[8] << 8) | b[9]) ^ 0x8000) - 0x8000) * g,
            ((((b[10] << 8) | b[11]) ^ 0x8000) - 0x8000) * g,
            ((((b[12] << 8) | b[13]) ^ 0x8000) - 0x8000) * g,
        )


class MPU6050(_MPU):
    """InvenSense MPU6050 (GY-521 boards). addr 0x68, or 0x69 with AD0 high."""

    _NAME = "MPU6050"
    _ID = 0x68
    _DLPF_HZ = (188, 98, 44, 21, 10, 5)  # CONFIG sets accel and gyro together

    def __init__(self, i2c, addr=0x68, accel_range_g=2, gyro_range_dps=250, rate_hz=100, gyro=False):
        super().__init__(i2c, addr, accel_range_g, gyro_range_dps, rate_hz, gyro)


class MPU6886(_MPU):
    """TDK InvenSense MPU6886 (M5Stack Atom Matrix, M5StickC)."""

    _NAME = "MPU6886"
    _ID = 0x19
    _DLPF_HZ = (219, 99, 45, 22, 11, 6)  # accel 218.1/99/44.8/21.2/10.2/5.1, gyro 176/92/41/20/10/5

    def __init__(self, i2c, addr=0x68, accel_range_g=2, gyro_range_dps=250, rate_hz=100, gyro=False):
        super().__init__(i2c, addr, accel_range_g, gyro_range_dps, rate_hz, gyro)

    def _config_accel_filter(self, cfg):
        # The accelerometer's filter is separate here; same index, similar
        # bandwidth. ACCEL_FCHOICE_B 0 (filter on), DEC2_CFG 0 (no averaging).
        self._set(_ACCEL_CONFIG2, cfg)
