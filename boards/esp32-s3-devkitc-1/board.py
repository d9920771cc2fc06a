# Espressif ESP32-S3-DevKitC-1 with an MPU6050 breakout (GY-521) on I2C.
# Wiring: VCC to 3V3, GND, SDA to GPIO 8, SCL to GPIO 9, AD0 low (0x68).
# The on-board RGB LED is a WS2812 on GPIO 48 (board v1.0; v1.1 moved it to
# GPIO 38: change PINS["led"]). BOOT button on GPIO 0, pressed reads 0.
DESCRIPTION = "ESP32-S3-DevKitC-1 with an MPU6050 on I2C (SDA 8, SCL 9), RGB LED 48, BOOT button 0"
DEVICE_TYPE = "ESP32S3_DEVKITC1_MPU6050"
PINS = {"sda": 8, "scl": 9, "led": 48, "button": 0}
I2C_HZ = 400000
WDT_TIMEOUT_MS = 60000  # longer than a post with Wi-Fi reconnect and TLS handshake
LED_COLOR = (0, 0, 24)  # dim blue: the pixel is bright at full scale


class PixelLED:
    """One pixel of a WS2812 strip as an on()/off() LED."""

    def __init__(self, pixels, index=0, color=LED_COLOR):
        self._np = pixels
        self._i = index
        self._color = color
        pixels.fill((0, 0, 0))
        pixels.write()

    def on(self):
        self._np[self._i] = self._color
        self._np.write()

    def off(self):
        self._np[self._i] = (0, 0, 0)
        self._np.write()


def setup(config):
    """config: sample_rate_hz; optional accel_range_g (2), gyro_range_dps (250),
    gyro (False), imu_addr (0x68), wdt_timeout_ms."""
    import neopixel
    from machine import I2C, Pin

    from uingest.sensors.hardware import Hardware
    from uingest.sensors.imu import MPU6050

    i2c = I2C(0, sda=Pin(PINS["sda"]), scl=Pin(PINS["scl"]), freq=I2C_HZ)
    imu = MPU6050(
        i2c,
        addr=config.get("imu_addr", 0x68),
        accel_range_g=config.get("accel_range_g", 2),
        gyro_range_dps=config.get("gyro_range_dps", 250),
        rate_hz=config["sample_rate_hz"],
        gyro=config.get("gyro", False),
    )
    led = PixelLED(neopixel.NeoPixel(Pin(PINS["led"], Pin.OUT), 1))
    button = Pin(PINS["button"], Pin.IN, Pin.PULL_UP)
    return Hardware(imu, led=led, button=button, wdt_timeout_ms=config.get("wdt_timeout_ms", WDT_TIMEOUT_MS))
