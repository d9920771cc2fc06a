# ESP32 DevKitC (ESP32-WROOM-32) with an MPU6050 breakout (GY-521) on I2C.
# Wiring: VCC to 3V3, GND, SDA to GPIO 21, SCL to GPIO 22 (the ESP32's usual
# I2C pins), AD0 low for address 0x68 (high: pass imu_addr 0x69).
# The DevKitC has no user LED; its BOOT button (GPIO 0) is not used.
DESCRIPTION = "ESP32 DevKitC with an MPU6050 accelerometer on I2C (SDA 21, SCL 22)"
DEVICE_TYPE = "ESP32_DEVKITC_MPU6050"
PINS = {"sda": 21, "scl": 22}
I2C_HZ = 400000  # the MPU6050's fast mode: a 14-byte burst takes about 0.4 ms
WDT_TIMEOUT_MS = 60000  # longer than a post with Wi-Fi reconnect and TLS handshake


def setup(config):
    """config: sample_rate_hz; optional accel_range_g (2), gyro_range_dps (250),
    gyro (False), imu_addr (0x68), wdt_timeout_ms."""
    from machine import I2C, Pin

    from uingest.sensors.hardware import Hardware, imu
    from uingest.sensors.imu import MPU6050

    i2c = I2C(0, sda=Pin(PINS["sda"]), scl=Pin(PINS["scl"]), freq=I2C_HZ)
    sensor = imu(MPU6050, i2c, config)
    return Hardware(sensor, wdt_timeout_ms=config.get("wdt_timeout_ms", WDT_TIMEOUT_MS))
