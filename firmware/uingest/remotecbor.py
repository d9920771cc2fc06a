# CBOR for a remote management session (uingest.remote, config
# remote_format "cbor"): the server's messages decoded here, the board's
# encoded by uingest.cbor from the JSON texts remote.py writes (one home for
# each message). Loaded only for a CBOR session: a JSON one never holds it.
#
# The decoder reads the subset the protocol uses (maps, arrays, text and
# byte strings, integers, booleans, null, floats) and refuses the rest
# (tags, indefinite lengths, other simple values). A length is checked
# against the bytes left before anything is made for it, and nesting is
# bounded: a hostile message costs at most about its own size, and whatever
# is wrong with it is one ValueError with one short line.
import io
import json
import struct

from micropython import const

from . import cbor

_DEPTH = const(8)  # maps and arrays nested deeper than this are refused (a request is 2 deep)


def sender(c):
    """send(text) for a session on c (a ws.Client): the JSON text as CBOR,
    in a binary frame."""

    def send(text):
        out = io.BytesIO()  # one growing buffer: cbor.dumps would hold a list of every item's bytes
        cbor.dump(json.loads(text), out)
        return c.send(out.getvalue(), 2)  # pyright: ignore[reportAttributeAccessIssue] (it has); 2: ws.BINARY

    return send


def loads(data):
    """The value of data (bytes or a memoryview holding one whole CBOR
    item); ValueError when it is not one (truncated, trailing bytes, outside
    the subset, nested too deep)."""
    try:
        v, i = _item(data, 0, 0)
    except IndexError:  # a head or an argument cut off
        raise ValueError("truncated")
    except TypeError:  # a map or an array as a map key
        raise ValueError("a map key that is not a string or a number")
    if i != len(data):
        raise ValueError("%d bytes after the item" % (len(data) - i))
    return v


def _item(b, i, depth):
    # (the item at b[i], the index after it)
    major = b[i] >> 5
    n = b[i] & 31
    i += 1
    if n > 23:
        if n > 27:
            raise ValueError("an indefinite length or a reserved value")
        w = 1 << (n - 24)  # the argument's bytes: 1, 2, 4, 8
        if i + w > len(b):
            raise IndexError
        if major == 7:
            if w == 1:
                raise ValueError("a simple value outside the subset")
            # a float: half, single or double precision
            return struct.unpack(">e" if w == 2 else ">f" if w == 4 else ">d", b[i : i + w])[0], i + w
        n = int.from_bytes(b[i : i + w], "big")
        i += w
    if major < 2:  # unsigned, negative
        return n if major == 0 else -1 - n, i
    if major < 4:  # byte string, text string
        if n > len(b) - i:
            raise ValueError("a string longer than the message")
        s = bytes(b[i : i + n])
        if major == 3:
            try:
                s = s.decode()
            except UnicodeError:
                raise ValueError("text that is not UTF-8")
        return s, i + n
    if major == 7:
        if 19 < n < 23:
            return (False, True, None)[n - 20], i
        raise ValueError("a simple value outside the subset")
    if major == 6:
        raise ValueError("a tag")
    if depth >= _DEPTH:
        raise ValueError("nested deeper than %d" % _DEPTH)
    if n > len(b) - i:  # every item takes a byte at least: no list is made for a count the bytes cannot hold
        raise ValueError("more items than the message has bytes")
    if major == 4:
        out = []
        for _ in range(n):
            v, i = _item(b, i, depth + 1)
            out.append(v)
        return out, i
    out = {}
    for _ in range(n):
        k, i = _item(b, i, depth + 1)
        v, i = _item(b, i, depth + 1)
        out[k] = v
    return out, i
