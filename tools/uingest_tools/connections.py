"""How `uingest serve` treats its connections: slow and idle clients, the connection cap, the open-file limit.

uvicorn closes an idle kept-alive connection, and nothing else: a client that connects and sends nothing, or
sends half a request line, or drips its headers a byte at a time, or stops halfway through its body, holds
its connection (and a file descriptor) for ever. A few thousand of them and the server cannot accept a
device. Here each connection is in one phase at a time, each phase has a deadline, and one timer per
connection enforces it (moved lazily: a byte of body only writes a number, the timer finds the new deadline
when it fires):

- request: the request line must be complete ``request`` seconds after the connection opens, or after
  the first byte of the next request on a kept-alive connection;
- headers: the headers must be complete ``headers`` seconds after the request line (a deadline for all of
  them, so dripping does not extend it);
- body: at most ``body`` seconds between two pieces of the body (a gap, as nginx's client_body_timeout:
  a large window on a slow link takes as long as it takes while it keeps coming; not counted while the
  server itself has paused reading);
- idle: a kept-alive connection with no new request for ``idle`` seconds is closed, as any HTTP server does.

While the application works on a request (after the body, until the reply is sent) no client deadline runs.
A client that had sent part of a request gets a 408 with the reason before the close; a silent or idle one is
just closed. Closes are counted and logged in one line at most once a minute.

A request line and headers over ``HEAD_BYTES`` get 431 (414 when the request line alone is over) with the
reason; what the client still sends is then read and dropped until it closes or pauses ``LINGER_S`` (for at
most the header deadline), since closing with it unread resets the connection and the client never reads the
reply.

The cap: at most ``max_connections`` connections. A new connection over the cap closes the connection idle
the longest, else the one that has been sending its request line or headers the longest (a slow client),
never one sending a body or waiting for its reply; when there is none, the new connection gets 503 with
Retry-After and is closed. ``raise_open_file_limit`` raises the soft open-file limit to the hard one at start,
and ``default_max_connections`` leaves room under it for the files the server writes; ``accept()`` failing
for lack of descriptors is one line a minute (asyncio would log a traceback for each).
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import math
import time

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

log = logging.getLogger("uingest.serve")

REPORT_EVERY_S = 60.0
FILES_KEPT_FOR_THE_SERVER = 64  # descriptors left for the data folder, spools, the index, logs
MOST_CONNECTIONS = 10000  # the default cap when the open-file limit is higher still
LINGER_S = 1.0  # a refused client that sends nothing for this long is closed (nginx's lingering_timeout)
HEAD_BYTES = 16 * 1024  # the most a request line and its headers may take (h11's own buffer limit, Node's)

# phases
_REQUEST, _HEADERS, _BODY, _APP, _IDLE = "request", "headers", "body", "app", "idle"
_DRAIN = "drain"  # refused, its reply sent: what the client still sends is read and dropped until it closes


@dataclasses.dataclass(frozen=True)
class Limits:
    """The deadlines (seconds) and the connection cap; what `uingest serve --help` names."""

    request: float = 10.0
    headers: float = 10.0
    body: float = 30.0
    idle: float = 60.0
    max_connections: int = MOST_CONNECTIONS

    def __post_init__(self):
        for name in ("request", "headers", "body", "idle"):
            if not getattr(self, name) > 0:
                raise ValueError("%s timeout must be positive" % name)
        if self.max_connections < 1:
            raise ValueError("max_connections must be at least 1")


# what each phase's expiry is called in the log line, and the option that sets it
_EXPIRED = {
    "silent": "sent nothing within %gs (--request-timeout)",
    _REQUEST: "sent no complete request line within %gs (--request-timeout)",
    _HEADERS: "sent no complete headers within %gs (--header-timeout)",
    _BODY: "paused their body over %gs (--body-timeout)",
}
_LIMIT_FOR = {"silent": "request", _REQUEST: "request", _HEADERS: "headers", _BODY: "body"}


class _Report:
    """Counts of closed and refused connections, logged in one line at most once a minute."""

    def __init__(self, limits: Limits):
        self.limits = limits
        self.counts: dict[str, int] = {}
        self.last = -math.inf
        self.pending = None

    def note(self, what: str, loop: asyncio.AbstractEventLoop) -> None:
        self.counts[what] = self.counts.get(what, 0) + 1
        wait = self.last + REPORT_EVERY_S - time.monotonic()
        if wait <= 0:
            self.flush()
        elif self.pending is None:
            self.pending = loop.call_later(wait, self.flush)

    def flush(self) -> None:
        self.pending = None
        if not self.counts:
            return
        parts = []
        for what, n in sorted(self.counts.items()):
            if what == "refused":
                text = "refused over the cap of %d connections (--max-connections)" % self.limits.max_connections
            elif what == "evicted":
                text = "closed to make room under --max-connections %d" % self.limits.max_connections
            elif what == "head":
                text = "sent a request line or headers over %d bytes (414 or 431)" % HEAD_BYTES
            else:
                text = _EXPIRED[what] % getattr(self.limits, _LIMIT_FOR[what])
            parts.append("%d %s" % (n, text))
        log.warning("slow or surplus connections closed: %s", "; ".join(parts))
        self.counts = {}
        self.last = time.monotonic()


class GuardedHttpProtocol(HttpToolsProtocol):
    """uvicorn's HTTP/1.1 protocol (httptools, a C parser) with the deadlines, the head limit and the cap above.
    Made by guarded_protocol()."""

    limits = Limits()
    report: _Report

    def connection_made(self, transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._timer = None
        self._deadline = math.inf
        self._got_bytes = False  # of the current request
        self._line_done = False
        self._running = None  # the request cycle being received or answered (self.cycle: the last one parsed)
        self._head_seen = 0  # bytes of the current request's line and headers so far
        self._line_bytes = -1  # the request line's length once its end is seen
        self._head_tail = b""  # the last bytes of them, where the blank line ending them may begin
        self._since = self.loop.time()  # when the current phase began
        self._enter(_REQUEST, self.limits.request)
        if len(self.connections) > self.limits.max_connections and not self._make_room():
            self._refuse()

    def _start_asgi_task(self, cycle, app) -> None:
        self._running = cycle
        super()._start_asgi_task(cycle, app)

    # --- phases and the timer

    def _enter(self, phase: str, seconds: float) -> None:
        self._phase = phase
        self._since = now = self.loop.time()
        self._move_deadline(now + seconds if seconds else math.inf)

    def _move_deadline(self, deadline: float) -> None:
        self._deadline = deadline
        if deadline == math.inf:
            return  # a running timer finds this when it fires
        if self._timer is None or self._timer.when() > deadline:
            if self._timer is not None:
                self._timer.cancel()
            self._timer = self.loop.call_at(deadline, self._check_deadline)

    def _check_deadline(self) -> None:
        self._timer = None
        if self.transport.is_closing() or self._deadline == math.inf:
            return
        if self.loop.time() < self._deadline:
            self._timer = self.loop.call_at(self._deadline, self._check_deadline)
        elif self._phase == _BODY and self.flow.read_paused:
            self._move_deadline(self.loop.time() + self.limits.body)  # we stopped reading, not the client
        else:
            self._expire()

    def _expire(self) -> None:
        phase = self._phase
        if phase in (_IDLE, _DRAIN):
            self._close()
            return
        if phase == _REQUEST and not self._got_bytes:
            self.report.note("silent", self.loop)
            self._close()
            return
        self.report.note(phase, self.loop)
        reason = _EXPIRED[phase] % getattr(self.limits, _LIMIT_FOR[phase])
        reply = "request timeout: " + reason.replace("sent", "you sent").replace("paused their", "your")
        if phase in (_REQUEST, _HEADERS) or not self._running.response_started:
            # mid-body too, before the application answered: it then sees a disconnect and stores nothing
            self._reply_and_close(408, "Request Timeout", reply)
        else:
            self._close()

    def _close(self) -> None:
        self.transport.close()

    def _reply_and_close(self, status: int, phrase: str, text: str, extra: bytes = b"") -> None:
        body = text.encode() + b"\n"
        self.transport.write(
            b"HTTP/1.1 %d %s\r\ncontent-type: text/plain; charset=utf-8\r\nconnection: close\r\n%s"
            b"content-length: %d\r\n\r\n%s" % (status, phrase.encode(), extra, len(body), body)
        )
        self.transport.close()

    # --- the cap

    def _make_room(self) -> bool:
        """Close one connection that can go (idle the longest, else the slowest request); False if none."""
        best = None
        for other in self.connections:
            phase = getattr(other, "_phase", None)
            if other is self or phase not in (_DRAIN, _IDLE, _REQUEST, _HEADERS) or other.transport.is_closing():
                continue
            rank = (phase not in (_DRAIN, _IDLE), other._since)  # refused and idle ones first, then the oldest
            if best is None or rank < best[0]:
                best = (rank, other)
        if best is None:
            return False
        self.report.note("evicted", self.loop)
        best[1]._close()
        best[1].connections.discard(best[1])  # gone now, not when the loop gets to connection_lost
        return True

    def _refuse(self) -> None:
        self.report.note("refused", self.loop)
        self._reply_and_close(
            503,
            "Service Unavailable",
            "server busy: %d connections open, the most it takes (--max-connections): retry shortly"
            % self.limits.max_connections,
            b"retry-after: 1\r\n",
        )

    # --- what moves a connection from phase to phase

    # --- a request line or headers too large

    def _head_too_large(self, data: bytes) -> bool:
        """Count data's part of the current request's line and headers: over HEAD_BYTES, refuse the request
        (414 when its line alone is, else 431) and True. Before h11 or httptools see data, so that their own
        limit (a 400 and a close with the rest unread: a reset) never comes first."""
        tail = self._head_tail
        joined = tail + data
        ends = [  # where the blank line ending them ends, in data
            i + len(blank)
            for blank in (b"\n\r\n", b"\n\n")
            if (i := joined.find(blank, max(0, len(tail) - len(blank) + 1))) >= 0
        ]
        part = min(ends) - len(tail) if ends else len(data)
        if self._line_bytes < 0 and (i := data.find(b"\n", 0, part)) >= 0:
            self._line_bytes = self._head_seen + i
        self._head_seen += part
        self._head_tail = joined[-2:]
        if self._head_seen <= HEAD_BYTES:
            return False
        self.report.note("head", self.loop)
        if not 0 <= self._line_bytes <= HEAD_BYTES:
            status, phrase, what = 414, "URI Too Long", "request line"
        else:
            status, phrase, what = 431, "Request Header Fields Too Large", "request line and headers"
        body = ("%s over %d bytes: refused" % (what, HEAD_BYTES)).encode() + b"\n"
        self.transport.write(
            b"HTTP/1.1 %d %s\r\ncontent-type: text/plain; charset=utf-8\r\nconnection: close\r\n"
            b"content-length: %d\r\n\r\n%s" % (status, phrase.encode(), len(body), body)
        )
        # a close with the rest of the request unread would be a reset, losing the reply on its way: end
        # our side and read what comes until the client closes, for as long as its headers could take
        if self.transport.can_write_eof():
            self.transport.write_eof()
        self._drain_end = self.loop.time() + self.limits.headers
        self._enter(_DRAIN, LINGER_S)
        return True

    def data_received(self, data: bytes) -> None:
        if self.transport.is_closing():
            return  # refused, timed out or too large: what follows is not read
        phase = self._phase
        if phase == _DRAIN:  # dropped; closed once the client pauses (TLS cannot half-close: it may wait for it)
            self._deadline = min(self.loop.time() + LINGER_S, self._drain_end)
            return
        if phase in (_IDLE, _REQUEST) and not self._got_bytes:
            self._got_bytes = True
            if phase == _IDLE:  # the next request on a kept-alive connection
                self._enter(_REQUEST, self.limits.request)
        if self._phase == _REQUEST and not self._line_done and b"\n" in data:
            self._line_done = True
            self._enter(_HEADERS, self.limits.headers)
        elif self._phase == _BODY:
            self._deadline = self.loop.time() + self.limits.body
        if self._phase in (_REQUEST, _HEADERS) and self._head_too_large(data):
            return
        running = self._running
        super().data_received(data)
        if self._phase in (_REQUEST, _HEADERS) and self._running is not running:
            self._headers_done()
        if self._phase == _BODY and not self._running.more_body:
            self._enter(_APP, 0)

    def _headers_done(self) -> None:
        if self._running.more_body:
            self._enter(_BODY, self.limits.body)
        else:
            self._enter(_APP, 0)

    def on_response_complete(self) -> None:
        running = self._running
        super().on_response_complete()  # starts the next pipelined request, parsed already, if there is one
        if self.transport.is_closing():
            return
        self._got_bytes = self._line_done = False
        self._head_seen, self._line_bytes, self._head_tail = 0, -1, b""
        if self._running is not running:
            self._got_bytes = self._line_done = True
            self._headers_done()
        else:
            self._enter(_IDLE, self.limits.idle)


def guarded_protocol(limits: Limits) -> type[GuardedHttpProtocol]:
    """The protocol class for uvicorn.Config(http=...), bound to limits (one report per server)."""
    return type("GuardedHttpProtocol", (GuardedHttpProtocol,), {"limits": limits, "report": _Report(limits)})


def raise_open_file_limit() -> tuple[int, int]:
    """Raise this process's soft open-file limit to its hard limit: (before, after). Unchanged where the
    platform has no such limit (before == after)."""
    try:
        import resource
    except ImportError:  # Windows
        return (0, 0)
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = hard if hard != resource.RLIM_INFINITY else max(soft, 1 << 20)
    if target > soft:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        except (ValueError, OSError):
            return (soft, soft)
        return (soft, target)
    return (soft, soft)


def default_max_connections(open_file_limit: int) -> int:
    """The cap that leaves FILES_KEPT_FOR_THE_SERVER descriptors free, at most MOST_CONNECTIONS."""
    if open_file_limit <= 0:
        return MOST_CONNECTIONS
    return max(1, min(MOST_CONNECTIONS, open_file_limit - FILES_KEPT_FOR_THE_SERVER))


class AcceptErrors:
    """A loop exception handler: accept() out of descriptors is one line a minute, not a traceback each;
    anything else goes to the handler there was before."""

    def __init__(self, loop: asyncio.AbstractEventLoop, limits: Limits):
        self.previous = loop.get_exception_handler()
        self.limits = limits
        self.last = -math.inf
        self.missed = 0

    def __call__(self, loop, context) -> None:
        if context.get("message") == "socket.accept() out of system resource":
            self.missed += 1
            if time.monotonic() - self.last >= REPORT_EVERY_S:
                log.warning(
                    "cannot accept connections: %s%s; raise `ulimit -n` or lower --max-connections (now %d)",
                    context.get("exception") or "out of open files",
                    " (%d times since the last line)" % self.missed if self.missed > 1 else "",
                    self.limits.max_connections,
                )
                self.last, self.missed = time.monotonic(), 0
            return
        exc = context.get("exception")
        if isinstance(exc, ValueError) and "Invalid file descriptor: -1" in str(exc):
            # asyncio's accept() retry, a second after running out of descriptors, finding the listening socket
            # closed by a shutdown meanwhile: nothing is lost, nothing to say
            return
        if self.previous is not None:
            self.previous(loop, context)
        else:
            loop.default_exception_handler(context)
