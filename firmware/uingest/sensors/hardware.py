# What a board's setup(config) returns: the sensor and the few other parts
# the app drives.


class Hardware:
    def __init__(self, sensor, led=None, button=None, wdt_timeout_ms=None):
        self.sensor = sensor  # a driver from uingest.sensors
        self.led = led  # on()/off(), or None
        self.button = button  # machine.Pin, pressed reads 0, or None
        self.wdt_timeout_ms = wdt_timeout_ms  # None: no watchdog (unix-sim)
