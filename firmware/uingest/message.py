# Data acquisition messages (see shared ingestion-protocol.md): a window,
# encoded as CBOR or JSON, signed with HMAC-SHA256 over the bytes with a
# 64-zero signature placeholder that is then patched in place.
#
# The encoding is deterministic, so a signed message can be streamed with
# bounded memory: pass 1 feeds the HMAC (and learns the length), pass 2 writes
# the same bytes, now carrying the signature, to the sink in fixed chunks.
from binascii import hexlify

from micropython import const

from . import cbor
from .hmac import HMAC
from .window import check_interval, check_sensors, new_array

try:
    from . import _kernels
except ImportError:  # CPython, big-endian, or a plain bytecode build
    _kernels = None

DEFAULT_DEVICE_TYPE = "UINGEST"
FORMATS = ("cbor", "json")
# The same table as ingest.CONTENT_TYPES (a test holds them equal): importing
# ingest here would load it with every encoder, and a 64K heap notices.
CONTENT_TYPES = {"cbor": "application/cbor", "json": "application/json"}
_SIG_LEN = const(64)
_CHUNK = const(512)

_fast = _kernels is not None
_scratch = None


def use_kernels(on=True):
    """Switch the viper kernels on or off (tests run both paths); returns
    whether they are in use."""
    global _fast
    _fast = bool(on) and _kernels is not None
    return _fast


def _scratch_buf(size):
    global _scratch
    if _scratch is None or len(_scratch) < size:
        _scratch = bytearray(max(size, _CHUNK))
    return _scratch


def _filler(fmt, typecode, width):
    if fmt == "cbor":
        if _fast and width < 24:  # _fast: _kernels was imported (the stubs see it may be None)
            return _kernels.cbor_f32 if typecode == "f" else _kernels.cbor_i16  # pyright: ignore[reportOptionalMemberAccess]
        return cbor.fill_f if typecode == "f" else cbor.fill_h
    from . import jsonw  # JSON's fillers choose there: their names cost only boards that send JSON

    return jsonw._filler(typecode, _kernels if _fast else None)


class Message:
    """One window as a data acquisition message: a body as http.post_message
    takes it (content_type, length, write(sink); see there).

    length and signature are known before any byte is written, so a
    transport can send Content-Length first and then stream write(sink).
    """

    def __init__(self, window, fmt="cbor", hmac_key=None, device_type=DEFAULT_DEVICE_TYPE, device_name=None, iat=None):
        if fmt not in FORMATS:
            raise ValueError("fmt: expected 'cbor' or 'json', got %r" % (fmt,))
        sensors = check_sensors(getattr(window, "sensors", None))
        interval_ms = check_interval(getattr(window, "interval_ms", None))
        if not isinstance(device_type, str) or not device_type:
            raise ValueError("device_type: expected a non-empty string such as 'ESP32_DEVKITC'")
        if device_name is not None and (not isinstance(device_name, str) or not device_name):
            raise ValueError("device_name: expected a non-empty string or None")
        if iat is not None and (isinstance(iat, bool) or not isinstance(iat, int) or iat < 0):
            raise ValueError("iat: expected Unix time in whole seconds (int >= 0) or None")
        if hmac_key is not None:
            if not isinstance(hmac_key, (str, bytes, bytearray)):
                raise ValueError("hmac_key: expected str, bytes or None")
            if not hmac_key:
                raise ValueError("hmac_key: empty; pass None to send alg 'none'")
        if window.rows < 1:
            raise ValueError("window: no rows to send")
        self.window = window
        self.fmt = fmt
        self.content_type = CONTENT_TYPES[fmt]
        self._key = hmac_key
        width = window.width
        self._width = width
        alg = "none" if hmac_key is None else "HS256"
        codec = cbor
        if fmt == "cbor":
            self._head, self._sig_at = cbor.message_head(
                alg, iat, device_name, device_type, interval_ms, sensors, width, window.rows
            )
            self._tail = cbor.TAIL
        else:
            from . import jsonw  # only boards that send JSON pay for it in RAM

            codec = jsonw
            self._head, self._sig_at = jsonw.head(alg, iat, device_name, device_type, interval_ms, sensors, width)
            self._head = bytearray(self._head)  # the signature is patched into it (cbor's head is a bytearray)
            self._tail = jsonw.TAIL
        self._max_row = codec.max_row_bytes(width, window.typecode)
        self._fill = _filler(fmt, window.typecode, width)
        # A window in a file (filewindow.FileWindow) has no samples array: its
        # rows are read chunk by chunk into this small array (see _chunks).
        self._file = hasattr(window, "read_rows")
        self._rowbuf = None
        self._values_len = None
        if fmt == "cbor" and window.typecode == "f":
            self._values_len = cbor.values_len_f(window.rows, width)
        self.signature = None  # hex str once signed

    def _values(self, buf, pos, cap):
        """Encode rows from self._row on into buf[pos:cap]; returns the end
        offset and advances self._row (no tuple: nothing allocated per chunk)."""
        w = self.window
        row = self._row
        n = (cap - pos) // self._max_row
        left = w.rows - row
        if n > left:
            n = left
        src = self._rowbuf
        if src is None:
            end = self._fill(w.samples, row, n, self._width, buf, pos)
        else:  # a file window: these rows into src, encoded as rows 0..n-1
            w.read_rows(row, n, src)
            if row and self.fmt == "json":
                buf[pos] = 0x2C  # the comma the fillers write before every row but the first
                pos += 1
            end = self._fill(src, 0, n, self._width, buf, pos)
        if end < 0:
            raise ValueError("values: NaN or infinite sample in rows %d..%d" % (row, row + n - 1))
        self._row = row + n
        return end

    def _chunks(self, emit):
        """Feed every byte after the head to emit(memoryview), chunk by chunk."""
        buf = _scratch_buf(self._max_row)
        rows_per_chunk = len(buf) // self._max_row
        cap = rows_per_chunk * self._max_row
        full = memoryview(buf)[:cap]  # fixed-size rows fill it exactly: reused, not re-sliced
        if self._file and self._rowbuf is None:
            self._rowbuf = new_array(self.window.typecode, rows_per_chunk * self._width)
        total = 0
        rows = self.window.rows
        self._row = 0
        while self._row < rows:
            n = self._values(buf, 0, cap)
            emit(full if n == cap else full[:n])
            total += n
        if self._tail:
            emit(self._tail)
        return total + len(self._tail)

    def prepare(self):
        """Pass 1, once: sign and/or measure, without keeping the message.
        Raises ValueError for a window the format cannot carry (a NaN
        sample); length, write() and the post call it, so a caller calls it
        only to learn that before handing the message on."""
        if self.signature is not None or (self._key is None and self._values_len is not None):
            return
        mac = HMAC(self._key) if self._key is not None else None
        if mac is not None:
            mac.update(self._head)
        n = self._chunks(mac.update if mac is not None else _discard)
        self._values_len = n - len(self._tail)
        if mac is not None:
            self._set_signature(mac)

    def _set_signature(self, mac):
        hexsig = hexlify(mac.digest())
        # _head is the bytearray made in __init__ (pyright also sees the codec's bytes)
        self._head[self._sig_at : self._sig_at + _SIG_LEN] = hexsig  # pyright: ignore[reportIndexIssue]
        self.signature = hexsig.decode()

    @property
    def length(self):
        """Exact size in bytes of the message (the Content-Length)."""
        self.prepare()
        return len(self._head) + self._values_len + len(self._tail)  # pyright: ignore[reportOperatorIssue] (set by prepare)

    def write(self, sink):
        """Pass 2: stream the signed message to sink.write(); returns bytes written."""
        self.prepare()
        sink.write(self._head)
        return len(self._head) + self._chunks(sink.write)

    def _one_pass(self, size=0):
        # Rows of bounded size (CBOR, int16 text) go straight into a buffer
        # sized for the longest rows and are signed there; float text (1 to 22
        # bytes a value) too when the buffer has room for the longest (one
        # pass costs half of two, and the chunks' overhead); else it is
        # measured (and signed) first, then written, as file windows (read in
        # chunks) always are.
        if self._file or self.signature is not None:
            return False
        return self.fmt == "cbor" or self.window.typecode == "h" or size >= self.max_length()

    def max_length(self):
        """A buffer size that takes this message whatever the samples are (for
        windows of the same rows, format, key and names): exact for float32
        CBOR, the longest text for JSON."""
        return len(self._head) + self.window.rows * self._max_row + len(self._tail)

    def encode_into(self, buf):
        """Write the whole message into buf (a bytearray or writable memoryview
        of max_length() bytes, made once and reused: nothing that grows with
        the window is allocated); returns the message's length."""
        one_pass = self._one_pass(len(buf))
        need = self.max_length() if one_pass else self.length
        if len(buf) < need:
            raise ValueError("buffer: %d bytes, the message needs up to %d" % (len(buf), need))
        if not one_pass:
            return self.write(_BufferSink(buf))
        head = self._head
        h = len(head)
        t = len(self._tail)
        buf[:h] = head
        self._row = 0
        pos = self._values(buf, h, need - t)
        buf[pos : pos + t] = self._tail
        end = pos + t
        self._values_len = pos - h
        if self._key is not None:
            self._set_signature(HMAC(self._key, memoryview(buf)[:end]))
            buf[self._sig_at : self._sig_at + _SIG_LEN] = head[self._sig_at : self._sig_at + _SIG_LEN]
        return end

    def encode(self):
        """The whole message as bytes, encoded in one pass into a buffer of
        max_length() (float text: up to twice its length, for a moment) and
        copied out. A tight heap wants encode_into() a buffer made once, or
        write(); a file window bigger than the heap needs write()."""
        n = self.max_length()
        buf = bytearray(n if self._one_pass(n) else self.length)
        return bytes(memoryview(buf)[: self.encode_into(buf)])


class _BufferSink:
    def __init__(self, buf):
        self.buf = buf
        self.pos = 0

    def write(self, b):
        n = len(b)
        self.buf[self.pos : self.pos + n] = b
        self.pos += n
        return n


def _discard(b):
    pass


def encode(window, fmt="cbor", hmac_key=None, device_type=DEFAULT_DEVICE_TYPE, device_name=None, iat=None):
    """The signed (or alg 'none') message for window, as bytes."""
    return Message(window, fmt, hmac_key, device_type, device_name, iat).encode()


def encode_into(window, buf, fmt="cbor", hmac_key=None, device_type=DEFAULT_DEVICE_TYPE, device_name=None, iat=None):
    """The same bytes as encode(), written into buf (made once, reused for
    every window); returns their length. See Message.max_length()."""
    return Message(window, fmt, hmac_key, device_type, device_name, iat).encode_into(buf)


def write(window, sink, fmt="cbor", hmac_key=None, device_type=DEFAULT_DEVICE_TYPE, device_name=None, iat=None):
    """Stream the same bytes as encode() to sink.write() with memory that does
    not grow with the window; returns the number of bytes written."""
    return Message(window, fmt, hmac_key, device_type, device_name, iat).write(sink)
