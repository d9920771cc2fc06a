"""Checking a message too large to decode whole, in memory about its own size.

cbor2.loads and json.loads build a tree of Python objects: a float that is 5 bytes of CBOR becomes a 24-byte
float and an 8-byte list slot, and a 40 MB window took over 1 GB to check. Here only the small fields of the
message (everything but ``payload.values``) are decoded, by the same decoders, and the rows of
``payload.values`` are checked where they lie in the body:

- the fast way, when the sensors come before the values (every client we know writes them first): a regular
  expression for a row of plain numbers (CBOR: integers, and half, single or double floats that are not NaN
  or infinite; JSON: numbers whose size cannot overflow a double), matched ROWS_PER_MATCH rows at a time so
  that the event loop's thread gets the GIL between matches (re does not release it);
- the careful way, from the first row the fast way does not take: each row decoded alone and judged by
  acquisition.row_problem, as check_structure judges it.

For every valid CBOR or JSON message the verdict and its reason are check_structure's
(host_tests/test_large_messages.py compares them). Refused as too large to check (TooLargeToCheck: 413 at the
collector): the fields other than the values over FIELDS_LIMIT bytes, one row over ROW_LIMIT bytes.
"""

from __future__ import annotations

import io
import json
import re

import cbor2

from .acquisition import EXTRA_CBOR, VALUES_NOT_A_LIST, InvalidMessage, check_envelope, json_text, row_problem

FIELDS_LIMIT = 256 * 1024  # the bytes of everything but payload.values (a real message has a few hundred)
ROW_LIMIT = 1024 * 1024  # the bytes of one row decoded alone
ROWS_PER_MATCH = 8192  # rows per regular-expression match: a few milliseconds of the GIL each


class TooLargeToCheck(InvalidMessage):
    """The message cannot be checked within the server's limits (413)."""


def _row_too_large(r: int) -> TooLargeToCheck:
    return TooLargeToCheck("payload.values[%d] is over %d bytes, the most checked in one row" % (r, ROW_LIMIT))


def _fields_too_large() -> TooLargeToCheck:
    return TooLargeToCheck(
        "the message's fields other than payload.values are over %d bytes, the most this server checks" % FIELDS_LIMIT
    )


class _Rows:
    """The rows of payload.values as they went by, enough to give check_structure's verdict once the number of
    sensors is known (the values may come first): per row width (None: not a list) its first row, and its
    first row that row_problem refuses even with that width."""

    def __init__(self):
        self.count = 0
        self.first_of_width: dict = {}
        self.first_bad: dict = {}

    def good(self, n: int, width: int) -> None:
        """n rows of width finite numbers (or bare numbers when width is 1)."""
        self.first_of_width.setdefault(width, self.count)
        self.count += n

    def add(self, row) -> None:
        r = self.count
        self.count += 1
        width = len(row) if isinstance(row, list) else None
        self.first_of_width.setdefault(width, r)
        if width not in self.first_bad and row_problem(r, row, width or 1):
            self.first_bad[width] = r

    def problem(self, width: int):
        """check_structure's reason for these rows under width sensors, or None."""
        fits = (width, None) if width == 1 else (width,)
        found = [(r, "width", w) for w, r in self.first_of_width.items() if w not in fits]
        found += [(r, "bad", w) for w, r in self.first_bad.items() if w in fits]
        if not found:
            return None
        r, kind, w = min(found, key=lambda f: f[0])
        if kind == "bad":
            return "payload.values[%d] holds a value that is not a finite number" % r
        if w is None:
            return "payload.values[%d] must be a list of %d numbers" % (r, width)
        return "payload.values[%d] has %d values, expected %d" % (r, w, width)


def _finish(fields: dict, rows: _Rows | None) -> tuple[dict, int]:
    payload = check_envelope(fields)
    if rows is None or rows.count == 0:
        raise InvalidMessage(VALUES_NOT_A_LIST)
    reason = rows.problem(len(payload["sensors"]))
    if reason:
        raise InvalidMessage(reason)
    return fields, rows.count


def _width_of(sensors):
    return len(sensors) if isinstance(sensors, list) and sensors else None


class _Walker:
    """What the CBOR and the JSON walk share: the message's fields decoded (counted against FIELDS_LIMIT) and
    payload.values checked in place, the last of a repeated key counting as in the decoders. A format gives
    decode_at(p, limit), each_entry(p, on_entry), is_map(p), is_array(p), skip(p), values(p, width), and
    check() starts the walk at the top-level map (walk(p): its end)."""

    fields_left = FIELDS_LIMIT

    def field(self, p: int):
        """The item at p (a field of the message), counted against FIELDS_LIMIT."""
        try:
            value, end = self.decode_at(p, self.fields_left)
        except TooLargeToCheck:
            raise _fields_too_large()
        self.fields_left -= end - p
        return value, end

    def walk(self, p: int) -> int:
        """Walk the top-level map at p into self.fields and self.rows; its end."""
        self.fields: dict = {}
        self.rows = None
        found = {"width": None}

        def payload_entry(payload):
            def entry(key, p):
                if key == "values":
                    payload.pop("values", None)
                    if self.is_array(p):
                        self.rows, p = self.values(p, found["width"])
                        return p
                    self.rows = None
                    return self.skip(p)
                payload[key], p = self.field(p)
                if key == "sensors":
                    found["width"] = _width_of(payload[key])
                return p

            return entry

        def top_entry(key, p):
            if key == "payload" and self.is_map(p):
                self.fields[key] = payload = {}
                self.rows, found["width"] = None, None  # a repeated key: the last one counts
                return self.each_entry(p, payload_entry(payload))
            self.fields[key], p = self.field(p)
            return p

        return self.each_entry(p, top_entry)

    def result(self) -> tuple[dict, int]:
        return _finish(self.fields, self.rows)


# --- CBOR

_CBOR_NUMBER = (
    rb"(?:[\x00-\x17\x20-\x37]|[\x18\x38].|[\x19\x39]..|[\x1a\x3a]....|[\x1b\x3b]........"
    rb"|\xf9(?![\x7c-\x7f\xfc-\xff])..|\xfa(?![\x7f\xff][\x80-\xff])....|\xfb(?![\x7f\xff][\xf0-\xff])........)"
)
_cbor_patterns: dict = {}


def _cbor_rows(width: int, n: int):
    """A pattern for n rows of width plain numbers (bare numbers too when width is 1)."""
    key = (width, n)
    if key not in _cbor_patterns:
        if len(_cbor_patterns) > 64:
            _cbor_patterns.clear()
        head = re.escape(cbor2.dumps([0] * width)[: -width])  # the array's head, as short as CBOR writes it
        row = head + b"(?:" + _CBOR_NUMBER + b"){%d}" % width
        if width == 1:
            row = b"(?:" + row + b"|" + _CBOR_NUMBER + b")"
        _cbor_patterns[key] = re.compile(b"(?:" + row + b"){%d}+" % n, re.DOTALL)
    return _cbor_patterns[key]


def _cbor_head(buf, p: int):
    """(major type, argument or None for indefinite length, position after the head)."""
    if p >= len(buf):
        raise InvalidMessage("body is not valid CBOR: it ends inside an item")
    ib = buf[p]
    major, info = ib >> 5, ib & 31
    if info < 24:
        return major, info, p + 1
    if info < 28:
        size = 1 << (info - 24)
        if p + 1 + size > len(buf):
            raise InvalidMessage("body is not valid CBOR: it ends inside an item")
        return major, int.from_bytes(buf[p + 1 : p + 1 + size], "big"), p + 1 + size
    if info == 31 and major in (2, 3, 4, 5, 7):
        return major, None, p + 1
    raise InvalidMessage("body is not valid CBOR: reserved additional information %d" % info)


def _cbor_end(buf, pos: int, limit: int) -> int:
    """Where the item at pos ends, found without decoding it; TooLargeToCheck when it reaches past pos + limit."""
    open_items = [1]  # per open container, the items still to come; -1: until a break
    p = pos
    while open_items:
        if p - pos > limit:
            raise TooLargeToCheck("an item")
        if open_items[-1] == -1 and p < len(buf) and buf[p] == 0xFF:
            p += 1
            open_items.pop()
        else:
            major, arg, p = _cbor_head(buf, p)
            if major == 7 and arg is None:
                raise InvalidMessage("body is not valid CBOR: a break outside an indefinite-length item")
            if open_items[-1] > 0:
                open_items[-1] -= 1
            if arg is None:
                open_items.append(-1)
            elif major in (2, 3):
                p += arg
            elif major in (4, 5):
                open_items.append(arg * (major - 3))
            elif major == 6:
                open_items.append(1)
        while open_items and open_items[-1] == 0:
            open_items.pop()
    if p > len(buf) or p - pos > limit:
        raise TooLargeToCheck("an item") if p <= len(buf) else InvalidMessage("body is not valid CBOR: it is cut")
    return p


class _Cbor(_Walker):
    def __init__(self, body):
        self.buf = memoryview(body)
        self.fp = io.BytesIO(body)  # shares body's bytes until written to
        self.decoder = cbor2.CBORDecoder(self.fp)
        self.fields_left = FIELDS_LIMIT

    def decode_at(self, p: int, limit: int):
        end = _cbor_end(self.buf, p, limit)
        self.fp.seek(p)
        try:
            return self.decoder.decode(), end
        except Exception as e:  # cbor2 raises many kinds; all mean "not CBOR"
            raise InvalidMessage("body is not valid CBOR: %s" % e) from None

    def each_entry(self, p: int, on_entry) -> int:
        """Call on_entry(key, position of its value) -> end of the value, for the map at p; its end."""
        _, count, p = _cbor_head(self.buf, p)
        seen = 0
        while (seen < count) if count is not None else (_cbor_head(self.buf, p)[:2] != (7, None)):
            key, p = self.field(p)
            p = on_entry(key, p)
            seen += 1
        return p if count is not None else p + 1

    def is_map(self, p: int) -> bool:
        return self.buf[p] >> 5 == 5

    def is_array(self, p: int) -> bool:
        return self.buf[p] >> 5 == 4

    def skip(self, p: int) -> int:
        return _cbor_end(self.buf, p, len(self.buf))

    def check(self) -> tuple[dict, int]:
        if not len(self.buf):
            raise InvalidMessage("body is not valid CBOR: it is empty")
        if not self.is_map(0):
            raise InvalidMessage("message must be a map")
        end = self.walk(0)
        if end != len(self.buf):
            raise InvalidMessage(EXTRA_CBOR % (len(self.buf) - end))
        return self.result()

    def values(self, p: int, width):
        """The rows of the array at p, checked: (_Rows, end of the array)."""
        buf = self.buf
        _, count, p = _cbor_head(buf, p)
        rows = _Rows()
        if count is not None and width is not None:
            while rows.count < count:
                n = min(ROWS_PER_MATCH, count - rows.count)
                m = _cbor_rows(width, n).match(buf, p)
                if m is None:
                    break
                rows.good(n, width)
                p = m.end()
        while (rows.count < count) if count is not None else (_cbor_head(buf, p)[:2] != (7, None)):
            try:
                row, p = self.decode_at(p, ROW_LIMIT)
            except TooLargeToCheck:
                raise _row_too_large(rows.count)
            rows.add(row)
        return rows, (p if count is not None else p + 1)


# --- JSON

_WS = re.compile(r"[ \t\n\r]*")
# at most 1e299, so never infinite as a double; not followed by more of a number (1e999 is not 1e99)
_JSON_NUMBER = r"-?(?:0|[1-9][0-9]{0,199})(?:\.[0-9]+)?(?:[eE][+-]?[0-9]{1,2})?(?![0-9.eE+-])"
_JSON_SCALAR = re.compile(r"[^,\]}\s]*")
# a string as the unrolled loop "[^"\\]*(?:\\.[^"\\]*)*": a run of plain characters is one step of the regex
# engine (an alternation per character kept backtracking state per character: 120 times a string's size)
_JSON_TOKEN = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"|[\[\]{}]', re.DOTALL)
_json_patterns: dict = {}


def _json_rows(width: int):
    """(one row, then up to ROWS_PER_MATCH rows each after a comma) of width plain numbers."""
    if width not in _json_patterns:
        if len(_json_patterns) > 64:
            _json_patterns.clear()
        ws = r"[ \t\n\r]*"
        row = r"\[" + ws + _JSON_NUMBER + r"(?:" + ws + "," + ws + _JSON_NUMBER + r"){%d}" % (width - 1) + ws + r"\]"
        if width == 1:
            row = r"(?:" + row + "|" + _JSON_NUMBER + ")"
        _json_patterns[width] = (
            re.compile(row),
            re.compile(r"(?:" + ws + "," + ws + row + r"){1,%d}+" % ROWS_PER_MATCH),
        )
    return _json_patterns[width]


class _Json(_Walker):
    def __init__(self, body):
        self.text = json_text(body)
        self.decoder = json.JSONDecoder()
        self.fields_left = FIELDS_LIMIT

    def ws(self, p: int) -> int:
        return _WS.match(self.text, p).end()

    def at(self, p: int) -> str:
        return self.text[p : p + 1]

    def invalid(self, p: int, what: str) -> InvalidMessage:
        return InvalidMessage("body is not valid JSON: %s at char %d" % (what, p))

    def end_of(self, p: int, limit: int) -> int:
        """Where the value at p ends, found without decoding it; TooLargeToCheck past p + limit."""
        if self.at(p) not in ("[", "{"):
            m = (_JSON_TOKEN if self.at(p) == '"' else _JSON_SCALAR).match(self.text, p)
            end = m.end() if m else p
        else:
            depth, end = 0, None
            for m in _JSON_TOKEN.finditer(self.text, p):
                if m.start() - p > limit:
                    break
                t = m.group()
                if t in ("[", "{"):
                    depth += 1
                elif t in ("]", "}"):
                    depth -= 1
                    if depth == 0:
                        end = m.end()
                        break
            if end is None:
                if m is None or m.start() - p <= limit:
                    raise self.invalid(p, "unclosed array or object")
                raise TooLargeToCheck("an item")
        if end - p > limit:
            raise TooLargeToCheck("an item")
        return end

    def decode_at(self, p: int, limit: int):
        self.end_of(p, limit)
        try:
            return self.decoder.raw_decode(self.text, p)
        except (ValueError, RecursionError) as e:
            raise InvalidMessage("body is not valid JSON: %s" % e) from None

    def each_entry(self, p: int, on_entry) -> int:
        """Call on_entry(key, position of its value) -> end of the value, for the object at p; its end."""
        p = self.ws(p + 1)
        if self.at(p) == "}":
            return p + 1
        while True:
            if self.at(p) != '"':
                raise self.invalid(p, "expected a key")
            key, p = self.field(p)
            p = self.ws(p)
            if self.at(p) != ":":
                raise self.invalid(p, "expected ':'")
            p = on_entry(key, self.ws(p + 1))
            p = self.ws(p)
            if self.at(p) == ",":
                p = self.ws(p + 1)
            elif self.at(p) == "}":
                return p + 1
            else:
                raise self.invalid(p, "expected ',' or '}'")

    def is_map(self, p: int) -> bool:
        return self.at(p) == "{"

    def is_array(self, p: int) -> bool:
        return self.at(p) == "["

    def skip(self, p: int) -> int:
        return self.end_of(p, len(self.text))

    def check(self) -> tuple[dict, int]:
        p = self.ws(0)
        if not self.is_map(p):
            if p == len(self.text):
                raise self.invalid(p, "no value")
            raise InvalidMessage("message must be a map")
        end = self.ws(self.walk(p))
        if end != len(self.text):
            raise self.invalid(end, "extra data")
        return self.result()

    def values(self, p: int, width):
        """The rows of the array at p, checked: (_Rows, end of the array)."""
        rows = _Rows()
        p = self.ws(p + 1)
        if self.at(p) == "]":
            return rows, p + 1
        if width is not None:
            first, more = _json_rows(width)
            m = first.match(self.text, p)
            if m is not None:
                rows.good(1, width)
                p = m.end()
                while True:
                    m = more.match(self.text, p)
                    if m is None:
                        break
                    rows.good(self.text.count("," if width == 1 else "[", m.start(), m.end()), width)
                    p = m.end()
                q = self.ws(p)
                if self.at(q) == "]":
                    return rows, q + 1
                if self.at(q) != ",":
                    raise self.invalid(q, "expected ',' or ']'")
                p = self.ws(q + 1)
        while True:
            try:
                row, p = self.decode_at(p, ROW_LIMIT)
            except TooLargeToCheck:
                raise _row_too_large(rows.count)
            rows.add(row)
            p = self.ws(p)
            if self.at(p) == "]":
                return rows, p + 1
            if self.at(p) != ",":
                raise self.invalid(p, "expected ',' or ']'")
            p = self.ws(p + 1)


def check_large(body, fmt: str) -> tuple[dict, int]:
    """Check a 'cbor' or 'json' message without decoding its values: (the message without payload.values'
    rows, the number of rows). Raises InvalidMessage (TooLargeToCheck when over the limits)."""
    if fmt == "cbor":
        return _Cbor(body).check()
    if fmt == "json":
        return _Json(body).check()
    raise InvalidMessage("unknown format %r" % fmt)
