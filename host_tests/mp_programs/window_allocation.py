"""Makes a 1 s window of 16 kHz int16 audio with GC off: prints the heap it
allocated and the number of samples."""

import gc

from uingest.window import Window

gc.collect()
gc.disable()
before = gc.mem_alloc()
w = Window((("audio", "wav"),), 0.0625, 16000, "h")
print(gc.mem_alloc() - before, len(w.samples))
