"""1 s of 16 kHz audio through the I2S driver, with shift 16 and 12: prints the
shift, the rows filled and the heap the fill allocated (GC off)."""

import gc

from fake_hw import FakeI2S
from uingest.sensors.i2s_mic import I2SMic
from uingest.window import Window

for shift in (16, 12):
    mic = I2SMic(FakeI2S([0x12345600, -0x7654300]), shift=shift)
    w = Window(mic.sensors, 1000 / 16000, 16000, "h")
    mic.fill(w)
    fake = mic._i2s
    fake.reads = None  # pyright: ignore[reportAttributeAccessIssue] (the readinto below records nothing)
    fake.readinto = lambda buf: 2 * len(buf)  # a view of int16 halves; packing words would allocate
    w.clear()
    gc.collect()
    gc.disable()
    before = gc.mem_alloc()
    mic.fill(w)
    used = gc.mem_alloc() - before
    gc.enable()
    print(shift, w.rows, used)
