# ESP32 (DevKitC) with an INMP441 I2S MEMS microphone.
# Wiring: VDD to 3V3, GND, SCK to GPIO 14, WS to GPIO 15, SD to GPIO 32,
# L/R to GND (left slot, what I2S.MONO reads; see uingest/sensors/i2s_mic.py).
# 16 kHz int16 windows: 32-bit I2S words, the top 16 bits kept (audio_shift
# 16; 14 is x4 gain for quiet rooms).
DESCRIPTION = "ESP32 with an INMP441 I2S microphone (SCK 14, WS 15, SD 32), 16 kHz int16 audio"
DEVICE_TYPE = "ESP32_INMP441"
PINS = {"sck": 14, "ws": 15, "sd": 32}
I2S_ID = 0
# machine.I2S's ring buffer: 250 ms at 16 kHz x 4 bytes, so a window's
# conversion or a short stall does not drop samples.
IBUF_BYTES = 16000
WDT_TIMEOUT_MS = 60000  # longer than a post with Wi-Fi reconnect and TLS handshake


def setup(config):
    """config: sample_rate_hz (16000); optional audio_shift (16), wdt_timeout_ms."""
    from machine import I2S, Pin

    from uingest.sensors.hardware import Hardware
    from uingest.sensors.i2s_mic import I2SMic

    rate_hz = config.get("sample_rate_hz", 16000)
    i2s = I2S(
        I2S_ID,
        sck=Pin(PINS["sck"]),
        ws=Pin(PINS["ws"]),
        sd=Pin(PINS["sd"]),
        mode=I2S.RX,
        bits=32,
        format=I2S.MONO,
        rate=rate_hz,
        ibuf=IBUF_BYTES,
    )
    mic = I2SMic(i2s, rate_hz=rate_hz, shift=config.get("audio_shift", 16))
    return Hardware(mic, wdt_timeout_ms=config.get("wdt_timeout_ms", WDT_TIMEOUT_MS))
