# A small RFC 6455 WebSocket client for remote management: ws:// and wss://
# (through uingest.tls, verified like the uploads). The board is the client,
# so every frame it sends is masked; the server's must not be. One receive
# buffer, made once, holds a message (fragments reassembled in place up to
# max_message bytes); frames are read into it as they arrive, never joined.
# poll() never blocks and never raises: anything wrong (a malformed frame,
# an oversize message, a peer that stopped answering, the network) closes
# the connection with one line in .reason, and ensure() reconnects later
# with the Wi-Fi link's backoff and jitter.
#
# Text messages are handed over as bytes, not checked for UTF-8 here: the
# layer above parses them (JSON) and refuses what does not parse; checking
# every byte in Python would cost the board more than the message is worth.
import os
import select
import socket
import time
from binascii import b2a_base64
from hashlib import sha1

from micropython import const

from .http import _Closed, _describe, parse_url
from .wifi import BACKOFF_MAX_MS, BACKOFF_MIN_MS, _jitter

TEXT = const(1)
BINARY = const(2)

_SEND = const(256)  # the send buffer: a frame's head and its masked payload, in pieces of this size
_MAX_LINE = const(128)  # of a handshake reply line: the rest of a longer one is skipped
_MAX_HEADERS = const(40)  # header lines in the handshake reply; more is refused
_MAX_CONTROL = const(125)  # RFC 6455 5.5
_FRAMES_PER_POLL = const(8)  # a flood of pings cannot hold poll() for long
_STABLE_MS = const(30000)  # a connection open this long resets the backoff: a refused hello does not
_IPPROTO_TCP = const(6)
_TCP_NODELAY = const(1)
_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


class Client:
    """One WebSocket connection to url (ws://host[:port]/path or wss://...)."""

    def __init__(
        self, url, timeout_ms=10000, ca_file=None, insecure=False, max_message=2048, ping_ms=30000, dead_ms=10000
    ):
        if url.startswith("ws://"):
            u = "http" + url[2:]
        elif url.startswith("wss://"):
            u = "https" + url[3:]
        else:
            raise ValueError("url: expected ws://... or wss://..., got %r" % (url,))
        scheme, self.host, self.port, self.path = parse_url(u)
        self.tls = scheme == "https"
        host = "[%s]" % self.host if ":" in self.host else self.host
        self._host_header = host if self.port == (443 if self.tls else 80) else "%s:%d" % (host, self.port)
        self.timeout_ms = timeout_ms  # connecting (DNS, TCP, TLS, upgrade) whole; each send; each frame
        self.ca_file = ca_file
        self.insecure = insecure
        self.ping_ms = ping_ms  # nothing received this long: ping
        self.dead_ms = dead_ms  # then nothing for this long: the peer is gone
        self.max_message = max_message
        self.closed = True
        self.reason = "not connected"  # why it closed: one line for the log
        self.connections = 0
        self.backoff_ms = BACKOFF_MIN_MS
        self._next_try = None  # ticks_ms of the next reconnect, None: now
        self._opened = None  # ticks_ms it opened, until it counts as stable
        self._sock = self._raw = self._poll = self._addr = None
        self._deadline = 0
        self._buf = bytearray(max(max_message, _MAX_LINE))  # the message; the handshake's lines before it
        self._mv = memoryview(self._buf)
        self._ctl = bytearray(_MAX_CONTROL)  # a control frame's payload: a ping inside a fragmented message
        self._cv = memoryview(self._ctl)
        self._hdr = bytearray(10)  # a frame's head: 2 bytes, then 2 or 8 of length (no mask from a server)
        self._hv = memoryview(self._hdr)
        self._hx = self._hv[2:]  # the length after the first two bytes: made once, like _hv
        self._out = bytearray(_SEND)
        self._ov = memoryview(self._out)
        self._reset()

    def _reset(self):
        self._hn = 0  # head bytes read
        self._need = 2  # head bytes needed
        self._left = -1  # payload bytes still to read; -1: in the head
        self._fill = 0  # message bytes so far
        self._cn = 0  # control payload bytes so far
        self._kind = 0  # opcode of the message being reassembled, 0: none
        self._ready = False  # poll() returned a message: its bytes go at the next poll()
        self._t0 = 0  # ticks_ms a frame's first byte came
        self._rx = time.ticks_ms()  # ticks_ms a byte last came
        self._pinged = False

    # -- connection -------------------------------------------------------------------------
    def connect(self):
        """Open the connection (DNS, TCP, TLS, the upgrade) within timeout_ms.
        True when open; else False, closed, with .reason."""
        self._shut()
        self._reset()
        self._deadline = time.ticks_add(time.ticks_ms(), self.timeout_ms)
        try:
            if self._addr is None:  # DNS once, again after a failure
                self._addr = socket.getaddrinfo(self.host, self.port, 0, socket.SOCK_STREAM)[0][-1]
            s = self._sock = raw = socket.socket()
            try:
                s.setsockopt(_IPPROTO_TCP, _TCP_NODELAY, 1)  # frames are small writes
            except (OSError, AttributeError):
                pass
            s.settimeout(self._left_ms() / 1000)
            s.connect(self._addr)
            if self.tls:
                from . import tls

                s.settimeout(self._left_ms() / 1000)
                s = self._sock = tls.wrap(s, self.host, self.ca_file, self.insecure)
            if hasattr(s, "readline"):  # MicroPython: reads are non-blocking, waits are poll's
                self._raw = raw
                raw.settimeout(0)
                self._poll = select.poll()
                self._poll.register(s, 1)  # POLLIN
            self._handshake()
        except Exception as e:
            self._addr = None
            self._drop(_say(e))
            return False
        self.closed = False
        self.reason = ""
        self.connections += 1
        self._opened = self._rx = time.ticks_ms()
        return True

    def _handshake(self):
        key = b2a_base64(os.urandom(16))[:-1]
        self._write(
            (
                "GET %s HTTP/1.1\r\nHost: %s\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                "Sec-WebSocket-Key: %s\r\nSec-WebSocket-Version: 13\r\n\r\n"
                % (self.path, self._host_header, key.decode())
            ).encode()
        )
        accept = b2a_base64(sha1(key + _GUID).digest())[:-1]
        parts = self._line().split(None, 2)
        if len(parts) < 2 or not parts[0].startswith(b"HTTP/1.") or not (len(parts[1]) == 3 and parts[1].isdigit()):
            raise ValueError("not an HTTP response")
        if parts[1] != b"101":
            raise ValueError("upgrade refused: HTTP %s" % parts[1].decode())
        seen = 0
        for _ in range(_MAX_HEADERS + 1):
            line = self._line()
            if not line:
                if seen != 7:
                    raise ValueError("bad upgrade reply" if seen & 3 != 3 else "wrong Sec-WebSocket-Accept")
                return
            name, _, value = line.partition(b":")
            name = name.strip().lower()
            value = value.strip()
            if name == b"upgrade" and value.lower() == b"websocket":
                seen |= 1
            elif name == b"connection" and b"upgrade" in value.lower():
                seen |= 2
            elif name == b"sec-websocket-accept" and value == accept:
                seen |= 4
            elif name == b"sec-websocket-extensions":
                raise ValueError("an extension it did not ask for")
        raise ValueError("too many header lines")

    def _line(self):
        # A byte at a time: the frames after the reply stay in the socket.
        b = self._buf
        n = 0
        while True:
            self._read(self._cv, 1, True)
            c = self._ctl[0]
            if c == 10:
                break
            if n < _MAX_LINE:
                b[n] = c
                n += 1
        if n and b[n - 1] == 13:
            n -= 1
        return bytes(self._mv[:n])

    def close(self, reason="closed by the app"):
        """Send a close frame (1000) and close; later ensure() reopens."""
        if not self.closed:
            self._drop(reason, 1000)

    def ensure(self):
        """Called every loop: True when open. Closed: reconnects when due,
        never waiting longer than one connect(); the wait after each failure
        doubles from 1 s up to a minute (+-25 %), as the Wi-Fi link's does."""
        if not self.closed:
            return True
        if self._next_try is not None and time.ticks_diff(self._next_try, time.ticks_ms()) > 0:
            return False
        return self.connect()

    def _drop(self, reason, code=0):
        if code and self._sock is not None:
            try:  # a close frame with the reason's code; the network may be gone already
                self._ctl[0] = code >> 8
                self._ctl[1] = code & 255
                self._deadline = time.ticks_add(time.ticks_ms(), self.timeout_ms)
                self._frame(8, self._ctl, 2)
            except Exception:
                pass
        self._shut()
        self.closed = True
        self.reason = reason
        self._next_try = time.ticks_add(time.ticks_ms(), _jitter(self.backoff_ms))
        self.backoff_ms = min(self.backoff_ms * 2, BACKOFF_MAX_MS)

    def _shut(self):
        if self._sock is not None:
            try:
                self._sock.close()
            except OSError:
                pass
        self._sock = self._raw = self._poll = None

    # -- sending --------------------------------------------------------------------------
    def send_text(self, data):
        """Send a text message (str or UTF-8 bytes); False when closed or closing."""
        return self._send(TEXT, data)

    def send_binary(self, data):
        """Send a binary message (bytes, bytearray or memoryview); False when closed or closing."""
        return self._send(BINARY, data)

    def _send(self, op, data):
        if self.closed:
            return False
        try:
            try:
                data = memoryview(data)  # MicroPython's str has a buffer (its UTF-8 bytes)
            except TypeError:  # CPython's has not
                data = data.encode()
            self._deadline = time.ticks_add(time.ticks_ms(), self.timeout_ms)
            self._frame(op, data, len(data))
            return True
        except Exception as e:
            self._drop(_say(e))
            return False

    def _frame(self, op, data, n):
        # Head, mask key and payload masked into _out, written in pieces of
        # up to _SEND bytes: no copy of the message.
        out = self._out
        out[0] = 0x80 | op  # FIN: never fragmented
        if n < 126:
            out[1] = 0x80 | n
            h = 2
        elif n < 65536:
            out[1] = 0xFE
            out[2] = n >> 8
            out[3] = n & 255
            h = 4
        else:
            out[1] = 0xFF
            for i in range(8):
                out[9 - i] = (n >> (8 * i)) & 255 if i < 4 else 0
            h = 10
        out[h : h + 4] = os.urandom(4)  # the mask key: 4 fresh bytes per frame
        k = h + 4
        j = 0
        while True:
            while j < n and k < _SEND:
                out[k] = data[j] ^ out[h + (j & 3)]
                j += 1
                k += 1
            self._write(self._ov[:k] if k < _SEND else out)
            if j >= n:
                return
            # the key stays at out[h:h+4] for the next pieces: only the payload after it is rewritten
            k = h + 4

    # -- I/O on MicroPython's sockets and CPython's alike -----------------------------------
    def _left_ms(self):
        left = time.ticks_diff(self._deadline, time.ticks_ms())
        if left <= 0:
            raise OSError(110)  # timed out
        return left

    def _write(self, b):
        s = self._sock
        raw = self._raw
        if raw is None:  # CPython
            s.settimeout(self._left_ms() / 1000)  # pyright: ignore[reportOptionalMemberAccess] (connected)
            s.sendall(b)  # pyright: ignore[reportOptionalMemberAccess]
            return
        n = len(b)
        done = 0
        while done < n:
            raw.settimeout(self._left_ms() / 1000)
            k = s.write(b[done:] if done else b)  # pyright: ignore[reportOptionalMemberAccess]
            if k is None:
                raise OSError(110)
            done += k
        raw.settimeout(0)

    def _read(self, mv, most, wait=False):
        """Bytes read into mv, at least one and at most most; 0 when none
        have come and not wait; else waits by the deadline. The end of the
        stream raises. A limit, not a slice: a read at mv's start makes no
        object, so a frame that has come whole costs nothing to read."""
        s = self._sock
        if self._raw is None:  # CPython: a timeout of 0 is non-blocking
            s.settimeout(self._left_ms() / 1000 if wait else 0)  # pyright: ignore[reportOptionalMemberAccess]
            try:
                n = s.recv_into(mv, most)  # pyright: ignore[reportOptionalMemberAccess, reportAttributeAccessIssue]
            except OSError as e:
                if wait or e.__class__.__name__ not in ("BlockingIOError", "SSLWantReadError"):
                    raise
                return 0
        else:
            while True:
                n = s.readinto(mv, most)  # pyright: ignore[reportOptionalMemberAccess]
                if n is not None:
                    break
                if not wait:
                    return 0
                self._poll.ipoll(self._left_ms())  # pyright: ignore[reportOptionalMemberAccess]
        if not n:
            raise _Closed()
        self._rx = time.ticks_ms()
        self._pinged = False
        return n

    # -- receiving --------------------------------------------------------------------------
    def poll(self):
        """Never blocks. A message that has come whole: (TEXT or BINARY, a
        memoryview of its bytes, valid until the next poll()); else None.
        Pings are answered, a close is answered and closes, the peer is
        pinged when quiet; a fault closes with .reason; nothing raises."""
        if self.closed:
            return None
        try:
            if self._ready:
                self._ready = False
                self._fill = self._kind = 0
            frames = _FRAMES_PER_POLL
            while frames:
                got = self._step()
                if got == 2:
                    return self._kind, self._mv[: self._fill]
                if not got:
                    break
                frames -= 1
            if not self.closed:
                self._check_time()
        except Exception as e:
            self._drop(_say(e))
        return None

    def _check_time(self):
        now = time.ticks_ms()
        if self._hn and time.ticks_diff(now, self._t0) > self.timeout_ms:
            return self._drop("a frame took over %d ms" % self.timeout_ms, 1002)
        if self._opened is not None and time.ticks_diff(now, self._opened) > _STABLE_MS:
            self._opened = None
            self.backoff_ms = BACKOFF_MIN_MS
        quiet = time.ticks_diff(now, self._rx)
        if not self._pinged:
            if quiet > self.ping_ms:
                self._deadline = time.ticks_add(now, self.timeout_ms)
                self._frame(9, self._ctl, 0)
                self._pinged = True
                self._rx = now  # from now on, quiet counts the wait for an answer
        elif quiet > self.dead_ms:
            self._drop("no answer to a ping in %d ms" % self.dead_ms)

    def _step(self):
        # One frame, as far as its bytes have come: 0 nothing more now (or
        # closed), 1 a frame done, 2 a message done.
        h = self._hdr
        if self._left < 0:
            while self._hn < self._need:
                if not self._hn:
                    self._t0 = time.ticks_ms()
                hn = self._hn
                n = self._read(self._hv if not hn else self._hx if hn == 2 else self._hv[hn:], self._need - hn)
                if not n:
                    return 0
                self._hn += n
                if self._need == 2 and self._hn == 2:
                    fault = self._check_head(h[0], h[1])
                    if fault:
                        return self._drop(fault, 1002)
                    n = h[1] & 127
                    self._need = 4 if n == 126 else 10 if n == 127 else 2
            n = h[1] & 127
            if n == 126:
                n = h[2] << 8 | h[3]
            elif n == 127:
                if h[2] & 0x80:
                    return self._drop("a 64-bit length with the top bit set", 1002)
                if h[2] | h[3] | h[4] | h[5] or h[6] & 0xC0:
                    n = -1  # 2**30 or more: over any bound, and no big int made for it
                else:
                    n = h[6] << 24 | h[7] << 16 | h[8] << 8 | h[9]
            if h[0] & 15 < 8 and (n < 0 or self._fill + n > self.max_message):
                return self._drop("a message over %d bytes" % self.max_message, 1009)
            self._left = n
        op = h[0] & 15
        while self._left:
            if op < 8:
                n = self._read(self._mv[self._fill :] if self._fill else self._mv, self._left)
                self._fill += n
            else:
                n = self._read(self._cv[self._cn :] if self._cn else self._cv, self._left)
                self._cn += n
            if not n:
                return 0
            self._left -= n
        # the frame is whole
        self._hn = 0
        self._need = 2
        self._left = -1
        if op < 8:
            if h[0] & 0x80:  # FIN
                self._ready = True
                return 2
            return 1
        n = self._cn
        self._cn = 0
        if op == 9:  # ping: pong with its payload
            self._deadline = time.ticks_add(time.ticks_ms(), self.timeout_ms)
            self._frame(10, self._ctl, n)
        elif op == 8:
            return self._closed_by_server(n)
        return 1

    def _check_head(self, b0, b1):
        # What is wrong with a frame's first two bytes, or None.
        op = b0 & 15
        if b0 & 0x70:
            return "a frame with reserved bits set"
        if b1 & 0x80:
            return "a masked frame from the server"
        if op > 10 or 2 < op < 8:
            return "a frame with the unknown opcode %d" % op
        if op >= 8:
            if not b0 & 0x80:
                return "a fragmented control frame"
            if b1 & 127 > _MAX_CONTROL:
                return "a control frame over 125 bytes"
            return None
        if op == 0:
            if not self._kind:
                return "a continuation with no message to continue"
        elif self._kind:
            return "a new message inside a fragmented one"
        else:
            self._kind = op
        return None

    def _closed_by_server(self, n):
        if n == 1:
            return self._drop("a close frame of 1 byte", 1002)
        code = self._ctl[0] << 8 | self._ctl[1] if n else 1005
        # its reason, printable ASCII only: it goes to the log
        text = "".join(chr(c) if 31 < c < 127 else "?" for c in self._ctl[2 : min(n, 62)])
        self._drop(
            "closed by the server: %d %s" % (code, text) if text else "closed by the server: %d" % code,
            code if n else 1000,
        )
        return 0


def _say(e):
    # One line for the log from what a connection raised.
    if isinstance(e, OSError):
        return _describe(e)
    if isinstance(e, ValueError):
        return str(e)[:120]
    return "%s %s" % (e.__class__.__name__, str(e)[:80])
