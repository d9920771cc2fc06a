"""Usage: sensor_scenario.py CSV_PATH BAD_CSV_PATH. Every sensor driver
against the fakes of fake_hw.py (IMUs, the I2S microphone, CSV replay, the
synthetic sensors, the ADC, the simulator board's setup): prints the bytes
each wrote and read. Run on CPython (the shim) and inside MicroPython, it
must print the same."""

import sys
from array import array
from binascii import hexlify

from fake_hw import FakeI2C, FakeI2S, put_int16
from uingest.sensors import sim, synthetic, tone
from uingest.sensors.adc import ADCSensor
from uingest.sensors.csv_replay import CSVReplay
from uingest.sensors.i2s_mic import I2SMic
from uingest.sensors.imu import MPU6050, MPU6886
from uingest.window import Window

csv_path, bad_path = sys.argv[1], sys.argv[2]


def show(tag, w):
    print(tag, w.rows, hexlify(w.samples).decode())


for cls, who, kw in (
    (MPU6050, 0x68, {}),
    (MPU6050, 0x68, {"accel_range_g": 16, "gyro_range_dps": 2000, "rate_hz": 400, "gyro": True}),
    (MPU6886, 0x19, {"accel_range_g": 4, "gyro_range_dps": 500, "rate_hz": 50, "gyro": True}),
):
    bus = FakeI2C()
    regs = bus.add(0x68, who)
    put_int16(regs, 0x3B, 16384, -16384, -32768, 1234, 131, -164, 32767)
    m = cls(bus, **kw)
    print("writes", " ".join("%02x=%s" % (reg, hexlify(data).decode()) for addr, reg, data in bus.writes))
    w = Window(m.sensors, 1000 / m.rate_hz, 2)
    m.read(w)
    put_int16(regs, 0x3B, -1, 1, 2048)
    m.read(w)
    show(cls.__name__, w)

for cls, who in ((MPU6050, 0x19), (MPU6886, 0x68), (MPU6050, None)):
    bus = FakeI2C()
    if who is not None:
        bus.add(0x68, who)
    try:
        cls(bus)
    except (OSError, ValueError) as e:
        msg = str(e)
        print(type(e).__name__, msg.startswith(cls.__name__ + ":"), "0x68" in msg, "\n" not in msg, len(bus.writes))

words = [0x7FFFFF00, -0x100, 0x00010000, 0x12345600, -0x80000000, 0x00008000, -0x12345600, 0x0000FF00]
for shift in (16, 14, 8):
    mic = I2SMic(FakeI2S(words), shift=shift, chunk_frames=3)
    w = Window(mic.sensors, 1000 / 16000, 11, "h")
    mic.fill(w)
    print("i2s", shift, list(w.samples), mic._i2s.reads)

s = CSVReplay(csv_path)
w = Window(s.sensors, 10, 5)
for _ in range(5):
    s.read(w)
print("csv", s.sensors)
show("csv", w)
s.close()
try:
    CSVReplay(bad_path)
except ValueError as e:
    print("csv error", str(e).replace(bad_path, "PATH"))

s = synthetic.SyntheticIMU("wave", 100)
w = Window(s.sensors, 10, 120)
for _ in range(120):
    s.read(w)
want = []
for t in range(120):
    want.extend(synthetic.expected("wave", t, 100))
print("synthetic imu", bytes(w.samples) == bytes(array("f", want)))
a = tone.SyntheticAudio("circle")
w = Window(a.sensors, 1000 / 16000, 300, "h")
a.fill(w)
print("synthetic audio", list(w.samples) == [tone.expected_audio("circle", t) for t in range(300)])
show("audio", w)
print("table", hexlify(tone.SyntheticAudio._sine).decode())  # pyright: ignore[reportArgumentType] (built by the first SyntheticAudio)


class ADC:
    def __init__(self, v):
        self.v = v

    def read_u16(self):
        self.v += 1000
        return self.v


for s in (ADCSensor(ADC(0)), ADCSensor((ADC(1), ADC(2)), name=("a", "b"), scale=0.5)):  # pyright: ignore[reportArgumentType] (name takes a tuple too)
    w = Window(s.sensors, 10, 3)
    for _ in range(3):
        s.read(w)
    show("adc", w)
hw = sim.setup({"sample_rate_hz": 100, "label": "idle"})
print("sim", type(hw.sensor).__name__, hw.led, hw.button, hw.wdt_timeout_ms)
