"""Servers on loopback for `uingest bench`, `make demo` and the tests:

    FakeServer     a scripted HTTP/1.1 server (the bench's minimal responder too)
    FaultProxy     an HTTP/1.1 proxy that injects faults, one scripted action per request
    LatencyProxy   a TCP proxy that makes loopback behave like a link with a round trip
    start_serve    `uingest serve` as a process of its own, started and answering
    FakeRemoteManagement  Edge Impulse's remote management service, faked: a WebSocket server
                   (raw sockets, JSON text) that takes a hello and sends sample requests

Each binds 127.0.0.1 on a free port and serves every connection on a thread of
its own.

The scripts' actions (one per request, in the order requests arrive):

    reply(...)      bytes: FakeServer sends them (a whole response, or any bytes)
    close_after(b)  FakeServer: send b, then close the connection
    stall(s, fwd)   wait s seconds, then close without answering (the proxy: after
                    forwarding the request when fwd)
    PASS            FaultProxy: forward the request, return the server's response
    RESET_BEFORE    FaultProxy: reset the client's connection (RST); the server never sees the request
    RESET_AFTER     FaultProxy: forward; once the server has answered, reset the client's connection
    answer(...)     FaultProxy: answer with these status, headers and body; the server never sees the request
    CUT             FaultProxy: forward; return the response cut halfway through its body, then close
    slow(gap)       FaultProxy: forward; trickle the response to the client one byte every gap seconds
"""

from __future__ import annotations

import base64
import hashlib
import http.client
import json
import queue
import socket
import struct
import subprocess
import sys
import threading
import time

PASS = ("pass",)
RESET_BEFORE = ("reset_before",)
RESET_AFTER = ("reset_after",)
CUT = ("cut",)


def reply(status=200, body=b"ok", headers=None, reason="OK") -> bytes:
    """An HTTP/1.1 response with a Content-Length."""
    head = "HTTP/1.1 %d %s\r\nContent-Length: %d\r\n" % (status, reason, len(body))
    for k, v in (headers or {}).items():
        head += "%s: %s\r\n" % (k, v)
    return head.encode() + b"\r\n" + body


def close_after(data):
    def act(conn):
        conn.sendall(data)
        return "close"

    return act


def late_after(first, late, pause=0.05):
    """An action: answer with first, then, while the connection idles, send late (and keep it open)."""

    def act(conn):
        conn.sendall(first)
        time.sleep(pause)
        conn.sendall(late)
        return None

    return act


def stall(seconds, forward=False):
    return ("stall_after" if forward else "stall_before", seconds)


def answer(status, body=b"", headers=None, reason="Proxy Says"):
    return ("answer", reply(status, body, headers, reason), status)


def slow(gap):
    return ("slow", gap)


def read_message(f):
    """One HTTP message from a buffered file: (head, body), or None at a clean EOF
    before it. Bodies: Content-Length only (what every side here sends)."""
    head = b""
    while not head.endswith(b"\r\n\r\n"):
        line = f.readline(65536)
        if not line:
            if head:
                raise ConnectionError("closed mid-head")
            return None
        head += line
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    body = f.read(length) if length else b""
    if len(body) < length:
        raise ConnectionError("closed mid-body")
    return head, body


def free_port(preferred: int = 0) -> int:
    """A free loopback port, preferred when that one is free. Closed again
    before returning: the caller's server binds it next."""
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", preferred))
        except OSError:
            s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _nodelay(sock):
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


def _reset(sock):
    # SO_LINGER with a zero timeout: close() sends RST instead of FIN
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    except OSError:
        pass
    sock.close()


class Listener:
    """A listening socket on a free loopback port. Each accepted connection
    is counted (.connections) and handed to handle(conn, its number, from 1)
    on a thread of its own. Subclasses set their attributes before calling
    __init__: connections may arrive as soon as it returns."""

    def __init__(self, port=0):
        self.connections = 0
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", port))  # loopback only; port 0: a free one
        self.sock.listen(64)
        self.port = self.sock.getsockname()[1]
        self.url = "http://127.0.0.1:%d" % self.port
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    def handle(self, conn, number):
        raise NotImplementedError

    def _accept(self):
        while not self._stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            with self._lock:
                self.connections += 1
                n = self.connections
            threading.Thread(target=self.handle, args=(conn, n), daemon=True).start()

    def close(self):
        self._stop.set()
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.sock.close()
        self._thread.join(5)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def _accepted(conn, tls):
    """An accepted connection made ready: no Nagle delay, TLS when tls (an ssl.SSLContext) is given. None, the
    connection closed, when the handshake fails."""
    _nodelay(conn)
    if tls is None:
        return conn
    try:
        return tls.wrap_socket(conn, server_side=True)
    except OSError:
        conn.close()
        return None


class FakeServer(Listener):
    """A scripted HTTP/1.1 server: each request gets the next action of
    actions (bytes, stall(s) or close_after(b): see the module's doc; or any
    act(conn) that returns "close" to close the connection), then default
    (200 "ok" unless given) once they are used up. It records each request
    as (head, body) in .requests, unless record=False (the bench: thousands
    of posts). tls: an ssl.SSLContext to serve HTTPS with."""

    def __init__(self, actions=(), default=None, tls=None, record=True):
        self.actions = list(actions)
        self.default = reply() if default is None else default
        self.tls = tls
        self.record = record
        self.requests = []  # (head bytes, body bytes)
        super().__init__()
        if tls is not None:
            self.url = "https://127.0.0.1:%d" % self.port

    def handle(self, conn, number):
        conn = _accepted(conn, self.tls)
        if conn is None:
            return
        f = conn.makefile("rb")
        try:
            while True:
                req = read_message(f)
                if req is None:
                    return
                if self.record:
                    self.requests.append(req)
                action = self.actions.pop(0) if self.actions else self.default
                if isinstance(action, tuple):  # stall(s): answer nothing, close after s
                    self._stop.wait(action[1])
                    return
                if callable(action):
                    if action(conn) == "close":
                        return
                else:
                    conn.sendall(action)
        except OSError:
            pass
        finally:
            f.close()
            conn.close()


_WS_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


def _ws_read(f):
    """(opcode, payload) of the next frame a client sent (masked, whole:
    the board never fragments); EOFError at the end of the stream."""
    head = f.read(2)
    if len(head) < 2:
        raise EOFError
    n = head[1] & 127
    if n == 126:
        n = struct.unpack(">H", f.read(2))[0]
    elif n == 127:
        n = struct.unpack(">Q", f.read(8))[0]
    mask = f.read(4) if head[1] & 128 else b"\0\0\0\0"
    data = f.read(n)
    if len(data) < n:
        raise EOFError
    return head[0] & 15, bytes(b ^ mask[i & 3] for i, b in enumerate(data))


def _ws_frame(op, payload):
    n = len(payload)
    head = bytes((0x80 | op, n)) if n < 126 else struct.pack(">BBH", 0x80 | op, 126, n)
    return head + payload


def _rm_decode(op, payload):
    # a remote management message: binary frames are CBOR (decoded by cbor2, never by uingest's own code)
    if op == 2:
        import cbor2  # only for a CBOR session: the JSON fake needs no dependency

        return cbor2.loads(payload)
    return json.loads(payload)


def _rm_frame(encoding, obj):
    if encoding == "cbor":
        import cbor2

        return _ws_frame(2, cbor2.dumps(obj))
    return _ws_frame(1, json.dumps(obj).encode())


class FakeRemoteManagement(Listener):
    """Edge Impulse's remote management service, faked for the tests and the
    bench: a WebSocket server on raw sockets, JSON text or CBOR (a session's
    encoding is its hello's: a binary frame is CBOR, decoded with cbor2). A
    connection's first message must be a hello: checked against api_key
    (None: any key), answered {"hello": true}, or {"hello": false, "err"} and
    closed. Then send(obj) sends to the newest session and next() returns
    the device's messages in order, decoded. .connections counts every TCP
    connection, .hellos every hello, .opcodes every data frame's opcode (1
    text, 2 binary) the devices sent; on_hello: messages sent after each
    accepted hello (the bench's sample request). drop() cuts the session.
    tls: an ssl.SSLContext to serve wss:// with."""

    def __init__(self, api_key=None, on_hello=(), port=0, tls=None):
        self.api_key = api_key
        self.tls = tls
        self.on_hello = list(on_hello)
        self.hellos = []
        self.opcodes = []
        self.received = queue.Queue()
        self.session = None
        self.encoding = "json"  # the newest session's
        self._send_lock = threading.Lock()
        super().__init__(port)
        self.url = "%s://127.0.0.1:%d" % ("ws" if tls is None else "wss", self.port)

    def handle(self, conn, number):
        conn = _accepted(conn, self.tls)
        if conn is None:
            return
        f = conn.makefile("rb")
        try:
            f.readline()  # GET ... HTTP/1.1
            key = b""
            while True:
                line = f.readline()
                if line.strip() == b"":
                    break
                name, _, value = line.partition(b":")
                if name.strip().lower() == b"sec-websocket-key":
                    key = value.strip()
            accept = base64.b64encode(hashlib.sha1(key + _WS_GUID).digest())
            conn.sendall(
                b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                b"Sec-WebSocket-Accept: " + accept + b"\r\n\r\n"
            )
            op, payload = _ws_read(f)
            self.opcodes.append(op)
            encoding = "cbor" if op == 2 else "json"
            hello = _rm_decode(op, payload)["hello"]
            self.hellos.append(hello)
            if self.api_key is not None and hello.get("apiKey") != self.api_key:
                refusal = _rm_frame(encoding, {"hello": False, "err": "Invalid API key"})
                conn.sendall(refusal + _ws_frame(8, b"\x03\xf0"))
                return
            with self._send_lock:
                conn.sendall(_rm_frame(encoding, {"hello": True}))
                self.session = conn
                self.encoding = encoding
            for m in self.on_hello:
                self.send(m)
            while True:
                op, payload = _ws_read(f)
                if op == 8:
                    with self._send_lock:
                        conn.sendall(_ws_frame(8, payload[:2]))
                    return
                if op == 9:
                    with self._send_lock:
                        conn.sendall(_ws_frame(10, payload))
                elif op in (1, 2):
                    self.opcodes.append(op)
                    self.received.put(_rm_decode(op, payload))
        except Exception:  # a device that is gone or unreadable (JSON, CBOR): this connection ends
            pass
        finally:
            f.close()
            conn.close()

    def send(self, obj):
        """obj to the newest session in its encoding (JSON text, or CBOR in a
        binary frame); a str goes as a text frame as it is, bytes as a binary
        frame as they are (a hostile server's messages)."""
        if isinstance(obj, bytes):
            frame = _ws_frame(2, obj)
        elif isinstance(obj, str):
            frame = _ws_frame(1, obj.encode())
        else:
            frame = _rm_frame(self.encoding, obj)
        with self._send_lock:
            self.session.sendall(frame)  # pyright: ignore[reportOptionalMemberAccess]

    def next(self, timeout=10.0):
        """The device's next message (a dict); queue.Empty after timeout s."""
        return self.received.get(timeout=timeout)

    def wait_session(self, sessions=1, timeout=10.0):
        """Wait until this many hellos have come; True when they have."""
        end = time.monotonic() + timeout
        while len(self.hellos) < sessions:
            if time.monotonic() > end:
                return False
            time.sleep(0.02)
        while self.session is None and time.monotonic() < end:
            time.sleep(0.02)
        return True

    def drop(self):
        """Cut the session as a server that went away would (no close frame)."""
        s = self.session
        self.session = None
        if s is not None:
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


class FaultProxy(Listener):
    """A fault-injecting HTTP/1.1 proxy, for putting between the firmware and
    `uingest serve`. It reads each request whole (head and Content-Length
    body) from the client, then applies the next action of its script (PASS
    once the script is used up; see the module's doc).

    Every request is recorded in .events as (request number, connection
    number, action name, monotonic time). Keep-alive is kept on both sides:
    one upstream connection per client connection, opened when first needed."""

    def __init__(self, upstream_port, script=(), upstream_host="127.0.0.1"):
        self.upstream = (upstream_host, upstream_port)
        self.script = list(script)
        self.events = []  # (request number, connection number, action name, time.monotonic())
        super().__init__()

    def actions(self):
        return [e[2] for e in self.events]

    def _next(self, conn_no):
        with self._lock:
            action = self.script.pop(0) if self.script else PASS
            self.events.append((len(self.events), conn_no, action[0], time.monotonic()))
        return action

    def handle(self, client, conn_no):
        _nodelay(client)
        cfile = client.makefile("rb")
        up = ufile = None
        try:
            while not self._stop.is_set():
                req = read_message(cfile)
                if req is None:
                    return
                action = self._next(conn_no)
                kind = action[0]
                if kind == "reset_before":
                    return _reset(client)
                if kind == "answer":
                    client.sendall(action[1])
                    continue
                if kind == "stall_before":
                    self._stop.wait(action[1])
                    return
                if up is None:
                    up = socket.create_connection(self.upstream, timeout=30)
                    _nodelay(up)
                    ufile = up.makefile("rb")
                up.sendall(req[0] + req[1])
                resp = read_message(ufile)
                if resp is None:
                    return  # the server closed: so does the client's connection
                head, body = resp
                if kind == "reset_after":
                    return _reset(client)
                if kind == "stall_after":
                    self._stop.wait(action[1])
                    return
                if kind == "cut":
                    assert len(body) >= 2, "nothing to cut in half"
                    client.sendall(head + body[: len(body) // 2])
                    client.shutdown(socket.SHUT_WR)
                    return
                if kind == "slow":
                    for i in range(len(head) + len(body)):
                        client.sendall((head + body)[i : i + 1])
                        self._stop.wait(action[1])
                    continue
                client.sendall(head + body)
        except OSError:
            pass
        finally:
            for f in (cfile, ufile):
                if f is not None:
                    f.close()
            if up is not None:
                up.close()
            try:
                client.close()
            except OSError:
                pass


class LatencyProxy(Listener):
    """A TCP proxy that makes loopback behave like a network with a round trip
    of 2 x one_way_ms: a new connection waits one round trip (the handshake a
    real link costs), then every byte waits one_way_ms in each direction.
    Bytes only, so TLS passes through it."""

    def __init__(self, target_port: int, one_way_ms: float):
        self.delay = one_way_ms / 1000
        self.target = target_port
        super().__init__()

    def handle(self, conn, number):
        up = socket.create_connection(("127.0.0.1", self.target))
        for s in (conn, up):
            _nodelay(s)
        opened = time.monotonic() + 2 * self.delay  # SYN, SYN-ACK
        threading.Thread(target=self._pipe, args=(up, conn, opened), daemon=True).start()
        self._pipe(conn, up, opened)

    def _pipe(self, src, dst, opened):
        try:
            while True:
                data = src.recv(65536)
                if not data:
                    break
                due = max(time.monotonic() + self.delay, opened + self.delay)
                left = due - time.monotonic()
                if left > 0:
                    time.sleep(left)
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                try:
                    s.shutdown(2)
                except OSError:
                    pass


# -- `uingest serve` as a process -------------------------------------------------------------------

SERVE = (sys.executable, "-m", "uingest_tools.serve")


class ServeProcess(subprocess.Popen):
    """A running `uingest serve`: a subprocess.Popen that also knows its
    .port and .url."""

    def __init__(self, args, port: int, scheme: str, **popen):
        super().__init__(args, **popen)
        self.port = port
        self.url = "%s://127.0.0.1:%d" % (scheme, port)


def _healthy(port: int, ssl_context=None) -> bool:
    if ssl_context is None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
    else:
        conn = http.client.HTTPSConnection("127.0.0.1", port, timeout=5, context=ssl_context)
    try:
        conn.request("GET", "/api/health")
        r = conn.getresponse()
        return r.status == 200 and r.read() == b"ok"
    except (OSError, http.client.HTTPException):
        return False
    finally:
        conn.close()


def start_serve(*args: str, port: int = 0, command=SERVE, ssl_context=None, timeout: float = 20, **popen):
    """Start `uingest serve` (command: python -m uingest_tools.serve unless
    given, e.g. the `uingest` CLI's) with args on port (a free one when 0)
    and wait until GET /api/health answers 200 "ok" (over HTTPS, verified
    with ssl_context, when given). popen: subprocess.Popen's keywords (env,
    stdout, stderr, text...). Returns the ServeProcess; the caller stops it.
    Raises RuntimeError when the server exits or does not answer within
    timeout seconds, after killing it. Without a --remote-port (or --no-remote) in args the remote
    management server takes a free port, so that servers started side by side never race for 4820."""
    port = port or free_port()
    remote = () if {"--remote-port", "--no-remote"} & set(args) else ("--remote-port", "0")
    proc = ServeProcess(
        [*command, "--port", str(port), *remote, *args], port, "http" if ssl_context is None else "https", **popen
    )
    deadline = time.monotonic() + timeout
    try:
        while not _healthy(port, ssl_context):
            if proc.poll() is not None:
                raise RuntimeError("uingest serve exited with status %d" % proc.returncode)
            if time.monotonic() > deadline:
                raise RuntimeError("uingest serve did not start within %g s" % timeout)
            time.sleep(0.05)
    except BaseException:
        if proc.poll() is None:
            proc.kill()
        proc.wait()
        raise
    return proc
