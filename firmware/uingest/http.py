# A small HTTP/1.1 client for posting windows: one kept-alive connection,
# reopened when the server closed it; the body streamed from the encoder with
# its Content-Length known first; typed outcomes instead of exceptions for
# anything the network does. A try ends by its deadline (timeout_ms after it
# began) whatever the server does, and a reply is read exactly: bytes after it
# close the connection, never taken as the next reply.
import select
import socket
import time

from micropython import const

ACCEPTED = "ACCEPTED"  # stored; .detail is the stored file name
RETRY = "RETRY"  # network trouble, timeout or 5xx: keep the message, try later
REJECTED = "REJECTED"  # 4xx: these bytes will never be accepted; .detail is the reason

_SEND = const(1460)  # one TCP segment on Ethernet and Wi-Fi; the send buffer holds the reply too
_IPPROTO_TCP = const(6)  # same numbers on Linux and lwIP; not every port names them
_TCP_NODELAY = const(1)
_MAX_BODY = const(1024)  # we only need the reply's first line
_MAX_RETRY_AFTER_S = const(3600)  # a server asking for more is capped: the data must still go
_MAX_LINE = const(128)  # of a status line (a longer one is refused) or a header line (cut, its rest skipped)
_MAX_HEADERS = const(40)  # header lines in a reply; more is refused
_DIGITS = b"0123456789abcdefABCDEF"  # [:10] decimal, all: hex


class Outcome:
    __slots__ = ("kind", "status", "detail", "retry_after_ms")

    def __init__(self, kind, status, detail, retry_after_ms=0):
        self.kind = kind
        self.status = status  # HTTP status, or 0 when there was no response
        self.detail = detail
        self.retry_after_ms = retry_after_ms  # RETRY: the server's Retry-After, 0 when it gave none

    def __repr__(self):
        return "Outcome(%s, %d, %r)" % (self.kind, self.status, self.detail)


def parse_url(url):
    """(scheme, host, port, path) of an http:// or https:// URL."""
    if url.startswith("http://"):
        scheme, rest, port = "http", url[7:], 80
    elif url.startswith("https://"):
        scheme, rest, port = "https", url[8:], 443
    else:
        raise ValueError("url: expected http://... or https://..., got %r" % (url,))
    slash = rest.find("/")
    hostport, path = (rest, "/") if slash < 0 else (rest[:slash], rest[slash:])
    if hostport.startswith("["):  # [::1]:4810
        end = hostport.find("]")
        host, tail = hostport[1:end], hostport[end + 1 :]
        p = tail[1:] if tail.startswith(":") else None
    elif ":" in hostport:
        host, p = hostport.rsplit(":", 1)
    else:
        host, p = hostport, None
    if not host:
        raise ValueError("url: no host in %r" % (url,))
    if p is not None:  # digits only: int() would take "+80", " 80", "8_0"
        if not p.isdigit() or not 0 < int(p) < 65536:
            raise ValueError("url: the port must be a number from 1 to 65535 in %r" % (url,))
        port = int(p)
    return scheme, host, port, path


class _Closed(OSError):
    pass


class Client:
    """Keep-alive connection to one server (scheme://host:port)."""

    def __init__(self, base_url, timeout_ms=10000, ca_file=None, insecure=False):
        self.scheme, self.host, self.port, self.base_path = parse_url(base_url)
        self.base_path = self.base_path.rstrip("/")
        host = "[%s]" % self.host if ":" in self.host else self.host  # an IPv6 literal keeps its brackets
        self._host_header = host if self.port in (80, 443) else "%s:%d" % (host, self.port)
        self.timeout_ms = timeout_ms
        self.ca_file = ca_file
        self.insecure = insecure
        self.connections = 0  # opened so far: proves keep-alive in tests
        self._sock = None
        self._addr = None
        self._raw = None  # MicroPython: the plain socket under _sock, non-blocking once connected
        self._poll = None  # MicroPython: waits, by the deadline, for _sock's reply bytes; CPython: None
        self._pos = self._fill = _MAX_LINE  # the reply's bytes in _out[_pos:_fill] are not parsed yet
        self._deadline = 0  # ticks_ms by which the current try ends
        self._answered = False
        self.retry_after_s = 0  # of the last reply
        # The send buffer, idle once the request is sent, holds the reply too:
        # each read lands in _in, the start of a line not yet whole (at most
        # _MAX_LINE bytes) moves to just before it. No new object per read: a
        # reply dripped a byte at a time costs the heap what it costs whole.
        self._out = bytearray(_SEND)
        self._out_mv = memoryview(self._out)
        self._out_used = 0
        self._in = self._out_mv[_MAX_LINE:]

    # -- connection ---------------------------------------------------------
    def _connect(self):
        if self._addr is None:  # DNS once, reused while connecting works
            self._addr = socket.getaddrinfo(self.host, self.port, 0, socket.SOCK_STREAM)[0][-1]
        s = raw = socket.socket()
        try:
            self._wait(s)
            try:
                # Headers and body go out as several small writes: without
                # TCP_NODELAY, Nagle + delayed ACK stall each request ~40 ms.
                s.setsockopt(_IPPROTO_TCP, _TCP_NODELAY, 1)
            except (OSError, AttributeError):
                pass  # a port without the option: slower, still correct
            s.connect(self._addr)
            # MicroPython's sockets (plain and TLS) have readline, CPython's do not
            mp = hasattr(s, "readline")
            if self.scheme == "https":
                self._wait(s)  # CPython's handshake: its reads, by the deadline
                s = self._wrap_tls(s, not mp)  # MicroPython's: in the first _send, polled to it
        except BaseException:
            s.close()
            self._addr = None  # look the name up again next time: the address may have moved
            raise
        self._sock = s
        self._raw = raw if mp else None
        if mp:
            # Reads and writes are non-blocking and wait in poll, whose timeout
            # is in milliseconds: a socket timeout is in seconds, a new float
            # object on every read.
            raw.settimeout(0)
            self._poll = select.poll()
            self._poll.register(s, 1)  # select.POLLIN on every port
        self.connections += 1

    def _wrap_tls(self, s, handshake=True):
        from . import tls  # only when a URL needs it: an http-only board never loads it

        return tls.wrap(s, self.host, self.ca_file, self.insecure, handshake)

    def close(self):
        self._pos = self._fill = _MAX_LINE
        if self._sock is not None:
            try:
                self._sock.close()
            except OSError:
                pass
            self._sock = None
            self._poll = None

    # -- I/O that works on MicroPython sockets and CPython sockets alike ----
    def write(self, b):
        """Buffered send: the request head and the encoder's small chunks leave
        in whole segments of _SEND bytes (the last one shorter) instead of one
        packet per chunk: a 200x3 window's request is three writes, not four."""
        n = len(b)
        used = self._out_used
        if used + n <= _SEND:
            self._out[used : used + n] = b
            self._out_used = used + n
            return n
        k = _SEND - used  # the segment is filled from b and sent whole
        mv = memoryview(b)
        self._out[used:] = mv[:k]
        self._out_used = 0
        self._send(self._out)
        n -= k
        if n >= _SEND:
            self._send(mv[k:])
        else:
            self._out[:n] = mv[k:]
            self._out_used = n
        return len(b)

    def flush(self):
        if self._out_used:
            n = self._out_used
            self._out_used = 0
            self._send(self._out_mv[:n] if n < _SEND else self._out)

    def _send(self, b):
        s = self._sock
        if self._raw is not None:  # MicroPython: non-blocking, polled to the deadline
            n = len(b)
            mv = memoryview(b)
            done = 0
            p = self._poll
            try:
                while done < n:
                    k = s.write(mv[done:] if done else mv)  # pyright: ignore[reportOptionalMemberAccess] (connected)
                    if k is None:  # the socket is full, or TLS's handshake (the first write runs it) waits
                        left = time.ticks_diff(self._deadline, time.ticks_ms())  # after the write's own time
                        if left <= 0:
                            raise OSError(110)  # timed out
                        p.modify(s, 4)  # pyright: ignore[reportOptionalMemberAccess] select.POLLOUT: TLS polls its handshake's way
                        p.ipoll(left)  # pyright: ignore[reportOptionalMemberAccess]
                        p.modify(s, 1)  # pyright: ignore[reportOptionalMemberAccess]
                    else:
                        done += k
            except (OSError, ValueError) as e:  # mbedTLS: ValueError for a certificate
                if self.scheme == "https":
                    from . import tls

                    raise tls.failed(e)
                raise
        else:
            self._wait(s)
            s.sendall(b)  # pyright: ignore[reportOptionalMemberAccess]
        return len(b)

    def _wait(self, s):
        # What is left of this try becomes s's timeout: each blocking call
        # ends by the deadline, however the server spaces its bytes.
        left = time.ticks_diff(self._deadline, time.ticks_ms())
        if left <= 0:
            raise OSError(110)  # timed out
        s.settimeout(left / 1000)

    # Reading: what has arrived, by the deadline, into _out[_fill:].
    def _more(self):
        b = self._out
        pos = self._pos
        fill = self._fill
        at = self._pos = _MAX_LINE - (fill - pos)  # the unread bytes (a line's start) go just before _in
        for i in range(pos, fill):  # byte by byte, front to back: a slice would be a new object on each read
            b[at] = b[i]
            at += 1
        s = self._sock
        raw = self._raw
        if raw is None:  # CPython's sockets, plain and TLS
            self._wait(s)
            n = s.recv_into(self._in)  # pyright: ignore[reportOptionalMemberAccess, reportAttributeAccessIssue] (CPython)
        else:  # MicroPython's (non-blocking since _connect): what has arrived, else wait
            while True:
                left = time.ticks_diff(self._deadline, time.ticks_ms())
                if left <= 0:
                    raise OSError(110)  # timed out
                n = s.readinto(self._in)  # pyright: ignore[reportOptionalMemberAccess]
                if n is not None:
                    break
                self._poll.ipoll(left)  # pyright: ignore[reportOptionalMemberAccess] (connected)
        if not n:
            raise _Closed("connection closed by the server")
        self._answered = True  # a byte of a reply: the request is never re-sent now
        self._fill = _MAX_LINE + n

    def _line(self, cut=True):
        """The next line, without its line feed. One longer than _MAX_LINE is
        cut (its rest skipped, never held whole), or refused when not cut."""
        head = None
        while True:
            pos = self._pos
            fill = self._fill
            i = self._out.find(b"\n", pos, fill)
            if head is None and (fill if i < 0 else i) - pos > _MAX_LINE:
                if not cut:
                    raise ValueError("line too long")
                head = bytes(self._out_mv[pos : pos + _MAX_LINE])
            if i >= 0:
                self._pos = i + 1
                return bytes(self._out_mv[pos:i]) if head is None else head
            if head is not None:
                self._pos = fill  # skipped
            self._more()

    def _body(self, n, keep):
        """n body bytes (n < 0: up to the close); keep at most `keep` of them."""
        out = bytearray(keep if n < 0 else min(n, keep))  # one object, however many reads
        got = 0
        while n:
            pos = self._pos
            if pos == self._fill:
                try:
                    self._more()
                except _Closed:
                    if n > 0:
                        raise
                    return out[:got]
                continue
            k = self._fill - pos if n < 0 else min(n, self._fill - pos)
            m = min(k, len(out) - got)
            b = self._out
            for i in range(pos, pos + m):  # as in _more: no slice
                out[got] = b[i]
                got += 1
            self._pos = pos + k
            if n > 0:
                n -= k
        return out

    # -- one request ----------------------------------------------------------
    def _exchange(self, method, path, headers, length, write_body):
        self._answered = False
        self.retry_after_s = 0  # this reply's, not a previous one's
        self._out_used = 0
        # Line by line into the send buffer: a request string grown by += held
        # several ever longer copies of the head at once.
        self.write(
            (
                "%s %s%s HTTP/1.1\r\nHost: %s\r\nContent-Length: %d\r\nConnection: keep-alive\r\n"
                % (method, self.base_path, path, self._host_header, length)
            ).encode()
        )
        if type(headers) is bytes:  # the lines, formatted once (upload.send)
            self.write(headers)
        else:
            for k in headers:
                self.write(("%s: %s\r\n" % (k, headers[k])).encode())
        self.write(b"\r\n")
        if write_body is not None:
            write_body(self)
        self.flush()
        self._pos = self._fill = _MAX_LINE
        while True:  # a 1xx (100 Continue...) is a head with no body: the reply follows
            parts = self._line(False).split(None, 2)
            status = _number(parts[1], 10) if len(parts) > 1 and len(parts[1]) == 3 else 0
            if status < 100 or not parts[0].startswith(b"HTTP/1."):
                raise ValueError("not an HTTP response")
            length = -1
            chunked = False
            close = parts[0] == b"HTTP/1.0"
            n = 0
            while True:
                line = self._line()
                if line in (b"", b"\r"):
                    break
                n += 1
                if n > _MAX_HEADERS:
                    raise ValueError("too many header lines")
                name, _, value = line.partition(b":")
                name = name.strip().lower()
                value = value.strip()
                if name == b"content-length":
                    length = _number(value, 10)
                elif name == b"transfer-encoding" and b"chunked" in value.lower():
                    chunked = True
                elif name == b"connection":
                    close = value.lower() == b"close"
                elif name == b"retry-after" and value.isdigit():  # seconds; an HTTP date is ignored
                    self.retry_after_s = min(int(value), _MAX_RETRY_AFTER_S)
            if status >= 200:
                break
        if status == 204 or status == 304:  # no body, whatever its headers say (RFC 9112 6.3)
            body = b""
        elif chunked:
            body = b""
            while True:
                size = _number(self._line().split(b";")[0].strip(), 16)
                if size == 0:
                    while self._line() not in (b"", b"\r"):  # trailers
                        pass
                    break
                body += self._body(size, _MAX_BODY - len(body))
                self._line()
        else:
            body = self._body(length, _MAX_BODY)
            close = close or length < 0
        if close or self._pos < self._fill:  # bytes after the reply: never read as the next one
            self.close()
        return status, body

    def request(self, method, path, headers, length=0, write_body=None):
        """Send one request (headers: a dict, or their lines as bytes); returns
        (status, body: bytes or bytearray, at most 1 KB).
        Raises OSError (or ValueError for a garbled response) on failure,
        after closing the connection. A kept-alive connection that the
        server had closed is reopened once, transparently."""
        reused = self._sock is not None
        if reused:  # bytes or the end of a kept-alive connection waiting before a request is sent
            p = self._poll
            if p is None:  # CPython
                p = select.poll()
                p.register(self._sock, 1)
                reused = not p.poll(0)
            else:
                for _ in p.ipoll(0):  # ipoll: no list made
                    reused = False
            if not reused:
                self.close()  # what it sent (a late 408, a close) must never be read as this request's reply
        self._answered = False
        while True:
            # timeout_ms bounds each try whole (connect, send, the reply), however the server spaces its bytes
            self._deadline = time.ticks_add(time.ticks_ms(), self.timeout_ms)
            try:
                if self._sock is None:
                    self._connect()
                return self._exchange(method, path, headers, length, write_body)
            except (OSError, ValueError):
                self.close()
                # Only a kept-alive connection that died before any reply is
                # stale: try once more on a fresh one. A reply cut short is not
                # retried here; the caller keeps the message (RETRY).
                if not reused or self._answered:
                    raise
                reused = False


def _number(text, base):
    # int() alone also takes "-5", "+5", " 5" and "5_0"
    if not text or text.strip(_DIGITS[: 22 if base == 16 else 10]):
        raise ValueError("not a number: %r" % text[:20])
    return int(text, base)


def _reason(body):
    # The first line, at most 200 characters of printable ASCII: it goes to
    # the serial log, and MicroPython's decode does not check UTF-8
    # (b"\xc0\x80" passes as is). Found by index, not strip/split: those copy
    # the whole (1 KB) body, which a tight heap may not have.
    n = len(body) if body else 0
    i = 0
    while i < n and body[i] in b" \t\r\n":
        i += 1
    end = body.find(b"\n", i) if n else -1
    end = n if end < 0 else end
    line = bytearray(body[i : min(end, i + 200)].rstrip() if n else b"")
    for k in range(len(line)):
        if not 31 < line[k] < 127:
            line[k] = 63  # "?"
    return bytes(line).decode()


# A body is what post_message sends, and what store.Store.put queues: a
# message.Message (a window, encoded and signed as it is written) or a
# store.Entry (one read back from the queue on flash). A body has
#   content_type  the Content-Type header's value ("application/cbor", ...)
#   length        its exact size in bytes, known before the first byte is sent
#                 (reading it may do the work: a Message signs in a first pass,
#                 and raises ValueError there for a window it cannot carry)
#   write(sink)   calls sink.write(b) with its bytes in order, in chunks of any
#                 size, and returns how many it wrote: length. It may be called
#                 again (a request retried on a fresh connection) and writes
#                 the same bytes each time.
# A Message also has .signature (the signature is inside an Entry's bytes).


def post_message(client, path, headers, body):
    """POST a body (see above); returns an Outcome, never raises for the network.
    headers: a dict (sent with the body's Content-Type), or the header lines
    as bytes, the body's Content-Type among them, sent as they are."""
    h = headers
    if type(h) is not bytes:
        h = dict(headers)
        h["Content-Type"] = body.content_type
    # Outside the try: an encoder error (a NaN sample, say) is the caller's,
    # not the network's, and must not come back as RETRY.
    length = body.length  # a Message signs in a first pass: Content-Length before the body
    try:
        status, reply = client.request("POST", path, h, length, body.write)
    except (OSError, ValueError) as e:
        return Outcome(RETRY, 0, _describe(e))
    if 200 <= status < 300:
        return Outcome(ACCEPTED, status, _reason(reply))
    if status == 409:
        # x-disallow-duplicates: the server already has these exact bytes (a
        # reply lost after it stored them): for the sender that is delivered.
        return Outcome(ACCEPTED, status, "already stored: " + _reason(reply))
    if 400 <= status < 500 and status not in (408, 429):  # timeout, too many requests: try again
        return Outcome(REJECTED, status, _reason(reply) or "HTTP %d" % status)
    return Outcome(RETRY, status, _reason(reply) or "HTTP %d" % status, client.retry_after_s * 1000)


def _describe(e):
    # One line that says what happened, without echoing request data.
    if isinstance(e, _Closed):
        return "connection closed by the server"
    if isinstance(e, OSError):
        code = e.args[0] if e.args and isinstance(e.args[0], int) else None
        names = {
            110: "timed out",
            11: "timed out",
            111: "connection refused",
            104: "connection reset",
            113: "no route to host",
        }
        text = str(e) if code is None else names.get(code, "network error %d" % code)
        if "timed out" in text or "ETIMEDOUT" in text:
            return "timed out"
        return text.split("\n")[0][:120] or e.__class__.__name__
    return "bad response: %s" % e
