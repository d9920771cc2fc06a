# M5Stack ATOM Matrix: ESP32-PICO-D4, an MPU6886 IMU on the internal I2C
# (SDA GPIO 25, SCL GPIO 21, address 0x68), a 5x5 WS2812 matrix on GPIO 27,
# the screen button on GPIO 39 (input only, pulled up on the board, pressed
# reads 0). M5Stack advises keeping the matrix dim (brightness <= 20 of 255):
# it heats the diffuser.
DESCRIPTION = "M5Stack ATOM Matrix: ESP32-PICO with MPU6886 (SDA 25, SCL 21), 5x5 WS2812 on 27, button 39"
DEVICE_TYPE = "M5STACK_ATOM_MATRIX"
PINS = {"sda": 25, "scl": 21, "led": 27, "button": 39}
I2C_HZ = 400000
WDT_TIMEOUT_MS = 60000  # longer than a post with Wi-Fi reconnect and TLS handshake
MATRIX_PIXELS = 25
LED_INDEX = 12  # the centre of the 5x5 matrix
LED_COLOR = (0, 0, 16)


def setup(config):
    """config: sample_rate_hz; optional accel_range_g (2), gyro_range_dps (250),
    gyro (False), wdt_timeout_ms."""
    import neopixel
    from machine import I2C, Pin

    from uingest.sensors.hardware import Hardware, PixelLED, imu
    from uingest.sensors.imu import MPU6886

    i2c = I2C(0, sda=Pin(PINS["sda"]), scl=Pin(PINS["scl"]), freq=I2C_HZ)
    sensor = imu(MPU6886, i2c, config)
    led = PixelLED(neopixel.NeoPixel(Pin(PINS["led"], Pin.OUT), MATRIX_PIXELS), LED_INDEX, LED_COLOR)
    button = Pin(PINS["button"], Pin.IN)
    return Hardware(sensor, led=led, button=button, wdt_timeout_ms=config.get("wdt_timeout_ms", WDT_TIMEOUT_MS))
