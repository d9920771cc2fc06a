"""Host-side reading and checking of data acquisition messages.

Independent of the firmware's encoder: decoding is cbor2's or json's, the
signature check is Python's hmac. Used by the tests, and by the tools that
receive or inspect samples.
"""

from __future__ import annotations

import hashlib
import hmac
import io
import itertools
import json
import math
import re

import cbor2

PLACEHOLDER = b"0" * 64
_HEX64 = re.compile(r"^[0-9a-f]{64}$")


class InvalidMessage(ValueError):
    """The body is not a valid data acquisition message; str() is the reason."""


EXTRA_CBOR = "%d bytes follow the CBOR message"  # after the message: cbor2.loads would ignore them


def json_text(body) -> str:
    """A JSON body as text: UTF-8 without a byte-order mark (what every client writes; json.loads of bytes would
    also take UTF-16 and UTF-32), else InvalidMessage."""
    if isinstance(body, str):
        return body
    try:
        text = bytes(body).decode("utf-8")
    except UnicodeDecodeError as e:
        raise InvalidMessage("body is not valid JSON: not UTF-8 text (%s)" % e) from None
    if text.startswith("\ufeff"):
        raise InvalidMessage("body is not valid JSON: it starts with a byte-order mark")
    return text


def decode(body: bytes, fmt: str):
    """Decode body as 'cbor' or 'json' into Python objects: one whole message, nothing after it."""
    if fmt == "json":
        text = json_text(body)
    try:
        if fmt == "cbor":
            fp = io.BytesIO(body)
            msg = cbor2.CBORDecoder(fp).decode()
            if fp.tell() != len(body):
                raise InvalidMessage(EXTRA_CBOR % (len(body) - fp.tell()))
            return msg
        if fmt == "json":
            return json.loads(text)
    except InvalidMessage:
        raise
    except Exception as e:  # the decoders raise many kinds; all mean "not this format"
        raise InvalidMessage("body is not valid %s: %s" % (fmt.upper(), e)) from None
    raise InvalidMessage("unknown format %r" % fmt)


def _number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _finite(v) -> bool:
    try:
        return math.isfinite(v)
    except OverflowError:  # an integer too large for a float (CBOR bignum, long JSON integer)
        return False


VALUES_NOT_A_LIST = "payload.values must be a non-empty list"


def cells_ok(cells) -> bool:
    """True when every cell is a finite number (booleans are not numbers)."""
    return all(_number(v) and _finite(v) for v in cells)


def check_envelope(msg) -> dict:
    """Raise InvalidMessage unless msg has the protocol's structure apart from payload.values; return payload."""
    if not isinstance(msg, dict):
        raise InvalidMessage("message must be a map")
    for key in ("protected", "signature", "payload"):
        if key not in msg:
            raise InvalidMessage("missing field: %s" % key)
    prot = msg["protected"]
    if not isinstance(prot, dict) or prot.get("ver") != "v1":
        raise InvalidMessage("protected.ver must be 'v1'")
    if prot.get("alg") not in ("HS256", "none"):
        raise InvalidMessage("protected.alg must be 'HS256' or 'none'")
    iat = prot.get("iat")  # null: no clock (the Python SDK sends "iat": null), as when it is left out
    if iat is not None and (not isinstance(iat, int) or isinstance(iat, bool) or iat < 0):
        raise InvalidMessage("protected.iat must be a non-negative integer")
    if prot["alg"] == "HS256" and not isinstance(msg["signature"], str):
        raise InvalidMessage("signature must be a string")
    if prot["alg"] == "none" and not isinstance(msg["signature"], (str, type(None))):
        raise InvalidMessage("signature must be a string or null")  # unsigned: the SDK sends null
    if prot["alg"] == "HS256" and not _HEX64.match(msg["signature"]):
        raise InvalidMessage("signature must be 64 lowercase hex characters")
    p = msg["payload"]
    if not isinstance(p, dict):
        raise InvalidMessage("payload must be a map")
    for name, text in _texts(p):
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:  # "\ud800" in JSON: no UTF-8 can hold it, no index or reply could carry it
            raise InvalidMessage("payload.%s holds a lone surrogate (\\ud800-\\udfff): not text" % name) from None
    if not isinstance(p.get("device_type"), str) or not p["device_type"]:
        raise InvalidMessage("payload.device_type must be a non-empty string")
    if not isinstance(p.get("device_name"), (str, type(None))):  # null: not given (the Python SDK)
        raise InvalidMessage("payload.device_name must be a string")
    iv = p.get("interval_ms")
    if not _number(iv) or not _finite(iv) or iv <= 0:
        raise InvalidMessage("payload.interval_ms must be a positive number")
    sensors = p.get("sensors")
    if not isinstance(sensors, list) or not sensors:
        raise InvalidMessage("payload.sensors must be a non-empty list")
    for i, s in enumerate(sensors):
        if not isinstance(s, dict) or not isinstance(s.get("name"), str) or not isinstance(s.get("units"), str):
            raise InvalidMessage("payload.sensors[%d] needs string name and units" % i)
    return p


def _texts(payload: dict):
    """(name, text) of the payload's strings that are kept: device_name, device_type, sensors' names and units."""
    for key in ("device_name", "device_type"):
        if isinstance(payload.get(key), str):
            yield key, payload[key]
    sensors = payload.get("sensors")
    for i, sensor in enumerate(sensors if isinstance(sensors, list) else ()):
        for key in ("name", "units"):
            if isinstance(sensor, dict) and isinstance(sensor.get(key), str):
                yield "sensors[%d].%s" % (i, key), sensor[key]


def row_problem(r: int, row, width: int):
    """Why row r of payload.values is wrong for width sensors, or None: a list of width finite numbers (a
    bare number when there is one sensor)."""
    if isinstance(row, list):
        if len(row) != width:
            return "payload.values[%d] has %d values, expected %d" % (r, len(row), width)
        cells = row
    elif width == 1:
        cells = (row,)
    else:
        return "payload.values[%d] must be a list of %d numbers" % (r, width)
    return None if cells_ok(cells) else "payload.values[%d] holds a value that is not a finite number" % r


SHARED_CELLS = (
    "payload.values holds %d numbers in a body of %d bytes: CBOR shared references (tags 28 and 29) are not taken"
)


def check_structure(msg, body_size: int | None = None) -> dict:
    """Raise InvalidMessage unless msg has the protocol's structure; return payload. (A body too large to
    decode whole gets the same verdict from large_messages.check_large.) body_size: the bytes msg was decoded
    from. Each number takes at least one, unless CBOR's shared references (which cbor2 decodes) name one row
    many times: a body of some 100 KB can hold 400 million numbers that way, and checking them would take the
    collector minutes and gigabytes."""
    p = check_envelope(msg)
    values = p.get("values")
    if not isinstance(values, list) or not values:
        raise InvalidMessage(VALUES_NOT_A_LIST)
    width = len(p["sensors"])
    if body_size is not None and len(values) * width > body_size:  # rare: count the numbers the rows hold
        cells = sum(len(row) if type(row) is list else 1 for row in values)
        if cells > body_size:
            raise InvalidMessage(SHARED_CELLS % (cells, body_size))
    if _plain_values(values, width):
        return p
    for r, row in enumerate(values):
        if not _plain_row(row, width):  # the exact rule, and its reason, only for a row the quick test doubts
            problem = row_problem(r, row, width)
            if problem:
                raise InvalidMessage(problem)
    return p


_PLAIN_NUMBERS = frozenset((float, int))  # type() is exact: bool, a subclass of int, is not one


def _plain_values(values: list, width: int) -> bool:
    """A quick test that every row is right, as _plain_row is for one: passes at C speed over the whole window
    (the rows' types and lengths, the cells' types, one float sum, which any inf or nan makes inf or nan), a third
    less time than _plain_row row by row for a 200x3 window, which a collector pays per window. It takes a subset of
    what _plain_row takes; a window it doubts (rows of mixed shapes, an int too large for a float, a sum that
    overflows) goes row by row."""
    row_types = set(map(type, values))
    if row_types == {list}:
        if set(map(len, values)) != {width}:
            return False
        cells = list(itertools.chain.from_iterable(values))
        cell_types = set(map(type, cells))
    elif width == 1:
        cells, cell_types = values, row_types  # bare numbers, one sensor
    else:
        return False
    if not cell_types <= _PLAIN_NUMBERS:
        return False
    try:
        return math.isfinite(sum(cells, 0.0))
    except OverflowError:  # an int too large for a float
        return False


_FLOAT_RANGE = 2**1024 - 2**970  # an int at least this large rounds to no finite double (float() overflows)


def _plain_row(row, width: int) -> bool:
    """A quick test that a row is right: width plain floats or ints, all finite. It takes a subset of what
    row_problem takes, ten times faster (a 200x3 window: 40 us, not 420), which is what a collector pays per
    window."""
    if type(row) is not list:
        row = (row,) if width == 1 else ()
    if len(row) != width:
        return False
    for v in row:
        t = type(v)
        if t is float:
            if v - v != 0.0:  # inf - inf and nan - nan are nan
                return False
        elif t is not int or not -_FLOAT_RANGE < v < _FLOAT_RANGE:
            return False
    return True


def signature_span(body: bytes, fmt: str, signature: str) -> tuple[int, int]:
    """Byte range of the signature value inside body."""
    sig = signature.encode()
    if fmt == "cbor":
        marker = b"\x69signature\x78\x40" + sig
    else:
        marker = b'"signature":"' + sig + b'"'
    at = body.find(marker)
    if at < 0 or body.find(marker, at + 1) >= 0:
        raise InvalidMessage("signature value not found exactly once in the body")
    start = at + marker.index(sig)
    return start, start + len(sig)


def verify_signature(body: bytes, fmt: str, key: str | bytes, msg=None) -> bool:
    """True when the HS256 signature in body is right for key."""
    if msg is None:
        msg = decode(body, fmt)
    sig = msg["signature"]
    if msg["protected"].get("alg") != "HS256" or not _HEX64.match(sig):
        return False
    start, end = signature_span(body, fmt, sig)
    if isinstance(key, str):
        key = key.encode()
    mac = hmac.new(key, digestmod=hashlib.sha256)
    whole = memoryview(body)  # the body around the signature, not a copy of it
    mac.update(whole[:start])
    mac.update(PLACEHOLDER)
    mac.update(whole[end:])
    return hmac.compare_digest(mac.hexdigest(), sig)
