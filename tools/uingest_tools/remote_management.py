"""Remote management in `uingest serve`: boards (and Edge Impulse's own clients) keep a WebSocket open to
the collector, and a script or the dashboard starts a recording on one of them through a Studio-compatible
HTTP API. The protocol is Edge Impulse's (device speaks first with a hello; the server sends sample
requests; the device answers each with its progress; the sample itself goes through the ingestion API).

The WebSocket side is its own server (the ``websockets`` package's asyncio server) on its own port
(``--remote-port``, default 4820), started in uvicorn's event loop by serve._Server. Why not uvicorn's
WebSocket support on the HTTP port: the HTTP side's connection deadlines (a request line within seconds,
a kept-alive connection closed when idle) and its connection cap are made for requests and replies, while
a remote management socket is idle for hours by design; Edge Impulse serves the two on separate hosts too
(ingestion.edgeimpulse.com, remote-mgmt.edgeimpulse.com). Its own server gives it its own bounds:

- ``MAX_MESSAGE`` per message (fragments reassembled up to it), ``MAX_QUEUE`` messages waiting to be read,
  ``MAX_SESSIONS`` open sockets, a hello within ``HELLO_TIMEOUT``; a peer that stops answering pings for
  ``PING_TIMEOUT`` is dropped; one that sends faster than it reads our replies (a flood of pings) is cut
  when ``WRITE_BOUND`` bytes wait for it. Frames the RFC forbids (unknown opcodes, unmasked client frames,
  oversize lengths, bad UTF-8) close the socket. Each of these is one log line; nothing else is kept.
- No permessage-deflate (boards do not offer it; nothing to inflate).

Sessions: the first message is the hello, JSON in a text frame or CBOR in a binary one; that encoding is
the session's (our messages go out in it). The hello's ``apiKey`` must be the server's API key (unless
--no-auth); a refused hello gets ``{"hello": false, "err": ...}`` and the socket is closed. One session
per ``deviceId``: a new hello with the same id closes the old socket (code 1000, "replaced by a new
connection"). Messages the server does not know are ignored, never fatal.

HTTP routes (Studio's paths under ``/v1/api/{projectId}``; any projectId; ``x-api-key`` as for ingestion):

- ``GET  /v1/api/{projectId}/devices``: ``{"success": true, "devices": [Device, ...]}`` in the shape of
  Studio's ListDevicesResponse (edgeimpulse_api's model parses it), every device that said hello since the
  server started, connected or not (``remote_mgmt_connected``, ``remoteMgmtMode``).
- ``GET  /v1/api/{projectId}/device/{deviceId}``: ``{"success": true, "device": Device}``.
- ``POST /v1/api/{projectId}/device/{deviceId}/start-sampling`` with ``{label, lengthMs, category,
  intervalMs, sensor}``: sends ``{"sample": {label, length, path: "/api/<category>/data", hmacKey,
  interval, sensor}}`` to the device and answers at once ``{"success": true, "id": N}`` (Studio's
  StartSamplingResponse); the device's replies then move its state (idle, sampling, uploading) and its job's
  stage, which the dashboard shows live. ``hmacKey`` is the server's --hmac-key, else ``"0"`` (what Edge
  Impulse's own tools sign with when a project has none; the server checks no signature then). ``sensor``
  defaults to the device's first sensor. An ``intervalMs`` faster than the sensor's highest frequency in its
  hello (5% over, for a rounded 1000 / Hz) is refused; a slower one is passed on (the device picks its
  nearest rate: a uingest board samples at its configured rate and logs it; the stored sample says which).
  A ``lengthMs`` over the sensor's ``maxSampleLengthS`` (when it names one) is refused too, as Studio never offers it.
- A deviceId with '/' is addressed with it as %2F, as Edge Impulse's clients send it (encodeURIComponent).
- Refusals are Studio's: HTTP 200 with ``{"success": false, "error": "..."}`` (unknown device, not
  connected, busy, a bad field); a missing or wrong key is a 401 with the same body.

A job's end: ``sampleFinished``, or ``{"sample": false, "error"}``, or the device leaving, or no reply within
the sample's length plus ``JOB_GRACE_S``. Its sample is found by subscribing to the data folder: the first
sample stored while the job runs with the job's label and category (and the device's id as its device_name
when the message has one) is the job's ``sampleId``.
"""

from __future__ import annotations

import asyncio
import datetime
import hmac
import itertools
import json
import logging
import math
import threading
import time

import cbor2
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from .collector_rules import Rejected, check_label
from .common import DATA_CATEGORIES, one_line
from .ingestion import api_key_problem

log = logging.getLogger("uingest.remote")

DEFAULT_PORT = 4820
MAX_MESSAGE = 16 * 1024  # a hello with many sensors fits in a few KB; no sensor data travels here
MAX_QUEUE = 4  # messages received and not yet handled, per socket
MAX_SESSIONS = 256  # open sockets, before or after their hello
MAX_DEVICES = 1024  # devices remembered (the disconnected ones longest unseen are forgotten first)
WRITE_BOUND = 256 * 1024  # bytes waiting to be sent to one peer before it is cut (it does not read)
HELLO_TIMEOUT = 10.0  # seconds from the opening handshake to the hello
PING_INTERVAL = 20.0
PING_TIMEOUT = 20.0
JOB_GRACE_S = 120.0  # a job without its end this long after the sample's length is failed
MAX_SENSORS = 32
MAX_FREQUENCIES = 64
RATE_SLACK = 1.05  # an intervalMs of 1000 / Hz rounded may ask a little over the highest frequency
MAX_TEXT = 256  # characters of a deviceId, deviceType, sensor name
MAX_LENGTH_MS = 24 * 3600 * 1000
NO_HMAC_KEY = "0"  # the hmacKey sent when the server has none (Edge Impulse's DataForwarder default)
STATES = ("idle", "sampling", "uploading")
_ACTIVE = ("requested", "accepted", "started", "reading", "uploading", "processing")


class Refused(Exception):
    """A start-sampling or hello refused, with its one-line reason."""


def _now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _text(value, what: str, empty_ok: bool = False) -> str:
    if not isinstance(value, str) or (not value and not empty_ok):
        raise Refused("%s must be a non-empty string" % what)
    if len(value) > MAX_TEXT or not value.isprintable():
        raise Refused("%s must be at most %d printable characters" % (what, MAX_TEXT))
    return value


def _number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def parse_hello(message) -> dict:
    """The hello's fields, checked, from a decoded first message ({"hello": {...}}); Refused otherwise."""
    if not isinstance(message, dict) or not isinstance(message.get("hello"), dict):
        raise Refused('the first message must be a hello ({"hello": {...}})')
    h = message["hello"]
    version = h.get("version")
    if not isinstance(version, int) or isinstance(version, bool) or not 2 <= version <= 4:
        raise Refused("unsupported hello version %r (2 to 4 are understood)" % (version,))
    api_key = h.get("apiKey")
    if not isinstance(api_key, str):
        raise Refused("the hello has no apiKey")
    sensors = h.get("sensors", [])
    if not isinstance(sensors, list) or len(sensors) > MAX_SENSORS:
        raise Refused("sensors must be a list of at most %d entries" % MAX_SENSORS)
    checked = []
    for s in sensors:
        if not isinstance(s, dict):
            raise Refused("each sensor must be {name, maxSampleLengthS, frequencies}")
        name = _text(s.get("name"), "a sensor's name")
        longest = s.get("maxSampleLengthS", 0)
        if not _number(longest) or longest < 0:
            raise Refused("maxSampleLengthS of sensor %r must be a number >= 0" % name)
        freqs = s.get("frequencies", [])
        if not isinstance(freqs, list) or len(freqs) > MAX_FREQUENCIES or not all(_number(f) and f > 0 for f in freqs):
            raise Refused("frequencies of sensor %r must be a list of positive numbers" % name)
        checked.append({"name": name, "maxSampleLengthS": longest, "frequencies": list(freqs)})
    mode = h.get("mode", "ingestion")
    return {
        "version": version,
        "apiKey": api_key,
        "deviceId": _text(h.get("deviceId"), "deviceId"),
        "deviceType": _text(h.get("deviceType", ""), "deviceType", empty_ok=True),
        "connection": _text(h.get("connection", "ip"), "connection"),
        "sensors": checked,
        "supportsSnapshotStreaming": h.get("supportsSnapshotStreaming") is True,
        "mode": mode if mode in ("ingestion", "inference") else "ingestion",
    }


def parse_start_sampling(body, sensors: list) -> dict:
    """Studio's StartSamplingRequest, checked against the device's sensors: the fields of the sample
    request (without path and hmacKey); Refused naming the bad field."""
    if not isinstance(body, dict):
        raise Refused("the body must be a JSON object {label, lengthMs, category, intervalMs, sensor}")
    try:
        label = check_label(body.get("label")) if isinstance(body.get("label"), str) else None
    except Rejected as e:
        raise Refused("label: %s" % e.line)
    if not label:
        raise Refused("label must be a non-empty string")
    length = body.get("lengthMs")
    if not isinstance(length, int) or isinstance(length, bool) or not 0 < length <= MAX_LENGTH_MS:
        raise Refused("lengthMs must be a whole number of milliseconds, 1 to %d" % MAX_LENGTH_MS)
    category = body.get("category")
    if category not in DATA_CATEGORIES:
        raise Refused("category must be one of %s" % ", ".join(DATA_CATEGORIES))
    interval = body.get("intervalMs")
    if not _number(interval) or not interval > 0:
        raise Refused("intervalMs must be a positive number (1000 / Hz)")
    names = [s["name"] for s in sensors]
    sensor = body.get("sensor")
    if sensor is None:
        if not names:
            raise Refused("the device offers no sensor")
        sensor = names[0]
    elif sensor not in names:
        raise Refused("unknown sensor %r: the device offers %s" % (sensor, ", ".join(map(repr, names)) or "none"))
    offered, longest = next((s["frequencies"], s["maxSampleLengthS"]) for s in sensors if s["name"] == sensor)
    if longest and length > longest * 1000:
        # Studio offers at most this; the device would refuse it after the API said success
        raise Refused(
            "lengthMs %d is longer than sensor %r records (maxSampleLengthS %g s): lengthMs at most %g"
            % (length, sensor, longest, longest * 1000)
        )
    if offered and 1000 / interval > max(offered) * RATE_SLACK:
        # faster than the sensor samples at all; a slower rate is passed on: the device picks its nearest
        # (a uingest board samples at its configured rate and logs it), the stored sample says which
        raise Refused(
            "intervalMs %g asks %g Hz: sensor %r samples at most %g Hz (it offers %s Hz): intervalMs at least %g"
            % (
                interval,
                1000 / interval,
                sensor,
                max(offered),
                ", ".join("%g" % f for f in offered),
                1000 / max(offered),
            )
        )
    request = {"label": label, "length": length, "category": category, "interval": interval, "sensor": sensor}
    for extra, ok in (
        ("labelColor", lambda v: isinstance(v, str)),
        ("collectedSampleCount", _number),
        ("targetSampleCount", _number),
    ):
        if extra in body and ok(body[extra]):
            request[extra] = body[extra]
    return request


class Device:
    """One device that said hello: what it offers, its socket (while connected) and its current job."""

    def __init__(self, number: int, hello: dict):
        self.number = number  # Studio's numeric id
        self.device_id = hello["deviceId"]
        self.created = _now()
        self.session = None
        self.last_job: dict | None = None
        self.job: dict | None = None
        self.job_timer = None  # ends the job when the device never does (asyncio.TimerHandle)
        self.update(hello)

    def update(self, hello: dict) -> None:
        self.device_type = hello["deviceType"]
        self.sensors = hello["sensors"]
        self.snapshots = hello["supportsSnapshotStreaming"]
        self.mode = hello["mode"]
        self.version = hello["version"]
        self.connection = hello["connection"]
        self.last_seen = _now()
        self.last_seen_mono = time.monotonic()

    @property
    def state(self) -> str:
        if self.job is None:
            return "idle"
        return "uploading" if self.job["stage"] in ("uploading", "processing") else "sampling"

    def studio(self) -> dict:
        """Studio's Device model."""
        connected = self.session is not None
        return {
            "id": self.number,
            "deviceId": self.device_id,
            "created": self.created,
            "lastSeen": self.last_seen,
            "name": self.device_id,
            "deviceType": self.device_type,
            "sensors": [
                {"name": s["name"], "maxSampleLengthS": int(s["maxSampleLengthS"]), "frequencies": s["frequencies"]}
                for s in self.sensors
            ],
            "remote_mgmt_connected": connected,
            "supportsSnapshotStreaming": self.snapshots,
            "remoteMgmtMode": self.mode if connected else "disconnected",
        }

    def view(self) -> dict:
        """What the dashboard shows."""
        return {
            "deviceId": self.device_id,
            "deviceType": self.device_type,
            "sensors": self.sensors,
            "connected": self.session is not None,
            "encoding": self.session.encoding if self.session is not None else None,
            "peer": self.session.peer if self.session is not None else None,
            "lastSeen": self.last_seen,
            "state": self.state,
            "job": dict(self.job) if self.job else None,
            "lastJob": dict(self.last_job) if self.last_job else None,
        }


class Session:
    """One open socket (after its hello) and its encoding."""

    def __init__(self, conn, peer: str, encoding: str):
        self.conn = conn
        self.peer = peer
        self.encoding = encoding  # "json" or "cbor"

    def encode(self, message: dict):
        if self.encoding == "cbor":
            return cbor2.dumps(message)
        return json.dumps(message, separators=(",", ":"))


def _decode(data, prefer: str = "json"):
    """A message's value and its encoding: text frames are JSON, binary frames CBOR (or JSON when the
    session is JSON and the bytes are). ValueError when it is neither."""
    if isinstance(data, str):
        try:
            return json.loads(data), "json"
        except ValueError as e:
            raise ValueError("not JSON: %s" % e)
    tries = ("json", "cbor") if prefer == "json" or data[:1] == b"{" else ("cbor", "json")
    problems = []
    for kind in tries:
        try:
            if kind == "cbor":
                return cbor2.loads(data), "cbor"
            return json.loads(data.decode("utf-8")), "json"
        except (ValueError, cbor2.CBORDecodeError, UnicodeDecodeError, RecursionError) as e:
            problems.append("%s: %s" % (kind, one_line(str(e) or type(e).__name__, 80)))
    raise ValueError("neither JSON nor CBOR (%s)" % "; ".join(problems))


class _OneLine(logging.Filter):
    """The websockets package's own log records (a failed opening handshake, ...) as one line: the
    exception's text instead of its traceback."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.exc_info:
            exc = record.exc_info[1]
            causes = []
            while exc is not None and len(causes) < 3:
                causes.append(one_line(str(exc) or type(exc).__name__, 120))
                exc = exc.__cause__ or exc.__context__
            record.msg = "%s: %s" % (record.getMessage(), ": ".join(causes))
            record.args = None
            record.exc_info = None
            record.exc_text = None
        return True


class _OncePerMinute:
    """Warnings that a crowd of sockets could repeat: each kind logged at most once a minute, with the count."""

    def __init__(self):
        self.last: dict = {}
        self.count: dict = {}

    def warn(self, kind: str, text: str, *args) -> None:
        self.count[kind] = self.count.get(kind, 0) + 1
        now = time.monotonic()
        if now - self.last.get(kind, -math.inf) >= 60:
            n = self.count.pop(kind)
            self.last[kind] = now
            log.warning(text + ("" if n == 1 else " (%d times since the last such line)" % n), *args)


class RemoteManagement:
    """The device registry, the WebSocket server and the Studio-compatible routes (module docstring)."""

    def __init__(
        self,
        api_key: bytes | None,
        hmac_key=None,
        host: str = "127.0.0.1",
        port: int | None = DEFAULT_PORT,
        ssl_context=None,
    ):
        """port None: no WebSocket server (the routes still answer, every device not connected); 0: a free
        port (``.port`` once started)."""
        self.api_key = api_key
        self.hmac_key = (hmac_key.decode() if isinstance(hmac_key, bytes) else hmac_key) or NO_HMAC_KEY
        self.host = host
        self.port = port
        self.ssl_context = ssl_context
        self.devices: dict[str, Device] = {}
        self.lock = threading.Lock()  # the data folder's subscriber call comes from a storing thread
        self.version = 0  # bumped at every change a viewer should see
        self.subscribers: list = []  # callables, called (no arguments) after every change
        self._numbers = itertools.count(1)
        self._jobs = itertools.count(1)
        self._open = 0  # sockets open, before or after their hello
        self._before_hello: dict = {}  # sockets open that have not said hello yet -> when they opened
        self._quiet = _OncePerMinute()
        self._server = None
        ws_logger = logging.getLogger("uingest.remote.websockets")
        ws_logger.setLevel(logging.WARNING)  # its "server listening", "connection rejected" infos: ours say it
        if not any(isinstance(f, _OneLine) for f in ws_logger.filters):
            ws_logger.addFilter(_OneLine())
        self._ws_logger = ws_logger

    # --- the registry

    def _changed(self) -> None:
        with self.lock:
            self.version += 1
        for callback in self.subscribers:
            try:
                callback()
            except Exception:
                log.exception("a subscriber to device changes failed")

    def snapshot(self) -> dict:
        with self.lock:
            devices = sorted(self.devices.values(), key=lambda d: d.number)
            return {
                "version": self.version,
                "port": self.port if self._server else None,
                "devices": [d.view() for d in devices],
            }

    def _forget_old(self) -> None:
        if len(self.devices) < MAX_DEVICES:
            return
        gone = [d for d in self.devices.values() if d.session is None]
        gone.sort(key=lambda d: d.last_seen_mono)
        for d in gone[: len(self.devices) - MAX_DEVICES + 1]:
            del self.devices[d.device_id]

    def _end_job(self, device: Device, stage: str, error: str | None = None) -> None:
        """Under the lock."""
        job = device.job
        if job is None:
            return
        job["stage"] = stage
        job["finishedAt"] = _now()
        if error:
            job["error"] = error
        if device.job_timer is not None:
            device.job_timer.cancel()
            device.job_timer = None
        device.last_job, device.job = job, None
        log.info(
            "remote %s: sample %r %s%s",
            device.device_id,
            job["label"],
            stage,
            (": " + error) if error else "",
        )

    def stored(self, record: dict) -> None:
        """A data folder subscriber: a sample stored while a job with its label and category runs is the
        job's sample."""
        label, category, name = record.get("label"), record.get("category"), record.get("device_name")
        with self.lock:
            candidates = [
                d
                for d in self.devices.values()
                if d.job and d.job.get("sampleId") is None and d.job["label"] == label and d.job["category"] == category
            ]
            exact = [d for d in candidates if name is not None and d.device_id == name]
            chosen = exact or (candidates if len(candidates) == 1 else [])
            if not chosen:
                return
            chosen[0].job["sampleId"] = record.get("sample_id")
        self._changed()

    # --- the WebSocket server

    async def start(self) -> None:
        """Open the WebSocket server in the running loop (uvicorn's)."""
        if self.port is None:
            return
        from websockets.asyncio.server import ServerConnection, serve
        from websockets.protocol import State

        remote = self

        class _Connection(ServerConnection):
            async def handshake(self, *args, **kwargs) -> None:
                """The opening handshake; one line when it fails (not a WebSocket request, too slow)."""
                try:
                    await super().handshake(*args, **kwargs)
                except asyncio.CancelledError:  # serve()'s open_timeout
                    log.warning("remote %s: no WebSocket: no handshake within %gs", remote._peer(self), HELLO_TIMEOUT)
                    raise
                except Exception as e:
                    log.warning("remote %s: no WebSocket: %s", remote._peer(self), one_line(str(e) or repr(e), 200))
                    raise
                if self.protocol.state is not State.OPEN:
                    exc = self.protocol.handshake_exc
                    causes = []
                    while exc is not None and len(causes) < 3:
                        causes.append(one_line(str(exc) or type(exc).__name__, 120))
                        exc = exc.__cause__
                    log.warning("remote %s: no WebSocket: %s", remote._peer(self), "; ".join(causes) or "refused")

            def data_received(self, data: bytes) -> None:
                super().data_received(data)
                waiting = self.transport.get_write_buffer_size()
                if waiting > WRITE_BOUND and not self.transport.is_closing():
                    log.warning(
                        "remote %s: closed: %d bytes wait for a peer that does not read them (a flood?)",
                        remote._peer(self),
                        waiting,
                    )
                    self.cut = True  # its line is this one
                    self.transport.abort()

        self._server = await serve(
            self._session,
            self.host,
            self.port,
            compression=None,
            open_timeout=HELLO_TIMEOUT,
            ping_interval=PING_INTERVAL,
            ping_timeout=PING_TIMEOUT,
            close_timeout=5,
            max_size=MAX_MESSAGE,
            max_queue=MAX_QUEUE,
            logger=self._ws_logger,
            create_connection=_Connection,
            ssl=self.ssl_context,
        )
        self.port = self._server.sockets[0].getsockname()[1]
        shown = "[%s]" % self.host if ":" in self.host else self.host
        log.info(
            "remote management: %s://%s:%d (devices connect here; start recordings with POST "
            "/v1/api/<any project>/device/<deviceId>/start-sampling on the HTTP port, or from the dashboard)",
            "wss" if self.ssl_context else "ws",
            shown,
            self.port,
        )

    async def stop(self) -> None:
        if self._server is None:
            return
        self._server.close(close_connections=True)
        try:
            await asyncio.wait_for(self._server.wait_closed(), 5)
        except asyncio.TimeoutError:
            pass
        self._server = None

    @staticmethod
    def _peer(conn) -> str:
        address = conn.remote_address
        return "%s:%s" % tuple(address[:2]) if address else "-"

    @staticmethod
    def _closed_why(conn) -> str:
        rcvd, sent = conn.close_code, None
        protocol = getattr(conn, "protocol", None)
        if protocol is not None and protocol.close_sent is not None:
            sent = protocol.close_sent
        if sent is not None and sent.code != 1000:
            return "%d %s" % (sent.code, one_line(sent.reason or "", 120))
        exc = getattr(protocol, "parser_exc", None)
        if exc is not None:
            return one_line(str(exc), 120)
        if rcvd == 1000:
            return "closed by the device"
        return "%s %s" % (rcvd, one_line(conn.close_reason or "", 120)) if rcvd else "connection lost"

    async def _session(self, conn) -> None:
        from websockets.exceptions import ConnectionClosed

        peer = self._peer(conn)
        self._open += 1
        device = None
        session = None
        try:
            if self._open > MAX_SESSIONS:
                # make room for this one: the socket that has waited longest without a hello goes (sockets that
                # never say hello cannot keep devices out), else this one is refused
                oldest = min(self._before_hello, key=self._before_hello.get, default=None)
                if oldest is None:
                    self._quiet.warn("full", "remote %s: refused: %d sockets open already", peer, MAX_SESSIONS)
                    await conn.close(1013, "too many connections")
                    return
                del self._before_hello[oldest]
                made_room = "remote: closed the socket waiting longest for its hello to make room (%d open)"
                self._quiet.warn("evicted", made_room, self._open)
                oldest.transport.abort()
            self._before_hello[conn] = time.monotonic()
            try:
                first = await asyncio.wait_for(conn.recv(), HELLO_TIMEOUT)
            except asyncio.TimeoutError:
                self._quiet.warn("silent", "remote %s: closed: no hello within %gs", peer, HELLO_TIMEOUT)
                await conn.close(1008, "no hello")
                return
            finally:
                self._before_hello.pop(conn, None)
            encoding = "cbor" if isinstance(first, bytes) else "json"
            try:
                message, encoding = _decode(first, "cbor")
                hello = parse_hello(message)
            except (ValueError, Refused) as e:
                reason = "hello %s" % e if isinstance(e, ValueError) else str(e)
                log.warning("remote %s: hello refused: %s", peer, reason)
                await conn.send(Session(conn, peer, encoding).encode({"hello": False, "err": reason}))
                await conn.close(1007 if isinstance(e, ValueError) else 1008, "hello refused")
                return
            if self.api_key is not None and not hmac.compare_digest(hello["apiKey"].encode("utf-8"), self.api_key):
                log.warning("remote %s: hello refused: invalid API key (deviceId %r)", peer, hello["deviceId"])
                await conn.send(Session(conn, peer, encoding).encode({"hello": False, "err": "Invalid API key"}))
                await conn.close(1008, "invalid API key")
                return
            session = Session(conn, peer, encoding)
            device, replaced = self._connect(hello, session)
            if replaced is not None:
                log.info(
                    "remote %s: %r connected again: closing its older socket %s", peer, device.device_id, replaced.peer
                )
                asyncio.ensure_future(replaced.conn.close(1000, "replaced by a new connection"))
            await conn.send(session.encode({"hello": True}))
            log.info(
                "remote %s: %r (%s) connected, %s, sensors: %s",
                peer,
                device.device_id,
                device.device_type or "no type",
                encoding,
                ", ".join(s["name"] for s in device.sensors) or "none",
            )
            self._changed()
            ignored = 0
            async for data in conn:
                try:
                    message, _ = _decode(data, encoding)
                except ValueError as e:
                    ignored += 1
                    if ignored == 1:  # the first said, the others counted: a device cannot flood the log
                        log.info("remote %s: ignored a message that is %s (more are counted)", peer, e)
                    continue
                self._reply(device, session, message)
            log.info(
                "remote %s: %r disconnected (%s)%s",
                peer,
                device.device_id,
                self._closed_why(conn),
                "; %d messages ignored" % ignored if ignored > 1 else "",
            )
        except ConnectionClosed:
            if not getattr(conn, "cut", False):
                what = "%r " % device.device_id if device is not None else ""
                log.warning("remote %s: %sclosed: %s", peer, what, self._closed_why(conn))
        except Exception as e:  # never a traceback per socket
            log.warning("remote %s: closed: %s", peer, one_line("%s: %s" % (type(e).__name__, e), 200))
            conn.transport.abort()
        finally:
            self._open -= 1
            if device is not None and session is not None:
                self._disconnect(device, session)

    def _connect(self, hello: dict, session: Session):
        with self.lock:
            device = self.devices.get(hello["deviceId"])
            replaced = None
            if device is None:
                self._forget_old()
                device = self.devices[hello["deviceId"]] = Device(next(self._numbers), hello)
            else:
                device.update(hello)
                replaced = device.session
            if device.job is not None:
                self._end_job(device, "failed", "the device connected again during the recording")
            device.session = session
        return device, replaced

    def _disconnect(self, device: Device, session: Session) -> None:
        with self.lock:
            if device.session is not session:
                return  # replaced: the newer socket is the device's
            device.session = None
            self._end_job(device, "failed", "the device disconnected")
        self._changed()

    def _reply(self, device: Device, session: Session, message) -> None:
        """A device's message on its socket: the current job's progress; anything else is ignored."""
        if not isinstance(message, dict):
            return
        with self.lock:
            if device.session is not session:
                return
            device.last_seen = _now()
            device.last_seen_mono = time.monotonic()
            job = device.job
            if job is None:
                pass
            elif message.get("sample") is True:
                job["stage"] = "accepted" if job["stage"] == "requested" else job["stage"]
            elif message.get("sample") is False:
                error = message.get("error")
                self._end_job(device, "failed", one_line(str(error), 300) if error is not None else "refused")
            elif message.get("sampleStarted") is True:
                job["stage"] = "started"
            elif message.get("sampleReading") is True:
                job["stage"] = "reading"
                progress = message.get("progressPercentage")
                if _number(progress):
                    job["progress"] = max(0, min(100, progress))
            elif message.get("sampleUploading") is True:
                job["stage"] = "uploading"
            elif message.get("sampleProcessing") is True:
                job["stage"] = "processing"
            elif message.get("sampleFinished") is True:
                self._end_job(device, "finished")
        self._changed()

    # --- starting a recording

    async def start_sampling(self, device_id: str, body) -> int:
        """Send a sample request to a connected, idle device; the job's id. Refused otherwise."""
        with self.lock:
            device = self.devices.get(device_id)
            if device is None:
                raise Refused("unknown device %r: no device with that deviceId has connected" % device_id)
            if device.session is None:
                raise Refused("device %r is not connected" % device_id)
            if device.job is not None:
                raise Refused("device %r is busy (%s)" % (device_id, device.state))
            fields = parse_start_sampling(body, device.sensors)
            session = device.session
            job = {
                "id": next(self._jobs),
                "label": fields["label"],
                "category": fields["category"],
                "sensor": fields["sensor"],
                "lengthMs": fields["length"],
                "intervalMs": fields["interval"],
                "stage": "requested",
                "progress": None,
                "requestedAt": _now(),
                "sampleId": None,
            }
            device.job = job
            sample = {
                "label": fields["label"],
                "length": fields["length"],
                "path": "/api/%s/data" % fields["category"],
                "hmacKey": self.hmac_key,
                "interval": fields["interval"],
                "sensor": fields["sensor"],
            }
            for extra in ("labelColor", "collectedSampleCount", "targetSampleCount"):
                if extra in fields:
                    sample[extra] = fields[extra]
        try:
            await session.conn.send(session.encode({"sample": sample}))
        except Exception:
            with self.lock:
                if device.job is job:
                    device.job = None
            raise Refused("device %r is not connected" % device_id)
        deadline = fields["length"] / 1000 + JOB_GRACE_S
        with self.lock:
            if device.job is job:
                device.job_timer = asyncio.get_running_loop().call_later(deadline, self._overdue, device, job)
        log.info(
            "remote %s: sample %r requested: %s, %d ms every %g ms from %r",
            device_id,
            fields["label"],
            fields["category"],
            fields["length"],
            fields["interval"],
            fields["sensor"],
        )
        self._changed()
        return job["id"]

    def _overdue(self, device: Device, job: dict) -> None:
        with self.lock:
            if device.job is not job:
                return
            device.job_timer = None
            self._end_job(
                device,
                "failed",
                "no end of the recording from the device within %gs" % (job["lengthMs"] / 1000 + JOB_GRACE_S),
            )
        self._changed()

    # --- the Studio-compatible routes

    def routes(self) -> list[Route]:
        # {device_id:path}: a deviceId may hold '/', which Edge Impulse's clients send as %2F (encodeURIComponent,
        # edgeimpulse_api's quote(safe='')) and the server decodes before routing; Studio's routes give it whole
        return [
            Route("/v1/api/{project_id}/devices", self.list_devices, methods=["GET"]),
            Route("/v1/api/{project_id}/device/{device_id:path}", self.get_device, methods=["GET"]),
            Route(
                "/v1/api/{project_id}/device/{device_id:path}/start-sampling",
                self.start_sampling_route,
                methods=["POST"],
            ),
        ]

    def _denied(self, request: Request):
        problem = api_key_problem(request, self.api_key)
        if problem is None:
            return None
        reason = "Invalid API key" if problem == "invalid" else "missing x-api-key header"
        return JSONResponse({"success": False, "error": reason}, status_code=401)

    async def list_devices(self, request: Request) -> Response:
        denied = self._denied(request)
        if denied:
            return denied
        with self.lock:
            devices = [d.studio() for d in sorted(self.devices.values(), key=lambda d: d.number)]
        return JSONResponse({"success": True, "devices": devices})

    async def get_device(self, request: Request) -> Response:
        denied = self._denied(request)
        if denied:
            return denied
        device_id = request.path_params["device_id"]
        with self.lock:
            device = self.devices.get(device_id)
            found = device.studio() if device is not None else None
        if found is None:
            return JSONResponse({"success": False, "error": "unknown device %r" % device_id})
        return JSONResponse({"success": True, "device": found})

    async def start_sampling_route(self, request: Request) -> Response:
        denied = self._denied(request)
        if denied:
            return denied
        raw = b""
        async for chunk in request.stream():  # a few hundred bytes; never more than MAX_MESSAGE held
            raw += chunk
            if len(raw) > MAX_MESSAGE:
                return JSONResponse({"success": False, "error": "the body is over %d bytes" % MAX_MESSAGE})
        try:
            body = json.loads(raw)
        except ValueError:
            body = None
        try:
            if body is None:
                raise Refused("the body must be JSON {label, lengthMs, category, intervalMs, sensor}")
            job = await self.start_sampling(request.path_params["device_id"], body)
        except Refused as e:
            return JSONResponse({"success": False, "error": str(e)})
        return JSONResponse({"success": True, "id": job})
