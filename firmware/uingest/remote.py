# Remote management (Edge Impulse's WebSocket protocol, version 3): Studio, or
# `uingest serve`, asks the board for a sample over a socket the board keeps
# open; the board records it through the app's own path (sampler, window in
# RAM or on flash, signed message, post, queue on RETRY) and reports each step
# on the socket. The socket carries no sensor data. Loaded by the app only
# when config "mode" is "remote" or "both": a stream-only board never imports
# it, nor uingest.ws.
#
# The hello is JSON or CBOR (config "remote_format"), and the session speaks
# it; the server's messages are parsed as JSON text only (MicroPython's json):
# a CBOR session's replies from the server are not understood (see README).
import json
import time

from micropython import const

from . import http, ws
from .ingest import DATA_CATEGORIES, check_label

_PROGRESS_MS = const(1000)  # a long recording reports its progress this often
_LONG_MS = const(3000)  # recordings longer than this report progress
_MESSAGES_PER_SERVE = const(4)  # a flood of server messages cannot hold the loop

# the session's state: no socket, hello sent, hello accepted
CLOSED = const(0)
HELLO = const(1)
OPEN = const(2)
_STATES = ("closed", "hello", "open")

# names for the axes' kinds, in Edge Impulse's words ("Accelerometer + gyroscope")
_KINDS = (("acc", "Accelerometer"), ("gyr", "gyroscope"), ("audio", "Microphone"))


def sensor_name(sensors):
    """The one sensor entry a board offers: its axes' kinds (accX.. and gyrX..
    give "Accelerometer + gyroscope"), or the axis names joined."""
    out = []
    for name, _ in sensors:
        kind = None
        for prefix, k in _KINDS:
            if name.startswith(prefix):
                kind = k
        if kind is None:
            return " + ".join(n for n, _ in sensors)
        if kind not in out:
            out.append(kind)
    return " + ".join(out)


class Remote:
    """The board's end of a remote management session, driven by the app:
    serve() between windows (and from the sampler's tick() inside them) polls
    the socket and answers; a sample request it accepts waits in .pending
    until the app's loop calls run()."""

    def __init__(self, app, cfg, rows, to_flash):
        self.app = app
        self.log = app.log
        self.url = cfg["remote_url"]
        self.fmt = cfg["remote_format"]
        self.ws = ws.Client(self.url, cfg["timeout_ms"], cfg["ca_file"], cfg["insecure"])
        self.rate = cfg["sample_rate_hz"]
        if to_flash:  # the longest a recording on flash may be: what the queue's budget holds
            if cfg["format"] == "cbor":
                from .cbor import max_row_bytes
            else:
                from .jsonw import max_row_bytes
            s = app.hw.sensor
            rows = (cfg["queue_budget_bytes"] - 2048) // max_row_bytes(len(s.sensors), getattr(s, "typecode", "f"))
        self.max_rows = rows  # in RAM: the window's
        self.category = cfg["category"]
        self.hmac_key = cfg["hmac_key"]
        self.sensor = sensor_name(app.hw.sensor.sensors)
        self.device_id = app.device_name or _unique_id()
        self._hello = {
            "hello": {
                "version": 3,
                "apiKey": cfg["api_key"],
                "deviceId": self.device_id,
                "deviceType": app.device_type,
                "connection": "ip",
                "sensors": [
                    {
                        "name": self.sensor,
                        "maxSampleLengthS": rows // self.rate if rows >= self.rate else rows / self.rate,
                        "frequencies": [self.rate],
                    }
                ],
                "supportsSnapshotStreaming": False,
            }
        }
        self.state = CLOSED
        self.pending = None  # an accepted request: (label, category, hmac key, rows)
        self.busy = False  # a request is being recorded or uploaded
        self.ignored = 0  # server messages not understood
        self._long = False
        self._t0 = self._said = self._ms = 0

    # -- the socket -------------------------------------------------------------------------
    def _send(self, obj):
        if self.fmt == "cbor":
            from . import cbor

            return self.ws.send(cbor.dumps(obj), ws.BINARY)
        return self.ws.send(json.dumps(obj))

    def serve(self, reconnect=True):
        """Never blocks longer than one connect: reconnect when due (with the
        backoff of uingest.ws; not with reconnect false, inside a window),
        say hello, answer what has come."""
        c = self.ws
        if c.closed:
            self._closed()
            if not reconnect or not c.ensure():
                return
            self.state = HELLO
            if not self._send(self._hello):
                return self._closed()
        for _ in range(_MESSAGES_PER_SERVE):
            m = c.poll()
            if m is None:
                break
            self._message(m[1])
        self._closed()

    def _closed(self):
        # says once that the session ended, and why
        if self.ws.closed and self.state != CLOSED:
            self.state = CLOSED
            self.log("remote: closed: %s; reconnecting in about %d s" % (self.ws.reason, self.ws.backoff_ms // 2000))

    def _message(self, data):
        try:
            try:
                msg = json.loads(data)  # MicroPython's json reads a memoryview in place
            except TypeError:  # CPython's does not
                msg = json.loads(bytes(data))
        except ValueError:
            msg = None
        if not isinstance(msg, dict):
            self.ignored += 1
            return
        if "hello" in msg and self.state == HELLO:
            if msg["hello"] is True:
                self.state = OPEN
                self.log("remote: session open at %s as %s (sensor %r)" % (self.url, self.device_id, self.sensor))
            else:  # one line; the server closes, and the next try waits longer each time
                self.state = CLOSED
                self.ws.close("hello refused")
                self.log(
                    "remote: hello refused: %s; trying again in about %d s"
                    % (_printable(msg.get("err")), self.ws.backoff_ms // 2000)
                )
        elif isinstance(msg.get("sample"), dict) and self.state == OPEN:
            self._request(msg["sample"])
        else:
            self.ignored += 1  # snapshot streaming, model updates, newer fields: not for this board

    # -- a sample request -------------------------------------------------------------------
    def _refuse(self, why):
        self.log("remote: sample refused: %s" % why)
        self._send({"sample": False, "error": why})

    def _request(self, req):
        if self.busy or self.pending is not None:
            return self._refuse("busy: a sample is being recorded")
        sensor = req.get("sensor")
        if sensor is not None and sensor != self.sensor:
            return self._refuse("unknown sensor %s: this board has %r" % (_printable(sensor), self.sensor))
        label = req.get("label")
        try:
            check_label(label)
        except ValueError as e:
            return self._refuse(str(e))
        length = req.get("length")
        interval = req.get("interval")
        if not (_positive(length) and _positive(interval)):
            return self._refuse("length and interval: expected positive numbers of milliseconds")
        path = req.get("path") or "/api/%s/data" % self.category
        category = path[5:-5] if path.startswith("/api/") and path.endswith("/data") else None
        if category not in DATA_CATEGORIES:
            return self._refuse("path: expected /api/<%s>/data" % "|".join(DATA_CATEGORIES))
        key = req.get("hmacKey") or self.hmac_key
        if key is not None and not isinstance(key, str):
            return self._refuse("hmacKey: expected a string")
        rows = int(length * self.rate / 1000 + 0.5)
        if rows < 1:
            return self._refuse("length: %s ms is not one sample at %s Hz" % (length, self.rate))
        if rows > self.max_rows:
            return self._refuse(
                "too long: %s ms asked, this board holds at most %d ms" % (length, self.max_rows * 1000 // self.rate)
            )
        self.pending = (label, category, key, rows)
        self._send({"sample": True})
        # the sensor samples at its configured rate only: the nearest one to any asked
        self.log(
            "remote: sample %r of %s ms for %s accepted, at %s Hz (%s Hz asked)"
            % (label, length, category, self.rate, _hz(interval))
        )

    def run(self):
        """Record the pending request (through app.record), reporting each
        step; the socket is served from inside the recording (tick)."""
        label, category, key, rows = self.pending
        self.pending = None
        self.busy = True
        try:
            self._send({"sampleStarted": True})
            self._ms = int(rows * 1000 / self.rate) or 1
            self._long = self._ms > _LONG_MS
            self._t0 = self._said = time.ticks_ms()
            try:
                out = self.app.record(label, category, key, rows, self.tick, self._uploading)
            except OSError as e:
                out = "the sensor or the flash failed (%s)" % _errno(e)
            self._long = False
            self.serve()  # what came during the upload: a request now is busy
            if isinstance(out, str):
                why = "not sent: " + out
            elif out is None and len(self.app.outbox.store):
                why = "queued on the board (the service is unreachable now): it is sent when it is back"
            elif out is None or out.kind == http.ACCEPTED:  # None: queued behind older windows, all sent now
                self._send({"sampleFinished": True})
                self.log("remote: sample %r finished" % label)
                return
            elif out.kind == http.RETRY:
                why = "queued on the board, the upload failed: %s" % out.detail
            else:
                why = "rejected by the ingestion service (%d): %s" % (out.status, out.detail)
            self.log("remote: sample %r: %s" % (label, why))
            self._send({"sample": False, "error": why})
        finally:
            self.busy = False

    def _uploading(self):
        self._send({"sampleUploading": True})

    def tick(self):
        """Called by the sampler between samples (every 256, or per chunk
        recorded to flash): feeds the watchdog, reports a long recording's
        progress, answers the socket (a request now is busy)."""
        self.app.feed()
        if self._long:
            t = time.ticks_ms()
            if time.ticks_diff(t, self._said) >= _PROGRESS_MS:
                self._said = t
                done = time.ticks_diff(t, self._t0) * 100 // self._ms
                self._send({"sampleReading": True, "progressPercentage": min(99, done)})
        self.serve(False)

    def status(self):
        """For the app's status line."""
        s = "remote=" + _STATES[self.state]
        if self.state == CLOSED:
            s += "(%s)" % self.ws.reason[:40]
        return s


def _positive(v):
    return isinstance(v, (int, float)) and not isinstance(v, bool) and v > 0


def _hz(interval_ms):
    return "%g" % (1000 / interval_ms)


def _printable(v):
    # a server's text goes to the log: one short line of printable ASCII
    return "".join(c if " " <= c <= "~" else "?" for c in str(v)[:80])


def _errno(e):
    return "errno %d" % e.args[0] if e.args and isinstance(e.args[0], int) else str(e)[:80]


def _unique_id():
    # the deviceId when there is neither a configured device_name nor a MAC
    try:
        from binascii import hexlify

        import machine

        return hexlify(machine.unique_id(), ":").decode()
    except (ImportError, AttributeError, TypeError, OSError):
        return "uingest-board"
