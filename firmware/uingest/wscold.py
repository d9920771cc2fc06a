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
    tls = url.startswith("wss://")
    if not (tls or url.startswith("ws://")):
        raise ValueError("url: expected ws://... or wss://..., got %r" % (url,))
    # http's scheme (and ports: 80, 443 for wss): http.Client._connect reads it
    c.scheme, c.host, c.port, c.path = parse_url("http" + url[2:])
    host = "[%s]" % c.host if ":" in c.host else c.host
    c._host = host if c.port == (443 if tls else 80) else "%s:%d" % (host, c.port)
    c.timeout_ms = timeout_ms  # connecting (DNS, TCP, TLS, upgrade) whole; each send; each frame
    c.ca_file = ca_file
    c.insecure = insecure
    c.ping_ms = ping_ms  # nothing has come this long: ping
    c.dead_ms = dead_ms  # then nothing for this long: the peer is gone
    c.closed = True
    c.reason = "not connected"  # why it closed, one line for the log
    c.connections = 0  # opened so far (TCP and TLS: counted by http.Client._connect)
    c.backoff_ms = BACKOFF_MIN_MS
    c._next_try = None  # ticks_ms of the next reconnect; None: now
    c._sock = c._raw = c._poll = c._addr = None
    c._deadline = c._opened = c._rx = 0  # _opened: ticks_ms until it counts as stable (None: it does)
    # The buffers, each held by its view only (an attribute less each: the dict stays at 37 entries, not 47).
    # The message, its length the bound (max_message, 128 at least); before it, the handshake's lines
    c._mv = memoryview(bytearray(max(max_message, _MAX_LINE)))
    c._cv = memoryview(bytearray(125))  # a control frame's payload: a ping may come inside a fragmented message
    c._hv = memoryview(bytearray(14))  # a frame's head as it comes (2 + up to 8 bytes); [10:14] the mask key sent
    c._hx = c._hv[2:10]  # the length after the first two bytes: made once, like _hv
    c._ov = memoryview(bytearray(_SEND))  # a frame on its way out
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
    """The upgrade, on c (a closed ws.Client, its deadline set, just
    connected by http.Client's own code: TCP and TLS). Raises on any failure
    (the caller closes c and says why)."""
    _fresh(c)  # MicroPython's socket is non-blocking (http.Client._connect): waits are poll's
    key = b2a_base64(os.urandom(16))[:-1]
    c._send(
        (
            "GET %s HTTP/1.1\r\nHost: %s\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            "Sec-WebSocket-Key: %s\r\nSec-WebSocket-Version: 13\r\n\r\n" % (c.path, c._host, key.decode())
        ).encode()
    )
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
    b = c._mv
    n = 0
    while True:
        c._read(c._cv, 1, True)
        ch = c._cv[0]
        if ch == 10:
            break
        if n < _MAX_LINE:
            b[n] = ch
            n += 1
    return bytes(c._mv[: n - 1 if n and b[n - 1] == 13 else n])


# Why the connection closes: ws.Client's fault numbers, from 1
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
    "a frame took over %d ms",
    "no answer to a ping in %d ms",
)


def fault(c, n, size=0):
    """Close c with one line: for fault n (1-12, _FAULTS) with its close
    code (1009 for a message over the bound, none for a dead peer, else
    1002); for 0, the server's close frame, size bytes of it in c._cv,
    answered with its code. On the cold path: the texts cost the heap only
    when a connection closes."""
    if n == 0:
        if size == 1:
            n = 9
        else:
            cv = c._cv
            code = cv[0] << 8 | cv[1] if size else 1000
            # its reason in printable ASCII only: it goes to the log
            why = "".join(chr(b) if 31 < b < 127 else "?" for b in cv[2 : min(size, 62)])
            return c._drop(("closed by the server: %d " % code + why).rstrip(), code)
    why = _FAULTS[n - 1]
    if "%" in why:
        why %= (c._hv[0] & 15, len(c._mv), c.timeout_ms, c.dead_ms)[(3, 10, 11, 12).index(n)]
    c._drop(why, 1009 if n == 10 else 0 if n == 12 else 1002)
