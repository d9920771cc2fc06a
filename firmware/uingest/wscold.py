# The cold path of a WebSocket (uingest.ws): the constructor and the opening
# handshake, loaded by ws.cold() for the call and unloaded right after, as
# remote management's cold path is: held, they would cost the heap of every
# board in remote mode for as long as the app runs, for one constructor and
# a few connects a day.
import os
import time
from binascii import b2a_base64
from hashlib import sha1

from micropython import const

from .http import parse_url
from .wifi import BACKOFF_MIN_MS

_MAX_LINE = const(128)  # of a handshake reply line: the rest of a longer one is skipped
_MAX_HEADERS = const(40)  # header lines in the handshake reply; more is refused
_SEND = const(256)  # a frame goes out in pieces of this size (ws.Client._frame): head, mask key, payload masked
_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


def setup(c, url, timeout_ms, ca_file, insecure, max_message, ping_ms, dead_ms):
    """ws.Client.__init__ for c: every attribute it will have, set here, so
    that its dict is sized once, before the heap is fragmented (a dict grown
    later needs a new, larger block)."""
    c.tls = url.startswith("wss://")
    if not (c.tls or url.startswith("ws://")):
        raise ValueError("url: expected ws://... or wss://..., got %r" % (url,))
    # http's scheme (and ports: 80, 443 for wss): http.Client._connect reads it
    c.scheme, c.host, c.port, c.path = parse_url("http" + url[2:])
    host = "[%s]" % c.host if ":" in c.host else c.host
    c._host = host if c.port == (443 if c.tls else 80) else "%s:%d" % (host, c.port)
    c.timeout_ms = timeout_ms  # connecting (DNS, TCP, TLS, upgrade) whole; each send; each frame
    c.ca_file = ca_file
    c.insecure = insecure
    c.max_message = max_message
    c.ping_ms = ping_ms  # nothing has come this long: ping
    c.dead_ms = dead_ms  # then nothing for this long: the peer is gone
    c.closed = True
    c.reason = "not connected"  # why it closed, one line for the log
    c.connections = 0  # opened so far (TCP and TLS: counted by http.Client._connect)
    c.backoff_ms = BACKOFF_MIN_MS
    c._next_try = None  # ticks_ms of the next reconnect; None: now
    c._sock = c._raw = c._poll = c._addr = None
    c._deadline = c._opened = c._rx = 0  # _opened: ticks_ms until it counts as stable (None: it does)
    c._buf = bytearray(max(max_message, _MAX_LINE))  # the message; before it, the handshake's lines
    c._mv = memoryview(c._buf)
    c._ctl = bytearray(125)  # a control frame's payload: a ping may come inside a fragmented message
    c._cv = memoryview(c._ctl)
    c._hdr = bytearray(14)  # a frame's head as it comes (2 + up to 8 bytes); [10:14] the mask key sent
    c._hv = memoryview(c._hdr)
    c._hx = c._hv[2:10]  # the length after the first two bytes: made once, like _hv
    c._out = bytearray(_SEND)
    c._ov = memoryview(c._out)
    _fresh(c)


def _fresh(c):
    # the receiving state of a new connection
    c._hn = c._fill = c._cn = c._kind = 0  # head bytes, message bytes, control bytes, opcode
    c._need = 2  # head bytes this frame needs
    c._left = -1  # payload bytes still to come; -1: in the head
    c._ready = c._pinged = False  # _ready: poll() gave the message out, it goes at the next
    c._t0 = 0  # ticks_ms the frame's first byte came
    # what the next read goes into, kept while nothing comes: a poll
    # between the pieces of a frame makes no new view
    c._view = None


def handshake(c):
    """Open c (a closed ws.Client whose deadline is set): DNS, TCP and TLS
    by http.Client's own code, then the upgrade. Raises on any failure (the
    caller closes c and says why)."""
    _fresh(c)
    c._connect()
    if c._raw is not None:  # MicroPython: reads are non-blocking, waits are poll's
        c._raw.settimeout(0)
    key = b2a_base64(os.urandom(16))[:-1]
    c._send(
        (
            "GET %s HTTP/1.1\r\nHost: %s\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            "Sec-WebSocket-Key: %s\r\nSec-WebSocket-Version: 13\r\n\r\n" % (c.path, c._host, key.decode())
        ).encode()
    )
    if c._raw is not None:
        c._raw.settimeout(0)
    status = _line(c).split(None, 2)
    if len(status) < 2 or not status[0].startswith(b"HTTP/1.") or not status[1].isdigit():
        raise ValueError("not an HTTP response")
    if status[1] != b"101":
        raise ValueError("upgrade refused: HTTP %s" % status[1][:3].decode())
    # The accept value proves a WebSocket server read this request
    key = b2a_base64(sha1(key + _GUID).digest())[:-1]
    for _ in range(_MAX_HEADERS + 1):  # and the blank line after them
        line = _line(c)
        if not line:
            break
        name, _, value = line.partition(b":")
        name = name.strip().lower()
        if name == b"sec-websocket-accept":
            key = None if value.strip() == key else b""
        elif name == b"sec-websocket-extensions":
            raise ValueError("an extension it did not ask for")
    else:
        raise ValueError("too many header lines")
    if key is not None:
        raise ValueError("wrong Sec-WebSocket-Accept")
    c.closed = False
    c.reason = ""
    c._opened = c._rx = time.ticks_ms()


def _line(c):
    # A byte at a time: the frames after the reply stay in the socket.
    b = c._buf
    n = 0
    while True:
        c._read(c._cv, 1, True)
        ch = c._ctl[0]
        if ch == 10:
            break
        if n < _MAX_LINE:
            b[n] = ch
            n += 1
    return bytes(c._mv[: n - 1 if n and b[n - 1] == 13 else n])


# Why a server's frame closes the connection: ws.Client._step's fault numbers, from 1
_FAULTS = (
    "a frame with reserved bits set",
    "a masked frame from the server",
    "a frame with the unknown opcode %d",
    "a fragmented control frame",
    "a control frame over 125 bytes",
    "a continuation of no message",
    "a new message inside a fragmented one",
    "a 64-bit length with the top bit set",
    "a close frame of 1 byte",
    "a message over %d bytes",
)


def fault(c, n):
    """Close c for the server's fault n, with one line and the close code
    (1009 for a message over the bound, else 1002): on the cold path, so
    that the texts cost the heap only when a server misbehaves."""
    why = _FAULTS[n - 1]
    if n == 3:
        why %= c._hdr[0] & 15
    elif n == 10:
        why %= c.max_message
    c._drop(why, 1009 if n == 10 else 1002)
