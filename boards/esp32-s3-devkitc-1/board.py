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


def setup(config):
    """config: sample_rate_hz; optional accel_range_g (2), gyro_range_dps (250),
    gyro (False), imu_addr (0x68), wdt_timeout_ms."""
    import neopixel
    from machine import I2C, Pin

    from uingest.sensors.hardware import Hardware, PixelLED, imu
    from uingest.sensors.imu import MPU6050

    i2c = I2C(0, sda=Pin(PINS["sda"]), scl=Pin(PINS["scl"]), freq=I2C_HZ)
    sensor = imu(MPU6050, i2c, config)
    led = PixelLED(neopixel.NeoPixel(Pin(PINS["led"], Pin.OUT), 1), color=LED_COLOR)
    button = Pin(PINS["button"], Pin.IN, Pin.PULL_UP)
    return Hardware(sensor, led=led, button=button, wdt_timeout_ms=config.get("wdt_timeout_ms", WDT_TIMEOUT_MS))
