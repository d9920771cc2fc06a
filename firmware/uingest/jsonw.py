# Compact JSON writer for data acquisition messages, byte-compatible with
# JavaScript's JSON.stringify (what Edge Impulse's DataForwarder signs):
# no spaces, non-ASCII text as UTF-8, control characters escaped.
import struct

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
        return repr(x)
    return str(x)


def _f32(x):
    return struct.unpack("<f", struct.pack("<f", x))[0]


def float32_text(v):
    """Shortest of %.7g/%.8g/%.9g that reads back as the same float32."""
    if v != v or v in (_INF, -_INF):
        raise ValueError("sample is NaN or infinite: JSON cannot carry it")
    for fmt in ("%.7g", "%.8g", "%.9g"):
        t = fmt % v
        if _f32(float(t)) == v:
            return t
    return repr(v)


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
    per_value = 7 if typecode == "h" else 17  # "-32768," / "-1.17549435e-38,"
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
            pos = _put(dst, pos, float32_text(src[i + c]))
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
