# A small RFC 6455 WebSocket client for remote management: ws:// and wss://
# (through uingest.tls, verified like the uploads). The board is the client,
# so every frame it sends is masked; a server's must not be. One receive
# buffer, made once, holds a message: fragments are reassembled in it up to
# max_message bytes, read into it as they come, never joined. poll() never
# blocks and never raises: anything wrong (a malformed frame, an oversize
# message, a peer that stopped answering, the network) closes the connection
# with one line in .reason, and ensure() reconnects later with the Wi-Fi
# link's backoff and jitter.
#
# Text is handed over as bytes, its UTF-8 not checked: the layer above parses
# it (JSON) and refuses what does not parse; a check of every byte in Python
# would cost the board more than it saves.
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

_SEND = const(256)  # a frame goes out in pieces of this size: head, mask key, payload masked
_MAX_LINE = const(128)  # of a handshake reply line: the rest of a longer one is skipped
_MAX_HEADERS = const(40)  # header lines in the handshake reply; more is refused
_FRAMES_PER_POLL = const(8)  # a flood of pings cannot hold poll() for long
_STABLE_MS = const(30000)  # a connection open this long resets the backoff (a refused hello does not)
_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


class Client:
    """One WebSocket connection to url (ws://host[:port]/path or wss://...)."""

    def __init__(
        self, url, timeout_ms=10000, ca_file=None, insecure=False, max_message=2048, ping_ms=30000, dead_ms=10000
    ):
        self.tls = url.startswith("wss://")
        if not (self.tls or url.startswith("ws://")):
            raise ValueError("url: expected ws://... or wss://..., got %r" % (url,))
        _, self.host, self.port, self.path = parse_url("http" + url[2:])  # the ports: 80, 443 for wss
        host = "[%s]" % self.host if ":" in self.host else self.host
        self._host = host if self.port == (443 if self.tls else 80) else "%s:%d" % (host, self.port)
        self.timeout_ms = timeout_ms  # connecting (DNS, TCP, TLS, upgrade) whole; each send; each frame
        self.ca_file = ca_file
        self.insecure = insecure
        self.max_message = max_message
        self.ping_ms = ping_ms  # nothing has come this long: ping
        self.dead_ms = dead_ms  # then nothing for this long: the peer is gone
        self.closed = True
        self.reason = "not connected"  # why it closed, one line for the log
        self.connections = 0
        self.backoff_ms = BACKOFF_MIN_MS
        self._next_try = None  # ticks_ms of the next reconnect; None: now
        self._sock = self._raw = self._poll = self._addr = None
        self._buf = bytearray(max(max_message, _MAX_LINE))  # the message; before it, the handshake's lines
        self._mv = memoryview(self._buf)
        self._ctl = bytearray(125)  # a control frame's payload: a ping may come inside a fragmented message
        self._cv = memoryview(self._ctl)
        self._hdr = bytearray(14)  # a frame's head as it comes (2 + up to 8 bytes); [10:14] the mask key sent
        self._hv = memoryview(self._hdr)
        self._hx = self._hv[2:10]  # the length after the first two bytes: made once, like _hv
        self._out = bytearray(_SEND)
        self._ov = memoryview(self._out)

    # -- connection -------------------------------------------------------------------------
    def connect(self):
        """Open it (DNS, TCP, TLS, the upgrade) within timeout_ms: True when
        open, else False with .reason. An open connection is closed first."""
        if not self.closed:
            self._drop("reconnecting", 1000)
        self._hn = self._fill = self._cn = self._kind = 0  # head bytes, message bytes, control bytes, opcode
        self._need = 2  # head bytes this frame needs
        self._left = -1  # payload bytes still to come; -1: in the head
        self._ready = self._pinged = False  # _ready: poll() gave the message out, it goes at the next
        self._t0 = 0  # ticks_ms the frame's first byte came
        self._deadline = time.ticks_add(time.ticks_ms(), self.timeout_ms)
        try:
            if self._addr is None:  # DNS once, again after a failure
                self._addr = socket.getaddrinfo(self.host, self.port, 0, socket.SOCK_STREAM)[0][-1]
            s = self._sock = raw = socket.socket()
            try:
                s.setsockopt(6, 1, 1)  # IPPROTO_TCP, TCP_NODELAY (the same on Linux and lwIP): small frames
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
            key = b2a_base64(os.urandom(16))[:-1]
            self._write(
                (
                    "GET %s HTTP/1.1\r\nHost: %s\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                    "Sec-WebSocket-Key: %s\r\nSec-WebSocket-Version: 13\r\n\r\n" % (self.path, self._host, key.decode())
                ).encode()
            )
            status = self._line().split(None, 2)
            if len(status) < 2 or not status[0].startswith(b"HTTP/1.") or not status[1].isdigit():
                raise ValueError("not an HTTP response")
            if status[1] != b"101":
                raise ValueError("upgrade refused: HTTP %s" % status[1][:3].decode())
            # The accept value proves a WebSocket server read this request
            key = b2a_base64(sha1(key + _GUID).digest())[:-1]
            for _ in range(_MAX_HEADERS):
                line = self._line()
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
        except Exception as e:
            self._addr = None
            self._drop(_say(e))
            return False
        self.closed = False
        self.reason = ""
        self.connections += 1
        self._opened = self._rx = time.ticks_ms()  # _opened: until it counts as stable
        return True

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
        return bytes(self._mv[: n - 1 if n and b[n - 1] == 13 else n])

    def close(self, reason="closed by the app"):
        """Send a close frame (1000) and close; ensure() reopens it later."""
        if not self.closed:
            self._drop(reason, 1000)

    def ensure(self):
        """Called every loop: True when open. Closed, it reconnects when due,
        never waiting longer than one connect(): the wait after each
        failure doubles from 1 s up to a minute (+-25 %), as Wi-Fi's does."""
        if not self.closed:
            return True
        if self._next_try is not None and time.ticks_diff(self._next_try, time.ticks_ms()) > 0:
            return False
        return self.connect()

    def _drop(self, reason, code=0):
        s = self._sock
        if s is not None:
            if code:
                try:  # the network may be gone already
                    self._ctl[0] = code >> 8
                    self._ctl[1] = code & 255
                    self._deadline = time.ticks_add(time.ticks_ms(), self.timeout_ms)
                    self._frame(8, self._ctl, 2)
                except Exception:
                    pass
            try:
                s.close()
            except OSError:
                pass
        self._sock = self._raw = self._poll = None
        self.closed = True
        self.reason = reason
        self._next_try = time.ticks_add(time.ticks_ms(), _jitter(self.backoff_ms))
        self.backoff_ms = min(self.backoff_ms * 2, BACKOFF_MAX_MS)

    # -- sending --------------------------------------------------------------------------
    def send(self, data, kind=TEXT):
        """Send one message: TEXT (str or UTF-8 bytes) or BINARY (bytes,
        bytearray, memoryview), at most 65535 bytes. False when it is not
        open (a failed send closes it, with .reason)."""
        if self.closed:
            return False
        try:
            try:
                data = memoryview(data)  # MicroPython's str has a buffer (its UTF-8): no copy
            except TypeError:  # CPython's has not
                data = data.encode()
            if len(data) > 65535:
                return False
            self._deadline = time.ticks_add(time.ticks_ms(), self.timeout_ms)
            self._frame(kind, data, len(data))
            return True
        except Exception as e:
            self._drop(_say(e))
            return False

    def _frame(self, op, data, n):
        # Head, mask key and the payload masked, into _out and out in pieces
        # of up to _SEND bytes: no copy of the message is made.
        out = self._out
        out[0] = 0x80 | op  # FIN: never fragmented
        if n < 126:
            out[1] = 0x80 | n
            k = 2
        else:
            out[1] = 0xFE
            out[2] = n >> 8
            out[3] = n & 255
            k = 4
        key = self._hdr
        r = os.urandom(4)  # a fresh key for every frame
        key[10:14] = r
        out[k : k + 4] = r
        k += 4
        j = 0
        while True:
            while j < n and k < _SEND:
                out[k] = data[j] ^ key[10 + (j & 3)]
                j += 1
                k += 1
            self._write(self._ov[:k] if k < _SEND else out)
            if j >= n:
                return
            k = 0  # the next piece: payload only

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
            s.settimeout(self._left_ms() / 1000)  # pyright: ignore[reportOptionalMemberAccess, reportAttributeAccessIssue] (CPython)
            s.sendall(b)  # pyright: ignore[reportOptionalMemberAccess]
            return
        done = 0
        while done < len(b):
            raw.settimeout(self._left_ms() / 1000)
            k = s.write(b[done:] if done else b)  # pyright: ignore[reportOptionalMemberAccess]
            if k is None:
                raise OSError(110)
            done += k
        raw.settimeout(0)

    def _read(self, mv, most, wait=False):
        # Bytes read into mv's start (at least 1, at most most); 0 when none
        # have come and not wait, else waits by the deadline; the stream's
        # end raises. A limit, not a slice: a read into a view made once
        # makes no object, so a frame that has come whole costs nothing.
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
        """Never blocks, never raises. A message that has come whole: (TEXT
        or BINARY, a memoryview of its bytes, valid until the next poll());
        else None. Pings are answered; a close is answered and closes; a
        quiet peer is pinged, and one that stays quiet is dropped."""
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
            if self.closed:
                return None
            now = time.ticks_ms()
            if self._hn and time.ticks_diff(now, self._t0) > self.timeout_ms:
                self._drop("a frame took over %d ms" % self.timeout_ms, 1002)
            elif not self._pinged:
                if time.ticks_diff(now, self._rx) > self.ping_ms:
                    self._deadline = time.ticks_add(now, self.timeout_ms)
                    self._frame(9, self._ctl, 0)
                    self._pinged = True
                    self._rx = now  # from now on the quiet is the wait for an answer
            elif time.ticks_diff(now, self._rx) > self.dead_ms:
                self._drop("no answer to a ping in %d ms" % self.dead_ms)
            if self._opened is not None and time.ticks_diff(now, self._opened) > _STABLE_MS:
                self._opened = None
                self.backoff_ms = BACKOFF_MIN_MS
        except Exception as e:
            self._drop(_say(e))
        return None

    def _step(self):
        # One frame, as far as its bytes have come: 0 nothing more now (or
        # closed), 1 a frame done, 2 a message done.
        h = self._hdr
        fault = None
        if self._left < 0:
            while self._hn < self._need:
                hn = self._hn
                if not hn:
                    self._t0 = time.ticks_ms()
                n = self._read(self._hv if not hn else self._hx if hn == 2 else self._hv[hn:], self._need - hn)
                if not n:
                    return 0
                self._hn += n
                if hn + n == 2 == self._need:  # the first two bytes: what frame is it?
                    op = h[0] & 15
                    n = h[1] & 127
                    self._need = 4 if n == 126 else 10 if n == 127 else 2
                    if h[0] & 0x70:
                        fault = "a frame with reserved bits set"
                    elif h[1] & 0x80:
                        fault = "a masked frame from the server"
                    elif 2 < op < 8 or op > 10:
                        fault = "a frame with the unknown opcode %d" % op
                    elif op > 7:
                        if not h[0] & 0x80:
                            fault = "a fragmented control frame"
                        elif n > 125:
                            fault = "a control frame over 125 bytes"
                    elif not op:
                        if not self._kind:
                            fault = "a continuation of no message"
                    elif self._kind:
                        fault = "a new message inside a fragmented one"
                    else:
                        self._kind = op
                    if fault:
                        return self._drop(fault, 1002)
            n = h[1] & 127
            if n == 126:
                n = h[2] << 8 | h[3]
            elif n == 127:
                if h[2] & 0x80:
                    return self._drop("a 64-bit length with the top bit set", 1002)
                # 2**30 or more is over any bound, and no big int is made for it
                n = -1 if h[2] | h[3] | h[4] | h[5] or h[6] & 0xC0 else h[6] << 24 | h[7] << 16 | h[8] << 8 | h[9]
            if h[0] & 8 == 0 and (n < 0 or self._fill + n > self.max_message):
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
            self._ready = h[0] > 127  # FIN
            return 2 if self._ready else 1
        n = self._cn
        self._cn = 0
        c = self._ctl
        if op == 9:  # a ping: the pong carries its payload
            self._deadline = time.ticks_add(time.ticks_ms(), self.timeout_ms)
            self._frame(10, c, n)
        elif op == 8:  # a close: answered with its code, then closed
            if n == 1:
                return self._drop("a close frame of 1 byte", 1002)
            code = c[0] << 8 | c[1] if n else 1000
            # its reason in printable ASCII only: it goes to the log
            why = "".join(chr(b) if 31 < b < 127 else "?" for b in c[2 : min(n, 62)])
            self._drop(("closed by the server: %d " % code + why).rstrip(), code)
            return 0
        return 1


def _say(e):
    # One line for the log from what connecting, sending or reading raised.
    if isinstance(e, OSError):
        return _describe(e)
    if isinstance(e, ValueError):
        return str(e)[:120]
    return "%s %s" % (e.__class__.__name__, str(e)[:80])
