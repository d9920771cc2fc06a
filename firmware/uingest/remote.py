# Remote management (Edge Impulse's WebSocket protocol, version 3): Studio, or
# `uingest serve`, asks the board for a sample over a socket the board keeps
# open; the board records it through the app's own path (sampler, window in
# RAM or on flash, signed message, post, queue on RETRY) and reports each step
# on the socket. The socket carries no sensor data. Loaded by the app only
# when config "mode" is "remote" or "both": a stream-only board never imports
# it, nor uingest.ws.
#
# The session is JSON text, or with config remote_format "cbor" CBOR in
# binary frames (the protocol's encoding is the hello's, and the server
# answers in it): uingest.remotecbor, loaded only then, encodes the board's
# messages (written here as JSON text, one home each) and decodes the
# server's.
import json
import time

from micropython import const

from . import http, ws

_PROGRESS_MS = const(1000)  # a long recording reports its progress this often
_LONG_MS = const(3000)  # recordings longer than this report progress

# the session's state: no socket, hello sent, hello accepted
CLOSED = const(0)
HELLO = const(1)
OPEN = const(2)


class Remote:
    """The board's end of a remote management session, driven by the app:
    serve() between windows (and tick() from inside them) polls the socket
    and answers; a sample request it accepts waits in .pending until the
    app's loop calls run(). Heap is the budget (README): few methods, and
    the messages are JSON text made once, not dicts."""

    def __init__(self, app, cfg, rows, to_flash):
        self.app = app
        # 768: a sample request with a 128-byte label escaped to \uXXXX (~650 bytes) fits; a bigger message
        # closes the session (it reconnects). 1024 made the whole app's smallest heap 2K larger (bench)
        self.ws = ws.Client(cfg["remote_url"], cfg["timeout_ms"], cfg["ca_file"], cfg["insecure"], 768)
        # send(text): the JSON texts below as they are, or in a CBOR session re-encoded; _cbor: uingest.remotecbor
        # in a CBOR session, else None
        self.send, self._cbor, self.sensor, self.max_rows = ws.cold("remotecold", "setup", self, (cfg, rows, to_flash))
        self.state = CLOSED
        # an accepted request: (label, category, hmac key, rows); () while it
        # is recorded and uploaded (busy); None: none
        self.pending = None
        self._t0 = self._said = self._ms = 0
        self._why = ""  # the last reason said for being closed

    def serve(self, reconnect=True):
        """Never blocks longer than one connect: reconnect when due (with the
        backoff of uingest.ws; not with reconnect false, inside a window),
        say hello, answer what has come (at most 4 messages: a flood cannot
        hold the loop)."""
        c = self.ws
        if c.closed and reconnect and c.ensure():
            self.state = HELLO
            try:
                ws.cold("remotecold", "hello", self, None)
            except MemoryError:  # loading it, or encoding the hello: closed (one line below), tried again later
                c.close("no room for the hello")
        for _ in range(4):
            m = c.poll()
            if m is None:
                break
            self._message(m)
        if c.closed and (self.state != CLOSED or c.reason != self._why):  # says once why it is closed
            self.state = CLOSED
            self._why = c.reason
            self.app.log("remote: closed: %s; again in ~%d s" % (c.reason, c.backoff_ms // 2000))

    def _message(self, m):
        kind, data = m
        cb = self._cbor if kind == ws.BINARY else None  # a CBOR session's messages are binary frames
        try:
            if cb is not None:
                msg = cb.loads(data)
            else:
                try:
                    msg = json.loads(data)  # MicroPython's json reads a memoryview in place
                except TypeError:  # CPython's does not
                    msg = json.loads(bytes(data))
        except ValueError as e:
            if cb is not None:  # the session is out of step: closed (one line, by serve), it reconnects
                return self.ws.close("a malformed CBOR message: %s" % e)
            msg = None
        req = msg.get("sample") if isinstance(msg, dict) else None
        if isinstance(msg, dict) and "hello" in msg and self.state == HELLO:
            if msg["hello"] is True:
                self.state = OPEN
                self._why = ""  # the next failure is news, even the same as before
                self.app.log("remote: session open, sensor %r" % self.sensor)
            else:
                self.state = CLOSED
                ws.cold("remotecold", "refused", self, msg)
            return
        if not isinstance(req, dict) or self.state != OPEN:
            return  # snapshot streaming, model updates, newer fields: not for this board
        if self.pending is not None:  # busy; here: a request during a recording loads no module
            self.app.log("remote: sample refused: busy")
            self.send('{"sample":false,"error":"busy: a sample is being recorded"}')
            return
        self.pending = ws.cold("remotereq", "request", self, req)  # its checks, and the reply

    def run(self):
        """Record the pending request (through app.record), reporting each
        step; the socket is served from inside the recording (tick)."""
        req = self.pending
        if not req:
            return
        label, category, key, rows = req
        self.pending = ()
        try:
            self.send('{"sampleStarted":true}')
            ms = int(rows * 1000 / self.app.cfg["sample_rate_hz"])
            self._ms = ms if ms > _LONG_MS else 0  # 0: too short for progress reports
            self._t0 = self._said = time.ticks_ms()
            try:
                out = self.app.record(
                    label, category, key, rows, self.tick, lambda: self.send('{"sampleUploading":true}')
                )
            except OSError as e:
                out = "the sensor or the flash failed (%s)" % e
            self._ms = 0
            self.serve()  # what came during the upload: a request now is busy
            # None: queued behind older windows; sent with them when the queue is empty now
            if (
                isinstance(out, http.Outcome)
                and out.kind == http.ACCEPTED
                or out is None
                and not len(self.app.outbox.store)
            ):
                self.send('{"sampleFinished":true}')
                self.app.log("remote: sample %r finished" % label)
            else:  # the error: in the cold path
                ws.cold("remotecold", "finished", self, (label, out))
        finally:
            self.pending = None

    def tick(self):
        """Called by the sampler between samples (every 256, or per chunk
        recorded to flash): feeds the watchdog, reports a long recording's
        progress, answers the socket (a request now is busy)."""
        self.app.feed()
        if self._ms:
            t = time.ticks_ms()
            if time.ticks_diff(t, self._said) >= _PROGRESS_MS:
                self._said = t
                done = time.ticks_diff(t, self._t0) * 100 // self._ms
                self.send('{"sampleReading":true,"progressPercentage":%d}' % min(99, done))
        self.serve(False)

    def status(self):
        """For the app's status line: the session, and the last window's
        sampler figures (the socket is served between samples: it must not
        make them late)."""
        sm = self.app.recorder.sampler
        return "remote=%s late_max=%dus missed=%d" % (
            ("closed(%s)" % self.ws.reason[:40], "hello", "open")[self.state],
            sm.late_max_us,
            sm.missed,
        )
