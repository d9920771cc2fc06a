"""Usage: file_window_kernels.py PATH. With the viper kernels, random windows
(CBOR and JSON, int16 and float, one and two sensors) recorded in RAM and to
the file PATH: prints, for each, whether both encode to the same bytes."""

import random
import sys
from array import array

from uingest import message
from uingest.filewindow import FileWindow
from uingest.window import Window

path = sys.argv[1]
print(message.use_kernels(True))
S = {1: (("a", "u"),), 2: (("x", "u"), ("y", "u"))}
for fmt in ("cbor", "json"):
    for tc in ("h", "f"):
        for width in (1, 2):
            rows = 700
            w = Window(S[width], 10, rows, tc)
            f = FileWindow(path, S[width], 10, tc)
            for _row in range(rows):
                v = [random.getrandbits(16) - 32768 if tc == "h" else random.getrandbits(10) / 7 for _ in range(width)]
                w.append(*v)
                f.append_chunk(array(tc, v), 1)
            want = message.encode(w, fmt, hmac_key="k", iat=1)
            print(fmt, tc, width, message.encode(f, fmt, hmac_key="k", iat=1) == want)
