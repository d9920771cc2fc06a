"""`uingest serve`: a local, Edge Impulse-compatible ingestion server.

Speaks the ingestion API of shared/docs/ingestion-protocol.md on Starlette + uvicorn and stores what it
accepts under a data folder. The parts, one module each:

- ingestion: the ingestion routes (/api/{category}/data, /files, /api/health), their status codes and the
  one API key check;
- collector_rules: what is accepted (messages, labels, file names, file types, categories, multi-labels);
- datafolder: where and how it is stored (atomic sample files, index.jsonl, the index reader);
- dashboard: the dashboard at ``/``, kept up to date by subscribing to the data folder (and to the remote
  devices);
- remote_management: the WebSocket server boards keep open on its own port (``--remote-port``, default
  4820) and the Studio-compatible routes that start a recording on one (/v1/api/{projectId}/...).

This module assembles them (create_app: each part brings its routes, so a new endpoint is a new module's
routes), runs them with uvicorn (main, ServerThread) and logs one line per request: the path only, never
the query string, and no header values other than the label.

Open event streams do not hold up a shutdown: the server used by ``main`` and ``ServerThread`` (``_Server``)
ends them first (``app.state.live_streams``), then uvicorn finishes the other requests as usual. (A plain
``uvicorn`` run of the app would wait for open dashboards to disconnect.)
"""

from __future__ import annotations

import argparse
import asyncio
import errno
import logging
import logging.handlers
import os
import queue
import signal
import socket
import ssl
import sys
import threading
import time

import uvicorn
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request

from .common import ArgumentParser, add_key_options, missing_api_key, resolve_keys
from .connections import (
    FILES_KEPT_FOR_THE_SERVER,
    MOST_CONNECTIONS,
    AcceptErrors,
    Limits,
    default_max_connections,
    guarded_protocol,
    raise_open_file_limit,
)
from .dashboard import Dashboard
from .datafolder import DataFolder
from .ingestion import Ingestion
from .remote_management import DEFAULT_PORT as DEFAULT_REMOTE_PORT
from .remote_management import RemoteManagement

log = logging.getLogger("uingest.serve")

DEFAULT_MAX_BODY = 100 * 1024 * 1024
MEMORY_LIMIT = 1024 * 1024  # /data bodies above this are streamed to a temp file in the data dir


def _escaped(text) -> str:
    """text with each character that is not printable (str.isprintable: controls, format and bidi characters, line
    separators) and each backslash as a Python escape (\\x1b, \\u202e, \\\\)."""
    text = str(text)
    if text.isprintable() and "\\" not in text:
        return text  # every well-behaved request: no per-character pass
    return "".join(c if c.isprintable() and c != "\\" else c.encode("unicode_escape").decode() for c in text)


_REQUEST_LINE = "%s %s %d label=%r bytes=%d remote=%s"  # %r: the label escaped as repr() does


def log_request(scope, status: int) -> None:
    """The one log line of an HTTP request: no header values other than the label. What a client sent is shown
    escaped: a path (percent-decoded: %0A is a line feed) or a label with a line break, a terminal escape, a C1
    control or a bidirectional override cannot forge or hide a log line."""
    state = scope.get("state") or {}
    client = scope.get("client")
    args = (
        _escaped(scope.get("method")),
        _escaped(scope.get("path")),
        status,
        state.get("uingest_label"),
        state.get("uingest_bytes", 0),
        "%s:%s" % tuple(client) if client else "-",
    )
    log.info(_REQUEST_LINE, *args)


class _LogRequests:
    """Pure ASGI middleware: one log line per HTTP request (log_request)."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        status = [500]

        async def send_status(message):
            if message["type"] == "http.response.start":
                status[0] = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_status)
        finally:
            log_request(scope, status[0])


class _Collector(Starlette):
    """Starlette, with the route every window takes, POST /api/{category}/data, handed to its handler straight.
    Starlette's way there (its two middleware layers and our _LogRequests, each wrapping send, the router, the
    route's exception wrapper) cost the event loop 20 us of its 165 a window. The handler catches its own errors and
    answers as through Starlette; every other method, path and scope type goes through Starlette."""

    def __init__(self, data_handler, **starlette):
        super().__init__(**starlette)
        self._data_handler = data_handler

    async def __call__(self, scope, receive, send):
        path = scope.get("path") or ""
        if (
            scope["type"] == "http"
            and scope.get("method") == "POST"
            and path.startswith("/api/")
            and path.endswith("/data")
            and not scope.get("root_path")
        ):
            category = path[5:-5]  # Starlette's {category}: one or more characters, no '/'
            if category and "/" not in category:
                await self._data(scope, receive, send, category)
                return
        await super().__call__(scope, receive, send)

    async def _data(self, scope, receive, send, category: str) -> None:
        scope["app"] = self
        scope["path_params"] = {"category": category}
        status = 500
        try:
            response = await self._data_handler(Request(scope, receive, send))
            status = response.status_code
            await response(scope, receive, send)
        finally:
            log_request(scope, status)


def create_app(
    data_dir,
    api_key=None,
    hmac_key=None,
    no_auth=False,
    max_body=DEFAULT_MAX_BODY,
    *,
    memory_limit=MEMORY_LIMIT,
    remote_port=None,
    remote_host="127.0.0.1",
    remote_ssl=None,
) -> Starlette:
    """The ingestion server as an ASGI app storing into data_dir.

    api_key is required unless no_auth. With hmac_key, messages must carry a valid HS256 signature.
    memory_limit: /data bodies larger than this are received into a temp file in data_dir.
    remote_port: the remote management WebSocket server's port (0: a free one, then
    ``app.state.remote_management.port`` once the server started; None: none), on remote_host, with TLS
    when remote_ssl (an ssl.SSLContext) is given. It runs in the server's loop (_Server starts it).
    """
    if not no_auth and not api_key:
        raise ValueError("api_key is required unless no_auth=True")
    if max_body < 1:
        raise ValueError("max_body must be positive")
    key = None if no_auth else (api_key.encode() if isinstance(api_key, str) else api_key)
    dashboard = Dashboard(data_dir, key)
    remote = RemoteManagement(key, hmac_key or None, host=remote_host, port=remote_port, ssl_context=remote_ssl)
    dashboard.show_devices(remote)
    folder = DataFolder(data_dir, subscribers=[dashboard.stored, remote.stored])  # reads the index once, for all
    ingestion = Ingestion(folder, key, hmac_key or None, int(max_body), int(memory_limit))
    routes = ingestion.routes() + remote.routes() + dashboard.routes() + dashboard.remote_routes()
    app = _Collector(ingestion.data, routes=routes, middleware=[Middleware(_LogRequests)])
    app.state.data_folder = folder
    app.state.remote_management = remote
    app.state.live_streams = [dashboard.hub]  # each with open() and close(): ended before a shutdown
    app.state.side_servers = [remote]  # each with async start() and stop(), run in the server's loop
    return app


def server_config(app, limits: Limits, **options) -> uvicorn.Config:
    """uvicorn's configuration for the app: HTTP/1.1 (httptools) with the connection deadlines and cap of limits."""
    return uvicorn.Config(
        app,
        http=guarded_protocol(limits),
        # asyncio's loop, not uvloop even where it is installed: measured at 1000-1500 windows/s uvloop used no less
        # CPU (the Python above it is the cost), and its server closes the listening socket, silently, when libuv
        # reports accept() out of descriptors (its spare descriptor spent; read in uvloop's source), where asyncio
        # retries and AcceptErrors says so once a minute
        loop="asyncio",
        timeout_keep_alive=limits.idle,  # type: ignore[arg-type]  # uvicorn's own idle timer: the same deadline
        log_config=None,
        access_log=False,
        lifespan="off",
        **options,
    )


class _Server(uvicorn.Server):
    """uvicorn's server, ending the app's live streams (the dashboard's event streams) before its graceful
    shutdown (which waits for every open response) so that they cannot hold it up."""

    failed = False  # a side server could not start

    def _state(self, name: str) -> list:
        state = getattr(self.config.app, "state", None)
        return getattr(state, name, None) or []

    async def startup(self, sockets=None) -> None:
        loop = asyncio.get_running_loop()
        loop.set_exception_handler(AcceptErrors(loop, self.config.http_protocol_class.limits))
        for streams in self._state("live_streams"):
            streams.open()
        for side in self._state("side_servers"):  # the remote management WebSocket server
            try:
                await side.start()
            except OSError as e:
                log.error("remote management: cannot listen on port %s: %s (choose another with --remote-port)",
                          side.port, e.strerror or e)  # fmt: skip
                self.failed = self.should_exit = True
                return
        await super().startup(sockets)

    async def shutdown(self, sockets=None) -> None:
        for streams in self._state("live_streams"):
            streams.close()
        for side in self._state("side_servers"):
            await side.stop()
        await super().shutdown(sockets)


class ServerThread:
    """Run an app with uvicorn in a background thread (for tests and demos).

    port=0 picks a free port; .port and .url are known once start() returns.
    With ssl_certfile (PEM: certificate chain, and the key unless ssl_keyfile names it) it serves https.
    limits: the connection deadlines and cap (connections.Limits; its defaults when None).
    """

    def __init__(self, app, host: str = "127.0.0.1", port: int = 0, ssl_certfile=None, ssl_keyfile=None, limits=None):
        self.app = app
        self.limits = limits or Limits()
        self.host = host
        self.port = port
        self.ssl_certfile = ssl_certfile
        self.ssl_keyfile = ssl_keyfile
        self.server = None
        self._thread = None
        self._sock = None

    @property
    def url(self) -> str:
        return "%s://%s:%d" % ("https" if self.ssl_certfile else "http", self.host, self.port)

    def start(self, timeout: float = 10.0) -> ServerThread:
        # proto IPPROTO_TCP, as uvicorn's own bind does: asyncio sets TCP_NODELAY on accepted
        # connections only then, and without it kept-alive replies stall ~40 ms (Nagle + delayed ACK)
        family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((self.host, self.port))
        self._sock = sock
        self.port = sock.getsockname()[1]
        config = server_config(
            self.app,
            self.limits,
            log_level="warning",
            ssl_certfile=self.ssl_certfile,
            ssl_keyfile=self.ssl_keyfile,
        )
        self.server = _Server(config)
        self._thread = threading.Thread(target=self.server.run, kwargs={"sockets": [sock]}, daemon=True)
        self._thread.start()
        deadline = time.monotonic() + timeout
        while not self.server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError("uingest serve: server did not start")
            time.sleep(0.01)
        return self

    def stop(self, timeout: float = 10.0) -> None:
        if self.server is not None:
            self.server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None
        if self._sock is not None:
            self._sock.close()
            self._sock = None

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()


def _size(text: str) -> int:
    """Bytes, with an optional K, M or G suffix (powers of 1024)."""
    t = text.strip().upper().removesuffix("B")
    mult = 1
    if t[-1:] in ("K", "M", "G"):
        mult = 1024 ** ("KMG".index(t[-1]) + 1)
        t = t[:-1]
    try:
        n = int(t) * mult
    except ValueError:
        raise argparse.ArgumentTypeError("expected a size in bytes such as 1048576 or 100M, got %r" % text)
    if n < 1:
        raise argparse.ArgumentTypeError("size must be positive")
    return n


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError("expected seconds such as 10 or 2.5, got %r" % text)
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError("must be a positive number of seconds, got %r" % text)
    return value


def _port(text: str) -> int:
    """argparse type for --port: 0 (any free port) to 65535."""
    try:
        port = int(text)
    except ValueError:
        port = -1
    if not 0 <= port <= 65535:
        raise argparse.ArgumentTypeError("expected a port number from 0 (any free one) to 65535, got %r" % text)
    return port


def startup_problem(args) -> str | None:
    """What would stop the server as it starts (a traceback from uvicorn), as the one line that says what to
    do: the data folder, the certificate files, the address and port."""
    if os.path.exists(args.data_dir) and not os.path.isdir(args.data_dir):
        return "--data-dir %s is a file: name a folder (it is created when missing)" % args.data_dir
    made_in = os.path.abspath(args.data_dir)
    while not os.path.exists(made_in):  # the folder the missing ones would be made in
        made_in = os.path.dirname(made_in)
    if not os.path.isdir(made_in) or not os.access(made_in, os.W_OK | os.X_OK):
        return "--data-dir %s: %s is %s: name a folder you can write to (it is created when missing)" % (
            args.data_dir,
            made_in,
            "a file" if not os.path.isdir(made_in) else "not writable",
        )
    for flag, path in (("--ssl-certfile", args.ssl_certfile), ("--ssl-keyfile", args.ssl_keyfile)):
        if path and not os.path.isfile(path):
            return "%s %s: no such file (a PEM file; `openssl req -x509 ...` makes a test one)" % (flag, path)
    if args.ssl_certfile:
        import ssl

        try:
            ssl.create_default_context(ssl.Purpose.CLIENT_AUTH).load_cert_chain(args.ssl_certfile, args.ssl_keyfile)
        except (ssl.SSLError, OSError):
            return "--ssl-certfile %s: not a PEM certificate chain with its private key%s" % (
                args.ssl_certfile,
                "" if args.ssl_keyfile else " (a key in another file: give it with --ssl-keyfile)",
            )
    if args.port == 0:
        return None  # any free port: nothing to collide with
    try:
        family = socket.getaddrinfo(args.host, args.port, type=socket.SOCK_STREAM)[0][0]
        with socket.create_server((args.host, args.port), family=family):
            pass  # uvicorn binds it again just after, with the same SO_REUSEADDR
    except socket.gaierror:
        return "--host %s: not an address or a name this computer resolves" % args.host
    except OSError as e:
        if e.errno == errno.EADDRINUSE:
            return "port %d on %s is in use (another uingest serve?): stop that or choose another --port" % (
                args.port,
                args.host,
            )
        if e.errno == errno.EACCES:
            return "port %d needs privileges here: choose a --port above 1023" % args.port
        if e.errno == errno.EADDRNOTAVAIL:
            return "--host %s is not an address of this computer: use 127.0.0.1, or 0.0.0.0 for every interface" % (
                args.host
            )
        return "cannot listen on %s port %d: %s" % (args.host, args.port, e.strerror or e)
    return None


GC_YOUNG_THRESHOLD = 10000  # allocations between collections of the young generation (Python's default: 700)


def tune_gc() -> None:
    """Fewer garbage collections for a long-running server: what exists once it started (modules, the app, the
    index the folder read) is frozen out of the collector's passes, and the young generation is collected every
    10,000 allocations, not 700. At 1000 windows/s the collector took 50-75 us a window (0.2-0.3 s in 4000
    windows, with 30 ms full passes); after this 10-15 us."""
    import gc

    gc.freeze()
    gc.set_threshold(GC_YOUNG_THRESHOLD, *gc.get_threshold()[1:])


SWITCH_INTERVAL_S = 0.002  # how long a thread may hold the GIL while another waits for it (Python's default: 0.005)


def tune_threads() -> None:
    """The GIL handed between threads every 2 ms, not 5. While a worker thread checks a large window (40 MB), the
    committer waits for the GIL after each of its system calls: the other devices' small posts meanwhile took p99
    470-506 ms at 5 ms, 257-309 ms at 2 ms (what they took before the committer), 150-163 ms at 1 ms but p50 59 ms
    (12-44 at 2 and 5 ms). At 1000 small windows/s it costs no CPU that the bench can see."""
    sys.setswitchinterval(SWITCH_INTERVAL_S)


LOG_QUEUE_RECORDS = 10000  # log records that may wait for a stalled output before new ones are dropped (counted)
LOG_WRITE_EVERY_S = 0.01  # the writer writes what came in, then waits this long: one wake-up for many lines


class _DroppingQueueHandler(logging.handlers.QueueHandler):
    """Hands each record to the log's writer thread (_LogWriter) as it is, in a queue.SimpleQueue (a thread's
    queue: nothing to copy or format first); over queue_records waiting (the output stalled) a record is dropped
    and counted."""

    def __init__(self, records: queue.SimpleQueue, queue_records: int):
        super().__init__(records)  # type: ignore[arg-type]
        self.queue_records = queue_records
        self.dropped = 0

    def prepare(self, record):
        return record  # formatted by the writer's handlers, in the writer's thread

    def enqueue(self, record) -> None:
        if self.queue.qsize() >= self.queue_records:
            self.dropped += 1  # only the event loop's thread and a few others log: a lost count at worst
        else:
            self.queue.put(record)


class _LogWriter:
    """The thread that formats and writes the server's log lines, so that an output that stalls (a terminal paused
    with Ctrl-S, a pipe nobody reads: its buffer fills after some 600 request lines) holds this thread and not the
    event loop, which every device waits on. Says how many lines it dropped once the output takes them again."""

    def __init__(
        self, records: queue.SimpleQueue, handler: _DroppingQueueHandler, handlers: list, logger: logging.Logger
    ):
        self.logger = logger
        self.records = records
        self.handler = handler
        self.handlers = handlers
        self.reported = 0
        self._thread = threading.Thread(target=self._run, name="uingest-log", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def _run(self) -> None:
        record = self.records.get()
        while record is not None:  # None: stop()
            self._write_with_count(record)
            try:
                record = self.records.get_nowait()
            except queue.Empty:  # all written: a pause, so that the lines meanwhile are written in one batch
                time.sleep(LOG_WRITE_EVERY_S)
                record = self.records.get()

    def _write_with_count(self, record) -> None:
        dropped = self.handler.dropped
        if dropped > self.reported:
            self._write(
                logging.makeLogRecord(
                    {
                        "name": log.name,
                        "levelno": logging.WARNING,
                        "levelname": "WARNING",
                        "msg": "%d log lines dropped: the log's output did not take them (paused or not read)"
                        % (dropped - self.reported),
                    }
                )
            )
            self.reported = dropped
        self._write(record)

    def _write(self, record) -> None:
        for h in self.handlers:
            if record.levelno >= h.level:
                h.handle(record)

    def stop(self, timeout: float = 5.0) -> bool:
        """Write out what waits, for at most timeout seconds, then give the logger its handlers back. False when
        the output is still stalled: the thread is left blocked in its write (a server must stop when asked)."""
        self.records.put(None)
        self._thread.join(timeout)
        self.logger.removeHandler(self.handler)
        for h in self.handlers:
            self.logger.addHandler(h)
        return not self._thread.is_alive()


def log_off_the_event_loop(logger: logging.Logger | None = None, queue_records: int = LOG_QUEUE_RECORDS) -> _LogWriter:
    """Move the handlers of logger (the root logger when None) to a writer thread of their own (returned, started;
    stop() it to write out what waits and give them back): the event loop only queues records. A window's request
    line costs the loop less too: the time stamp, the format and the write are the writer's."""
    logger = logger or logging.getLogger()
    handlers = logger.handlers[:]
    records: queue.SimpleQueue = queue.SimpleQueue()
    handler = _DroppingQueueHandler(records, queue_records)
    for h in handlers:
        logger.removeHandler(h)
    logger.addHandler(handler)
    writer = _LogWriter(records, handler, handlers, logger)
    writer.start()
    return writer


class _Terminated(Exception):
    pass


def _on_sigterm(signum, frame):
    raise _Terminated()


def main(argv=None) -> int:
    parser = ArgumentParser(
        prog="uingest serve", description="Local Edge Impulse-compatible ingestion server (stores samples on disk)."
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    parser.add_argument("--port", type=_port, default=4810, help="port (default 4810; 0: any free one)")
    parser.add_argument("--data-dir", default="./dataset", help="where samples are stored (default ./dataset)")
    add_key_options(parser, api_key="required x-api-key value", hmac_key="require valid HS256 signatures with this key")
    parser.add_argument("--no-auth", action="store_true", help="accept requests without an API key")
    parser.add_argument(
        "--max-body", type=_size, default=DEFAULT_MAX_BODY, help="largest request body, e.g. 100M (default)"
    )
    parser.add_argument(
        "--ssl-certfile", help="serve https with this PEM certificate chain (and key, unless --ssl-keyfile is given)"
    )
    parser.add_argument("--ssl-keyfile", help="PEM private key for --ssl-certfile")
    parser.add_argument(
        "--remote-port",
        type=int,
        default=DEFAULT_REMOTE_PORT,
        metavar="PORT",
        help="remote management: the WebSocket port boards connect to, on --host, wss with --ssl-certfile "
        "(default %d; 0: any free port, logged)" % DEFAULT_REMOTE_PORT,
    )
    parser.add_argument("--no-remote", action="store_true", help="no remote management WebSocket server")
    slow = parser.add_argument_group(
        "slow and idle clients",
        "A connection is closed when its client is too slow (a 408 names the reason); the counts are logged at "
        "most once a minute.",
    )
    defaults = Limits()
    for flag, field, what in (
        ("--request-timeout", "request", "seconds for the request line, from the connection or the first byte"),
        ("--header-timeout", "headers", "seconds for the headers, from the end of the request line"),
        ("--body-timeout", "body", "most seconds between two pieces of a body"),
        ("--idle-timeout", "idle", "seconds a kept-alive connection may wait for its next request"),
    ):
        default = getattr(defaults, field)
        slow.add_argument(flag, type=_seconds, default=default, metavar="S", help="%s (default %g)" % (what, default))
    slow.add_argument(
        "--max-connections",
        type=int,
        metavar="N",
        help="most open connections; over it the longest idle or slowest one is closed, else the new one gets 503 "
        "(default: the open-file limit, raised to its maximum at start, less %d, at most %d)"
        % (FILES_KEPT_FOR_THE_SERVER, MOST_CONNECTIONS),
    )
    args = parser.parse_args(argv)
    if args.max_connections is not None and args.max_connections < 1:
        parser.error("--max-connections must be at least 1")
    if args.ssl_keyfile and not args.ssl_certfile:
        parser.error("--ssl-keyfile needs --ssl-certfile")
    if not 0 <= args.remote_port <= 65535:
        parser.error("--remote-port must be 0 to 65535")
    api_key, hmac_key = resolve_keys(args)
    if not api_key and not args.no_auth:
        print(
            "uingest serve: %s, or run an open server with --no-auth" % missing_api_key(),
            file=sys.stderr,
        )
        return 2
    problem = startup_problem(args)
    if problem:
        print("uingest serve: " + problem, file=sys.stderr)
        return 2
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    writer = log_off_the_event_loop()
    code = 1
    try:
        code = _serve(args, api_key, hmac_key)
        return code
    finally:
        if not writer.stop():
            # the log's output is still stalled, and the interpreter's exit would wait on it for ever (logging's
            # and stderr's flushes wait for the write the writer thread is blocked in): every sample is stored
            os._exit(code)


def _serve(args, api_key, hmac_key) -> int:
    before, files = raise_open_file_limit()
    limits = Limits(
        request=args.request_timeout,
        headers=args.header_timeout,
        body=args.body_timeout,
        idle=args.idle_timeout,
        max_connections=args.max_connections or default_max_connections(files),
    )
    log.info(
        "connections: at most %d; open-file limit %s; timeouts: request line %gs, headers %gs, body gaps %gs, idle %gs",
        limits.max_connections,
        ("%d (raised from %d)" % (files, before)) if files != before else str(files or "none"),
        limits.request,
        limits.headers,
        limits.body,
        limits.idle,
    )
    remote_ssl = None
    if args.ssl_certfile and not args.no_remote:
        remote_ssl = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        remote_ssl.load_cert_chain(args.ssl_certfile, args.ssl_keyfile)  # startup_problem has checked them
    try:
        app = create_app(
            args.data_dir,
            api_key=api_key,
            hmac_key=hmac_key,
            no_auth=args.no_auth,
            max_body=args.max_body,
            remote_port=None if args.no_remote else args.remote_port,
            remote_host=args.host,
            remote_ssl=remote_ssl,
        )
    except OSError as e:
        print(
            "uingest serve: --data-dir %s: %s: name a folder you can write to (it is created when missing)"
            % (args.data_dir, e.strerror or e),
            file=sys.stderr,
        )
        return 2
    log.info(
        "storing into %s; %s; signatures %s; max body %d bytes",
        os.path.abspath(args.data_dir),
        "no authentication" if args.no_auth else "x-api-key required",
        "must verify" if hmac_key else "not checked",
        args.max_body,
    )
    shown_host = "[%s]" % args.host if ":" in args.host else args.host
    log.info(
        "dashboard: %s://%s:%d/%s",
        "https" if args.ssl_certfile else "http",
        shown_host,
        args.port,
        "" if args.no_auth else " (open it as /?key=<API key>, or type the key in the page)",
    )
    config = server_config(
        app,
        limits,
        host=args.host,
        port=args.port,
        log_level="info",
        ssl_certfile=args.ssl_certfile,
        ssl_keyfile=args.ssl_keyfile,
    )
    try:
        previous = signal.signal(signal.SIGTERM, _on_sigterm)
    except ValueError:  # not the main thread: uvicorn handles no signals there either
        previous = None
    server = _Server(config)
    tune_gc()
    tune_threads()
    try:
        server.run()
    except (KeyboardInterrupt, _Terminated):
        pass  # uvicorn has already shut down gracefully: every acknowledged sample is on disk
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
    return 1 if server.failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
