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
# it (JSON or CBOR) and refuses what does not parse; a check of every byte in Python
# would cost the board more than it saves.
import gc
import os
import sys
import time

from micropython import const

from . import http
from .http import _Closed, _describe
from .wifi import BACKOFF_MAX_MS, BACKOFF_MIN_MS, _jitter

TEXT = const(1)
BINARY = const(2)

_FRAMES_PER_POLL = const(8)  # a flood of pings cannot hold poll() for long
_STABLE_MS = const(30000)  # a connection open this long resets the backoff (a refused hello does not)


class Client:
    """One WebSocket connection to url (ws://host[:port]/path or wss://...).
    Its rarely run code (the constructor, the opening handshake, the lines
    of a close) is in uingest.wscold, in the heap only while it runs."""

    # set by wscold.setup (for pyright: annotations alone make nothing at run time)
    timeout_ms: int
    ping_ms: int
    dead_ms: int
    connections: int
    _mv: memoryview
    _cv: memoryview
    _hv: memoryview
    _hx: memoryview
    _ov: memoryview

    def __init__(
        self, url, timeout_ms=10000, ca_file=None, insecure=False, max_message=2048, ping_ms=30000, dead_ms=10000
    ):
        cold("wscold", "setup", self, url, timeout_ms, ca_file, insecure, max_message, ping_ms, dead_ms)

    # -- connection -------------------------------------------------------------------------
    # DNS, TCP, TLS and writing by the deadline, as the uploads do (their deadline is _deadline too): one copy
    _connect = http.Client._connect
    _wait = http.Client._wait
    _wrap_tls = http.Client._wrap_tls
    _send = http.Client._send

    def connect(self):
        """Open it (DNS, TCP, TLS, the upgrade) within timeout_ms: True when
        open, else False with .reason. An open connection is closed first."""
        if not self.closed:
            self._drop("reconnecting", 1000)
        self._deadline = time.ticks_add(time.ticks_ms(), self.timeout_ms)
        try:
            # TCP first (CPython: and TLS); MicroPython's TLS handshake runs in the upgrade's first write, with
            # the cold path loaded: mode both over TLS measured the same smallest heap (124K / 86K) as before
            self._connect()
            cold("wscold", "handshake", self)
        except Exception as e:  # MemoryError too: loading the cold path
            self._addr = None
            self._drop(_say(e))
            return False
        return True

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
                    self._cv[0] = code >> 8
                    self._cv[1] = code & 255
                    self._deadline = time.ticks_add(time.ticks_ms(), self.timeout_ms)
                    self._frame(8, self._cv, 2)
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
        # Head, mask key and the payload masked, into _ov and out in pieces
        # of up to its size (wscold._SEND) bytes: no copy of the message is made.
        out = self._ov
        size = len(out)
        out[0] = 0x80 | op  # FIN: never fragmented
        if n < 126:
            out[1] = 0x80 | n
            k = 2
        else:
            out[1] = 0xFE
            out[2] = n >> 8
            out[3] = n & 255
            k = 4
        key = self._hv
        r = os.urandom(4)  # a fresh key for every frame
        key[10:14] = r
        out[k : k + 4] = r
        k += 4
        j = 0
        while True:
            while j < n and k < size:
                out[k] = data[j] ^ key[10 + (j & 3)]
                j += 1
                k += 1
            self._send(self._ov[:k] if k < size else out)
            if j >= n:
                return
            k = 0  # the next piece: payload only

    # -- I/O on MicroPython's sockets and CPython's alike -----------------------------------
    def _left_ms(self):
        left = time.ticks_diff(self._deadline, time.ticks_ms())
        if left <= 0:
            raise OSError(110)  # timed out
        return left

    def _read(self, mv, most, wait=False):
        # Bytes read into mv's start (at least 1, at most most); 0 when none
        # have come and not wait, else waits by the deadline; the stream's
        # end raises. A limit, not a slice: a read into a view made once
        # makes no object, so a frame that has come whole costs nothing,
        # and one that comes in pieces a view per piece.
        s = self._sock
        if self._raw is None:  # CPython: a timeout of 0 is non-blocking
            s.settimeout(self._left_ms() / 1000 if wait else 0)  # pyright: ignore[reportAttributeAccessIssue]
            try:
                n = s.recv_into(mv, most)  # pyright: ignore[reportAttributeAccessIssue]
            except OSError as e:
                if wait or e.__class__.__name__ not in ("BlockingIOError", "SSLWantReadError"):
                    raise
                return 0
        else:
            while True:
                n = s.readinto(mv, most)  # pyright: ignore[reportAttributeAccessIssue] (connected)
                if n is not None:
                    break
                if not wait:
                    return 0
                self._poll.ipoll(self._left_ms())  # pyright: ignore[reportAttributeAccessIssue] (connected)
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
                cold("wscold", "fault", self, 11)
            elif not self._pinged:
                if time.ticks_diff(now, self._rx) > self.ping_ms:
                    self._deadline = time.ticks_add(now, self.timeout_ms)
                    self._frame(9, self._cv, 0)
                    self._pinged = True
                    self._rx = now  # from now on the quiet is the wait for an answer
            elif time.ticks_diff(now, self._rx) > self.dead_ms:
                cold("wscold", "fault", self, 12)
            if self._opened is not None and time.ticks_diff(now, self._opened) > _STABLE_MS:
                self._opened = None
                self.backoff_ms = BACKOFF_MIN_MS
        except Exception as e:
            self._drop(_say(e))
        return None

    def _step(self):
        # One frame, as far as its bytes have come: 0 nothing more now (or
        # closed), 1 a frame done, 2 a message done.
        h = self._hv
        fault = 0  # else what is wrong: a number of wscold.fault
        if self._left < 0:
            while self._hn < self._need:
                hn = self._hn
                if not hn:
                    self._t0 = time.ticks_ms()
                v = self._view
                if v is None:
                    v = self._view = self._hv if not hn else self._hx if hn == 2 else self._hv[hn:]
                n = self._read(v, self._need - hn)
                if not n:
                    return 0
                self._view = None
                self._hn += n
                if hn + n == 2 == self._need:  # the first two bytes: what frame is it?
                    op = h[0] & 15
                    n = h[1] & 127
                    self._need = 4 if n == 126 else 10 if n == 127 else 2
                    if h[0] & 0x70:
                        fault = 1
                    elif h[1] & 0x80:
                        fault = 2
                    elif 2 < op < 8 or op > 10:
                        fault = 3
                    elif op > 7:
                        if not h[0] & 0x80:
                            fault = 4
                        elif n > 125:
                            fault = 5
                    elif not op:
                        if not self._kind:
                            fault = 6
                    elif self._kind:
                        fault = 7
                    else:
                        self._kind = op
                    if fault:
                        return cold("wscold", "fault", self, fault)
            n = h[1] & 127
            if n == 126:
                n = h[2] << 8 | h[3]
            elif n == 127:
                if h[2] & 0x80:
                    return cold("wscold", "fault", self, 8)
                # 2**30 or more is over any bound, and no big int is made for it
                n = -1 if h[2] | h[3] | h[4] | h[5] or h[6] & 0xC0 else h[6] << 24 | h[7] << 16 | h[8] << 8 | h[9]
            if h[0] & 8 == 0 and (n < 0 or self._fill + n > len(self._mv)):
                return cold("wscold", "fault", self, 10)
            self._left = n
        op = h[0] & 15
        while self._left:
            v = self._view
            if v is None:
                if op < 8:
                    v = self._mv[self._fill :] if self._fill else self._mv
                else:
                    v = self._cv[self._cn :] if self._cn else self._cv
                self._view = v
            n = self._read(v, self._left)
            if not n:
                return 0
            self._view = None
            if op < 8:
                self._fill += n
            else:
                self._cn += n
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
        c = self._cv
        if op == 9:  # a ping: the pong carries its payload
            self._deadline = time.ticks_add(time.ticks_ms(), self.timeout_ms)
            self._frame(10, c, n)
        elif op == 8:  # a close: answered with its code, then closed
            cold("wscold", "fault", self, 0, n)
            return 0
        return 1


def _say(e):
    # One line for the log from what connecting, sending or reading raised.
    if isinstance(e, OSError):
        return _describe(e)
    if isinstance(e, ValueError):
        return str(e)[:120]
    return "%s %s" % (e.__class__.__name__, str(e)[:80])


def cold(module, name, *args):
    """uingest.<module>.<name>(*args), the module loaded for the call and
    unloaded right after (as the app does the config check): a cold path
    costs the heap only while it runs. gc.collect() first makes room; a
    load that fails (MemoryError) leaves nothing behind either."""
    gc.collect()
    try:
        return getattr(__import__("uingest." + module, None, None, (name,)), name)(*args)
    finally:
        sys.modules.pop("uingest." + module, None)  # a failed load stays in it, half made
        import uingest

        if hasattr(uingest, module):
            delattr(uingest, module)
