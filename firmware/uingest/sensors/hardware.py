# What a board's setup(config) returns: the sensor and the few other parts
# the app drives.


class Hardware:
    def __init__(self, sensor, led=None, button=None, wdt_timeout_ms=None):
        self.sensor = sensor  # a driver from uingest.sensors
        self.led = led  # on()/off(), or None
        self.button = button  # machine.Pin, pressed reads 0, or None
        self.wdt_timeout_ms = wdt_timeout_ms  # None: no watchdog (unix-sim)


def imu(driver, i2c, config):
    """An IMU driver (imu.MPU6050, imu.MPU6886) set up from the config's
    board options; the driver's defaults where the config is silent."""
    kw = {"rate_hz": config["sample_rate_hz"]}
    for key, arg in (("imu_addr", "addr"), ("accel_range_g", "accel_range_g"), ("gyro_range_dps", "gyro_range_dps")):
        if key in config:
            kw[arg] = config[key]
    kw["gyro"] = config.get("gyro", False)
    return driver(i2c, **kw)


class PixelLED:
    """One pixel of a WS2812 strip or matrix as an on()/off() LED; the others
    stay dark."""

    def __init__(self, pixels, index=0, color=(0, 0, 16)):
        self._np = pixels
        self._i = index
        self._color = color  # dim: WS2812s are bright at full scale
        pixels.fill((0, 0, 0))
        pixels.write()

    def on(self):
        self._np[self._i] = self._color
        self._np.write()

    def off(self):
        self._np[self._i] = (0, 0, 0)
        self._np.write()
