# Viper kernels for the window encoders: raw byte loops with no Python object
# per sample. Native code, so this module needs mpy-cross -march=<arch>; a plain
# bytecode build leaves it out and message.py falls back to portable Python.
# Every kernel writes `rows` rows starting at row `row0` of the array `src`
# (width values each) into `dst` from offset `pos` and returns the new offset;
# the caller guarantees the room. Little-endian only (ESP32, x86, ARM).
import sys

import micropython

if sys.implementation.name != "micropython" or sys.byteorder != "little":
    raise ImportError("viper kernels need MicroPython on a little-endian CPU")


@micropython.viper
def cbor_f32(src, row0: int, rows: int, width: int, dst, pos: int) -> int:
    # float32 as 0xfa + big-endian bytes; -1 if a value is NaN or infinite.
    s = ptr8(src)  # noqa: F821 (viper builtin)
    d = ptr8(dst)  # noqa: F821
    i = row0 * width * 4
    end = i + rows * width * 4
    head = 0x80 + width
    while i < end:
        if width > 1:
            d[pos] = head
            pos += 1
        c = 0
        while c < width:
            b3 = s[i + 3]
            b2 = s[i + 2]
            if (b3 & 0x7F) == 0x7F and (b2 & 0x80):
                return -1
            d[pos] = 0xFA
            d[pos + 1] = b3
            d[pos + 2] = b2
            d[pos + 3] = s[i + 1]
            d[pos + 4] = s[i]
            pos += 5
            i += 4
            c += 1
    return pos


@micropython.viper
def cbor_i16(src, row0: int, rows: int, width: int, dst, pos: int) -> int:
    # int16 as CBOR ints with the shortest head (1, 2 or 3 bytes). Audio is
    # mostly |v| >= 256, so that branch is tested first, and one-sensor
    # windows (flat values) get their own loop: no row bookkeeping per sample.
    s = ptr16(src)  # noqa: F821
    d = ptr8(dst)  # noqa: F821
    i = row0 * width
    end = i + rows * width
    row_end = end if width == 1 else i
    while i < end:
        if i == row_end:  # a new row of a multi-sensor window
            d[pos] = 0x80 + width
            pos += 1
            row_end = i + width
        while i < row_end:
            v = s[i]
            major = 0
            if v & 0x8000:
                major = 0x20
                v = 0xFFFF - v  # -1 - value, as unsigned
            if v >= 256:
                d[pos] = major | 25
                d[pos + 1] = v >> 8
                d[pos + 2] = v
                pos += 3
            elif v >= 24:
                d[pos] = major | 24
                d[pos + 1] = v
                pos += 2
            else:
                d[pos] = major | v
                pos += 1
            i += 1
    return pos


@micropython.viper
def json_i16(src, row0: int, rows: int, width: int, dst, pos: int) -> int:
    # int16 as decimal text, rows as [a,b] (or bare values for width 1),
    # a comma before every row but the window's first.
    s = ptr16(src)  # noqa: F821
    d = ptr8(dst)  # noqa: F821
    i = row0 * width
    end = i + rows * width
    while i < end:
        if i > 0:
            d[pos] = 0x2C  # ,
            pos += 1
        if width > 1:
            d[pos] = 0x5B  # [
            pos += 1
        c = 0
        while c < width:
            if c > 0:
                d[pos] = 0x2C
                pos += 1
            v = s[i]
            if v & 0x8000:
                d[pos] = 0x2D  # -
                pos += 1
                v = 0x10000 - v
            # digits, most significant first, without a temporary string
            if v >= 10000:
                n = 5
            elif v >= 1000:
                n = 4
            elif v >= 100:
                n = 3
            elif v >= 10:
                n = 2
            else:
                n = 1
            k = pos + n - 1
            while k >= pos:
                q = (v * 52429) >> 19  # v // 10 for v <= 32768, and v * 52429 < 2**31
                d[k] = 0x30 + v - q * 10
                v = q
                k -= 1
            pos += n
            i += 1
            c += 1
        if width > 1:
            d[pos] = 0x5D  # ]
            pos += 1
    return pos
