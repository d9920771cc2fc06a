# Compact JSON writer for data acquisition messages, byte-compatible with
# JavaScript's JSON.stringify (what Edge Impulse's DataForwarder signs):
# no spaces, non-ASCII text as UTF-8, control characters escaped.
from array import array

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
    JavaScript's layout (ECMAScript Number::toString): plain decimal from
    1e-6 up to 1e21, else "e-7" / "e+21" with no padded exponent digits."""
    i = t.find("e")
    e = int(t[i + 1 :])
    sign = "-" if t[0] == "-" else ""
    digits = t[len(sign) : i].replace(".", "")
    n = len(digits)
    if e < -6 or e > 20:
        t = digits[0] + ("." + digits[1:] if n > 1 else "") + ("e+%d" if e > 0 else "e%d") % e
    elif e < 0:
        t = "0." + "0" * (-e - 1) + digits
    elif e + 1 < n:
        t = digits[: e + 1] + "." + digits[e + 1 :]
    else:
        t = digits + "0" * (e + 1 - n)
    return sign + t


_cell = array("f", (0.0,))  # storing a float here rounds it to float32


def float32_text(v):
    """A float32 sample as JSON text: the shortest of 7, 8 or 9 significant
    digits that reads back as v, laid out as JavaScript writes numbers, so
    that JSON.stringify(JSON.parse(text)) is the text again (a verifier that
    re-serializes before checking the signature sees the same bytes). Any
    decimal of at most 15 digits is JS's shortest form of the double it
    parses to, so only the layout needs care: -0 is written 0 (JS cannot
    write -0) and exponents follow JS (_js_exponent)."""
    if not v:
        return "0"
    cell = _cell
    t = "%.7g" % v
    cell[0] = float(t)
    if cell[0] != v:
        t = "%.8g" % v
        cell[0] = float(t)
        if cell[0] != v:
            t = "%.9g" % v
            cell[0] = float(t)
            if cell[0] != v:
                t = repr(v)  # NaN, or a port whose %g is not exact to 9 digits
    if t[-1] > "9":  # "inf", "nan": digits end every finite number's text
        raise ValueError("sample is NaN or infinite: JSON cannot carry it")
    return _js_exponent(t) if "e" in t else t


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
            b = float32_text(src[i + c]).encode()
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
