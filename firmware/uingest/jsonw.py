# Compact JSON writer for data acquisition messages, byte-compatible with
# JavaScript's JSON.stringify (what Edge Impulse's DataForwarder signs):
# no spaces, non-ASCII text as UTF-8, control characters escaped.
from struct import pack, unpack, unpack_from

from micropython import const

_COMMA = const(0x2C)
_INF = float("inf")
_ESCAPES = {8: "\\b", 9: "\\t", 10: "\\n", 12: "\\f", 13: "\\r", 34: '\\"', 92: "\\\\"}


def string(s):
    """s as a JSON string literal (str)."""
    for ch in s:
        if ch in '"\\' or ch < " ":
            break
    else:
        return '"' + s + '"'
    out = ['"']
    for ch in s:
        o = ord(ch)
        if o in _ESCAPES:
            out.append(_ESCAPES[o])
        elif o < 0x20:
            out.append("\\u%04x" % o)
        else:
            out.append(ch)
    out.append('"')
    return "".join(out)


def number(x):
    """An int or float as JSON text; integral floats are written as ints."""
    if isinstance(x, float):
        if x != x or x in (_INF, -_INF):
            raise ValueError("JSON has no NaN or Infinity")
        if x == int(x) and -(2**53) < x < 2**53:
            return str(int(x))
        t = repr(x)
        return _js_exponent(t) if "e" in t else t
    return str(x)


def _js_exponent(t):
    """C's exponent form ("[-]d[.ddd]e[+-]XX", what %g and repr write) in
    JavaScript's layout (see _js_layout)."""
    i = t.find("e")
    sign = "-" if t[0] == "-" else ""
    return sign + _js_layout(t[len(sign) : i].replace(".", ""), int(t[i + 1 :]))


def _js_layout(digits, e):
    """The number 0.<digits> * 10**(e + 1) (digits without trailing zeros)
    as JavaScript writes it (ECMAScript Number::toString): plain decimal
    from 1e-6 up to 1e21, else "e-7" / "e+21" with no padded exponent."""
    n = len(digits)
    if e < -6 or e > 20:
        return digits[0] + ("." + digits[1:] if n > 1 else "") + ("e+%d" if e > 0 else "e%d") % e
    if e < 0:
        return "0." + "0" * (-e - 1) + digits
    if e + 1 < n:
        return digits[: e + 1] + "." + digits[e + 1 :]
    return digits + "0" * (e + 1 - n)


def float32_text(v):
    """A float32 sample as JSON text (see f32_bits_text)."""
    return f32_bits_text(unpack("<I", pack("<f", v))[0])


def f32_bits_text(x):
    """The float32 with bit pattern x as JSON text, in exact integer
    arithmetic: the shortest of 7, 8 or 9 significant digits, each correctly
    rounded from v (ties to even), whose value lies in v's rounding interval
    (so it reads back as v; 9 digits always do), laid out as JavaScript
    writes numbers, so that JSON.stringify(JSON.parse(text)) is the text
    again (a verifier that re-serializes before checking the signature sees
    the same bytes). Any decimal of at most 15 digits is JS's shortest form
    of the double it parses to, so only the layout needs care: -0 is written
    0 (JS cannot write -0). The viper kernel _json_kernel.fill_f writes the
    same bytes; both are exact, so no port's float formatting matters."""
    expf = (x >> 23) & 0xFF
    mant = x & 0x7FFFFF
    if expf == 0xFF:
        raise ValueError("sample is NaN or infinite: JSON cannot carry it")
    if not expf and not mant:
        return "0"
    m = mant | 0x800000 if expf else mant
    e = expf - 150 if expf else -149  # v = m * 2**e
    num, den = (m << e, 1) if e >= 0 else (m, 1 << -e)
    b = expf - 127  # 2**b <= v < 2**(b + 1)
    if not expf:
        b = -149
        while m >> (b + 150):
            b += 1
    k = (b * 1233) >> 12  # floor(b * log10(2)): v < 10**(k + 1), or just above it
    if (num * 10 ** (-k - 1) >= den) if k < -1 else (num >= den * 10 ** (k + 1)):
        k += 1  # now k = floor(log10(v))
    p = 8 - k  # v * 10**p = xn / xd has 9 digits before the point
    xn, xd = (num * 10**p, den) if p >= 0 else (num, den * 10 ** (-p))
    d9, rem = divmod(xn, xd)
    ulp = (1 << (e if e > 0 else 0)) * 10 ** (p if p > 0 else 0)  # 2**e * 10**p * xd
    hi = 2 * ulp  # 4 * half the gap to the next float32, in units of 1 / xd
    lo = hi if mant or expf <= 1 else ulp  # a power of two's gap below is half
    even = not m & 1  # a text on the boundary reads back as the even neighbour
    for n in (7, 8, 9):
        step = 10 ** (9 - n)
        c, r = divmod(d9, step)
        tie = 2 * (r * xd + rem) - step * xd
        if tie > 0 or (tie == 0 and c & 1):
            c += 1
        gap = 4 * (c * step * xd - xn)
        if (gap < hi or (gap == hi and even)) and (-gap < lo or (-gap == lo and even)):
            break
    e = k - n + 1  # v ~ c * 10**e
    while not c % 10:
        c //= 10
        e += 1
    digits = str(c)
    t = _js_layout(digits, e + len(digits) - 1)
    return "-" + t if x >> 31 else t


_cache = [None, b""]  # (sensors tuple, its text)


def _sensors(sensors):
    if _cache[0] is not sensors:
        _cache[1] = ",".join(['{"name":%s,"units":%s}' % (string(n), string(u)) for n, u in sensors]).encode()
        _cache[0] = sensors
    return _cache[1]


def head(alg, iat, device_name, device_type, interval_ms, sensors, width):
    """Message bytes up to the first value, and the offset of the
    64-character signature placeholder in them."""
    if iat is None:
        p = '{"protected":{"ver":"v1","alg":"%s"},"signature":"' % alg
    else:
        p = '{"protected":{"ver":"v1","alg":"%s","iat":%d},"signature":"' % (alg, iat)
    dev = "" if device_name is None else '"device_name":%s,' % string(device_name)
    q = '","payload":{%s"device_type":%s,"interval_ms":%s,"sensors":[' % (dev, string(device_type), number(interval_ms))
    p = p.encode()
    return b"".join((p, b"0" * 64, q.encode(), _sensors(sensors), b'],"values":[')), len(p)


TAIL = b"]}}"


def max_row_bytes(width, typecode):
    # "-32768," / "-123456789000000000000,": JS writes digits up to 1e21
    per_value = 7 if typecode == "h" else 23
    return 3 + per_value * width


def _put(dst, pos, text):
    b = text.encode()
    n = len(b)
    dst[pos : pos + n] = b
    return pos + n


def _filler(typecode, kernels):
    """message's filler for JSON rows: fill_f or fill_h, or with kernels (the
    module uingest._kernels, when message uses the viper kernels) int16 text
    from there and float text from _json_kernel, imported at the first JSON
    float window."""
    if kernels is None:
        return fill_f if typecode == "f" else fill_h
    if typecode == "h":
        return kernels.json_i16
    from . import _json_kernel

    _json_kernel.portable_text = f32_bits_text  # for the values beyond its exact range
    return _json_kernel.fill_f


def fill_f(src, row0, rows, width, dst, pos):
    """Portable path: rows of float32 samples as JSON numbers."""
    i = row0 * width
    end = i + rows * width
    while i < end:
        if i:
            dst[pos] = _COMMA
            pos += 1
        if width > 1:
            dst[pos] = 0x5B
            pos += 1
        for c in range(width):
            if c:
                dst[pos] = _COMMA
                pos += 1
            b = f32_bits_text(unpack_from("<I", src, 4 * (i + c))[0]).encode()
            n = pos + len(b)
            dst[pos:n] = b
            pos = n
        if width > 1:
            dst[pos] = 0x5D
            pos += 1
        i += width
    return pos


def fill_h(src, row0, rows, width, dst, pos):
    """Portable path: rows of int16 samples as JSON integers."""
    i = row0 * width
    end = i + rows * width
    while i < end:
        if i:
            dst[pos] = _COMMA
            pos += 1
        if width > 1:
            pos = _put(dst, pos, "[" + ",".join([str(v) for v in src[i : i + width]]) + "]")
        else:
            pos = _put(dst, pos, str(src[i]))
        i += width
    return pos
