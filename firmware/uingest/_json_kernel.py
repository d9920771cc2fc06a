# The viper kernel for float32 samples as JSON text (fill_f, as jsonw.fill_f
# and cbor.fill_f are the portable fillers), apart from _kernels so that only a
# board that sends JSON float windows holds its native code (a 5.8 KB .mpy for
# the ESP32; jsonw._filler imports it at the first such window). Native code
# like _kernels, loaded the same way (read _kernels' header).
import sys

import micropython

if sys.implementation.name != "micropython" or sys.byteorder != "little":
    raise ImportError("viper kernels need MicroPython on a little-endian CPU")


# fill_f's tables, built at import: for each binary exponent b of v
# (2**b <= v < 2**(b+1), b from -149 to 24) K = floor(log10(2**b)) and the
# 24-bit significand T at which v reaches 10**(K+1), as T | (K + 46) << 25;
# 5**p for p from 0 to 53 in 15-bit limbs (least significant first) with each
# power's first limb in the offsets; scratch limbs for one product.
def _tables():
    from array import array

    kt = array("I")
    for b in range(-149, 25):
        k = len(str(1 << b)) - 1 if b >= 0 else -len(str(1 << -b))
        num, den = (10 ** (k + 1), 1) if k >= -1 else (1, 10 ** (-k - 1))
        num <<= 23 - b if b <= 23 else 0
        den <<= b - 23 if b > 23 else 0
        kt.append(min(-(-num // den), 1 << 24) | (k + 46) << 25)
    p5 = array("H")
    at = array("H", (0,))
    for p in range(54):
        x = 5**p
        while x:
            p5.append(x & 0x7FFF)
            x >>= 15
        at.append(len(p5))
    return kt, p5, at


_F32_KT, _F32_P5, _F32_P5_AT = _tables()
_F32_LIMBS = bytearray(32)
del _tables


portable_text = None  # jsonw.f32_bits_text, set by jsonw (which imports this module: no circle)


def _f32_portable(dst, pos, bits):
    # |v| >= 2**25, beyond the kernel's exact range: the portable text
    b = portable_text(bits).encode()  # pyright: ignore[reportOptionalCall]
    end = pos + len(b)
    dst[pos:end] = b
    return end


@micropython.viper
def fill_f(src, row0: int, rows: int, width: int, dst, pos: int) -> int:
    # float32 as JSON numbers, the same bytes as jsonw.f32_bits_text (read
    # its rule first), from the IEEE bits in integers only; -1 if a value is
    # NaN or infinite. Every intermediate fits a signed 32-bit word (the
    # ESP32's viper int). With v = m * 2**e and p = 8 - floor(log10(v)),
    # X = v * 10**p has 9 digits before the point, and in units of 2**-t
    # (t = 2 - e - p, >= 0 for |v| < 2**25) v, v + half a gap up and v - half
    # a gap down are exactly j * 5**p for j = 4m, 4m + 2, 4m - 2 (4m - 1 below
    # a power of two): three products of a 27-bit j with 5**p in 15-bit limbs
    # (every limb product < 2**30), each reduced to floor(. / 2**t) (< 2**31)
    # and whether anything was cut off. 2X (j = 8m) gives X's digits and
    # whether its fraction is above, at or below one half.
    s = ptr32(src)  # noqa: F821
    d = ptr8(dst)  # noqa: F821
    kt = ptr32(_F32_KT)  # noqa: F821
    p5 = ptr16(_F32_P5)  # noqa: F821
    p5_at = ptr16(_F32_P5_AT)  # noqa: F821
    r = ptr16(_F32_LIMBS)  # noqa: F821
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
            x = s[i]
            i += 1
            c += 1
            expf = (x >> 23) & 0xFF
            mant = x & 0x7FFFFF
            if expf == 0xFF:
                return -1
            if expf == 0 and mant == 0:  # 0 and -0 (JavaScript writes -0 as 0)
                d[pos] = 0x30
                pos += 1
                continue
            if (x >> 31) & 1:
                d[pos] = 0x2D  # -
                pos += 1
            if expf > 151:
                pos = int(_f32_portable(dst, pos, (expf << 23) | mant))  # |v|: the sign is written
                continue
            if expf:
                m = mant | 0x800000
                e = expf - 150
                b = expf - 127
                top = m
            else:
                m = mant
                e = -149
                b = -126
                top = m
                while top < 0x800000:
                    top <<= 1
                    b -= 1
            kb = kt[b + 149]
            k = (kb >> 25) - 46
            if top >= (kb & 0x1FFFFFF):
                k += 1
            p = 8 - k
            t = 2 - e - p
            at = p5_at[p]
            n5 = p5_at[p + 1] - at
            word = t // 15
            cut = t - word * 15
            # half the gap to the neighbours in X's units: floor(2 * 5**p / 2**t)
            # up and (below a power of two, half that) down, < 2**31
            hi = 0
            hl = 0
            jj = 0
            jn = 1
            if mant == 0 and expf > 1:
                jn = 2  # a power of two: the gap below is half the gap above
            while jj < jn:
                sh = t - 1 + jj  # jj 1: 5**p / 2**t
                if sh < 0:
                    sh = 0  # t 0: 2 * 5**p is only approximated; the exact test below decides
                w = sh // 15
                cs = sh - w * 15
                fl = 0
                if w < n5:
                    fl = p5[at + w] >> cs
                if w + 1 < n5:
                    fl |= p5[at + w + 1] << (15 - cs)
                if w + 2 < n5:
                    fl |= p5[at + w + 2] << (30 - cs)
                if jj == 0:
                    hi = fl
                hl = fl
                jj += 1
            x2 = 0  # floor(2X), and whether 2X has a fraction
            f2 = 0
            xp = 0  # floor(v + half gap up), whether it has a fraction; and down
            fp = 0
            xm = 0
            fm = 0
            exact = 0  # xp and xm computed: the products for jj 1 and 2
            jj = 0
            jn = 1
            while True:
                while jj < jn:
                    if jj == 0:
                        j = m << 3
                    elif jj == 1:
                        j = (m << 2) + 2
                    elif mant == 0 and expf > 1:
                        j = (m << 2) - 1
                    else:
                        j = (m << 2) - 2
                    j0 = j & 0x7FFF
                    j1 = j >> 15
                    carry = 0
                    prev = 0
                    q = 0
                    while q < n5:
                        limb = p5[at + q]
                        acc = limb * j0 + prev * j1 + carry
                        r[q] = acc & 0x7FFF
                        carry = acc >> 15
                        prev = limb
                        q += 1
                    acc = prev * j1 + carry
                    r[q] = acc & 0x7FFF
                    r[q + 1] = acc >> 15
                    nr = q + 2
                    fl = 0
                    if word < nr:
                        fl = r[word] >> cut
                    if word + 1 < nr:
                        fl |= r[word + 1] << (15 - cut)
                    if word + 2 < nr:
                        fl |= r[word + 2] << (30 - cut)
                    fr = 0
                    if word < nr:
                        fr = r[word] & ((1 << cut) - 1)
                    q = 0
                    while q < word and q < nr:
                        fr |= r[q]
                        q += 1
                    if jj == 0:
                        x2 = fl
                        f2 = fr
                    elif jj == 1:
                        xp = fl
                        fp = fr
                    else:
                        xm = fl
                        fm = fr
                    jj += 1
                d9 = x2 >> 1
                half = x2 & 1
                even = 1 - (m & 1)
                # the first of 7, 8, 9 digits, rounded to nearest (ties to even),
                # that lies within the interval that reads back as v: decided
                # from X's floor and the half gaps' floors where they are far
                # apart (t >= 2: the gaps are not whole), else exactly
                n = 7
                step = 100
                unsure = 0
                while True:
                    if n == 9:
                        v = d9
                        if half and (f2 or (v & 1)):
                            v += 1
                        break
                    v = d9 // step
                    rest = d9 - v * step
                    if rest > (step >> 1):
                        v += 1
                    elif rest == (step >> 1):
                        if half or f2 or (v & 1):
                            v += 1
                    cand = v * step
                    ok = 0
                    if exact:
                        if cand < xp or (cand == xp and (fp or even)):
                            if cand > xm or (cand == xm and fm == 0 and even):
                                ok = 1
                    else:
                        delta = cand - d9
                        if t < 2:
                            unsure = 1
                        elif delta > 0:
                            if delta <= hi:
                                ok = 1
                            elif delta < hi + 2:
                                unsure = 1
                        elif 1 - delta <= hl:
                            ok = 1
                        elif -delta < hl + 1:
                            unsure = 1
                    if ok or unsure:
                        break
                    n += 1
                    step = step // 10
                if not unsure:
                    break
                exact = 1
                jn = 3
            # v * 10**ex, trailing zeros dropped; sci = the exponent in d.ddde+sci
            ex = k - n + 1
            nd = n  # v's digits: n, or n + 1 where rounding carried to 10**n
            if v * step == 1000000000:
                nd += 1
            while v % 10 == 0:
                v = v // 10
                ex += 1
                nd -= 1
            sci = ex + nd - 1
            dot = nd  # the digit index a "." goes before (nd: none)
            if sci < -6:
                if nd > 1:
                    dot = 1
            elif sci < 0:
                d[pos] = 0x30
                d[pos + 1] = 0x2E
                pos += 2
                q = -sci - 1
                while q > 0:
                    d[pos] = 0x30
                    pos += 1
                    q -= 1
            elif sci + 1 < nd:
                dot = sci + 1
            q = nd - 1
            while q >= 0:
                if q >= dot:
                    d[pos + q + 1] = 0x30 + v % 10
                else:
                    d[pos + q] = 0x30 + v % 10
                v = v // 10
                q -= 1
            if dot < nd:
                d[pos + dot] = 0x2E
                pos += 1
            pos += nd
            if sci < -6:
                d[pos] = 0x65  # e
                d[pos + 1] = 0x2D  # -
                sci = -sci
                if sci >= 10:
                    d[pos + 2] = 0x30 + sci // 10
                    pos += 1
                d[pos + 2] = 0x30 + sci % 10
                pos += 3
            elif sci >= nd:
                q = sci + 1 - nd
                while q > 0:
                    d[pos] = 0x30
                    pos += 1
                    q -= 1
        if width > 1:
            d[pos] = 0x5D  # ]
            pos += 1
    return pos
