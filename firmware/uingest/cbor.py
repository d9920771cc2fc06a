# Minimal CBOR encoder (RFC 8949), preferred serialisation: shortest argument,
# shortest float width that holds the value exactly. Encode only: the board
# never needs to read CBOR.
import struct

from micropython import const

_MT_UINT = const(0x00)
_MT_NINT = const(0x20)
_MT_BYTES = const(0x40)
_MT_TEXT = const(0x60)
_MT_ARRAY = const(0x80)
_MT_MAP = const(0xA0)
_FALSE = const(0xF4)
_TRUE = const(0xF5)
_NULL = const(0xF6)
_F16 = const(0xF9)
_F32 = const(0xFA)
_F64 = const(0xFB)
_HALF_MAX = 65504.0
_SINGLE_MAX = 3.4028234663852886e38
_U64_LIMIT = 1 << 64
_INF = float("inf")


def head(major, n):
    """The initial byte(s) of a data item: major type | shortest argument."""
    if n < 24:
        return bytes((major | n,))
    if n < 0x100:
        return bytes((major | 24, n))
    if n < 0x10000:
        return struct.pack(">BH", major | 25, n)
    if n < 0x100000000:
        return struct.pack(">BI", major | 26, n)
    return struct.pack(">BQ", major | 27, n)


def encode_float(x):
    """Shortest of float16/32/64 that round-trips x exactly (NaN as f97e00)."""
    if x != x:
        return b"\xf9\x7e\x00"
    if x in (_INF, -_INF):
        return b"\xf9\x7c\x00" if x > 0 else b"\xf9\xfc\x00"
    a = -x if x < 0 else x
    if a <= _HALF_MAX:
        b = struct.pack(">e", x)
        if struct.unpack(">e", b)[0] == x:
            return bytes((_F16,)) + b
    if a <= _SINGLE_MAX:
        b = struct.pack(">f", x)
        if struct.unpack(">f", b)[0] == x:
            return bytes((_F32,)) + b
    return bytes((_F64,)) + struct.pack(">d", x)


def _int(x, w):
    if x >= 0:
        if x >= _U64_LIMIT:
            raise ValueError("int %d too large for CBOR (max 2**64-1)" % x)
        w(head(_MT_UINT, x))
    else:
        if x < -_U64_LIMIT:
            raise ValueError("int %d too small for CBOR (min -2**64)" % x)
        w(head(_MT_NINT, -1 - x))


def _item(obj, w, depth):
    # bool before int: True is an int on CPython (not on MicroPython).
    if obj is None:
        w(b"\xf6")
    elif obj is True:
        w(b"\xf5")
    elif obj is False:
        w(b"\xf4")
    elif isinstance(obj, int):
        _int(obj, w)
    elif isinstance(obj, float):
        w(encode_float(obj))
    elif isinstance(obj, str):
        b = obj.encode()
        w(head(_MT_TEXT, len(b)))
        w(b)
    elif isinstance(obj, (bytes, bytearray, memoryview)):
        if isinstance(obj, memoryview):
            obj = bytes(obj)  # its len() counts items, not bytes
        w(head(_MT_BYTES, len(obj)))
        w(obj)
    elif isinstance(obj, (list, tuple)):
        if depth > 64:
            raise ValueError("CBOR nesting deeper than 64")
        w(head(_MT_ARRAY, len(obj)))
        for v in obj:
            _item(v, w, depth + 1)
    elif isinstance(obj, dict):
        if depth > 64:
            raise ValueError("CBOR nesting deeper than 64")
        w(head(_MT_MAP, len(obj)))
        for k in obj:
            _item(k, w, depth + 1)
            _item(obj[k], w, depth + 1)
    else:
        raise TypeError("cannot CBOR-encode %s" % type(obj).__name__)


def dump(obj, sink):
    """Write obj as CBOR to sink (anything with write(buf))."""
    _item(obj, sink.write, 0)


def dumps(obj):
    """obj as CBOR bytes."""
    parts = []
    _item(obj, parts.append, 0)
    return b"".join(parts)


# Data acquisition message pieces (see message.py). Keys and strings are text,
# the window's values a definite-length array of rows.


def text(s):
    """A CBOR text string item."""
    b = s.encode()
    return head(_MT_TEXT, len(b)) + b


def number(x):
    """An int or float item; integral floats go out as ints (16.0 -> 16)."""
    if isinstance(x, float) and x == int(x) and -(2**63) < x < 2**63:
        x = int(x)
    if isinstance(x, float):
        return encode_float(x)
    parts = []
    _int(x, parts.append)
    return parts[0]


_cache = [None, b""]  # (sensors tuple, its encoding): a device sends the same sensors every window


def sensors_block(sensors):
    if _cache[0] is not sensors:
        parts = [head(_MT_ARRAY, len(sensors))]
        for name, units in sensors:
            parts.append(b"\xa2\x64name" + text(name) + b"\x65units" + text(units))
        _cache[1] = b"".join(parts)
        _cache[0] = sensors
    return _cache[1]


def message_head(alg, iat, device_name, device_type, interval_ms, sensors, width, rows):
    """Message bytes up to the first value (a bytearray: the signature is
    patched into it), and the offset of the 64-character signature
    placeholder in them."""
    # Keys and fixed parts as literals: {"protected": {"ver": "v1", "alg": ...
    # One bytearray grown in place: each bytes + bytes was a new object, 3 KB
    # of garbage a window.
    p = bytearray(b"\xa3\x69protected\xa2" if iat is None else b"\xa3\x69protected\xa3")
    p += b"\x63ver\x62v1\x63alg"
    p += text(alg)
    if iat is not None:
        p += b"\x63iat"
        p += number(iat)
    p += b"\x69signature\x78\x40"
    sig_at = len(p)
    p += _ZEROS
    p += b"\x67payload\xa4" if device_name is None else b"\x67payload\xa5\x6bdevice_name"
    if device_name is not None:
        p += text(device_name)
    p += b"\x6bdevice_type"
    p += text(device_type)
    p += b"\x6binterval_ms"
    p += number(interval_ms)
    p += b"\x67sensors"
    p += sensors_block(sensors)
    p += b"\x66values"
    p += head(_MT_ARRAY, rows if width > 1 else rows * width)
    return p, sig_at


_ZEROS = b"0" * 64
TAIL = b""


def _row_head_len(width):
    return 0 if width == 1 else len(head(_MT_ARRAY, width))


def max_row_bytes(width, typecode):
    return _row_head_len(width) + (5 if typecode == "f" else 3) * width


def values_len_f(rows, width):
    """Exact size of float32 values: known without encoding."""
    return rows * max_row_bytes(width, "f")


def fill_f(src, row0, rows, width, dst, pos):
    """Portable path: rows of float32 samples, each 0xfa + 4 bytes."""
    rh = head(_MT_ARRAY, width) if width > 1 else b""
    nh = len(rh)
    pack = struct.pack_into
    i = row0 * width
    end = i + rows * width
    while i < end:
        if nh:
            dst[pos : pos + nh] = rh
            pos += nh
        for c in range(width):
            v = src[i + c]
            if v != v or v in (_INF, -_INF):
                return -1
            pack(">Bf", dst, pos, _F32, v)
            pos += 5
        i += width
    return pos


def fill_h(src, row0, rows, width, dst, pos):
    """Portable path: rows of int16 samples as shortest CBOR ints."""
    rh = head(_MT_ARRAY, width) if width > 1 else b""
    nh = len(rh)
    i = row0 * width
    end = i + rows * width
    while i < end:
        if nh:
            dst[pos : pos + nh] = rh
            pos += nh
        for c in range(width):
            v = src[i + c]
            major = _MT_UINT
            if v < 0:
                major = _MT_NINT
                v = -1 - v
            if v < 24:
                dst[pos] = major | v
                pos += 1
            elif v < 256:
                dst[pos] = major | 24
                dst[pos + 1] = v
                pos += 2
            else:
                dst[pos] = major | 25
                dst[pos + 1] = v >> 8
                dst[pos + 2] = v & 0xFF
                pos += 3
        i += width
    return pos
