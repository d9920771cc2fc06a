"""A fault-injecting HTTP/1.1 proxy on loopback, for putting between the
firmware and `uingest serve`.

It reads each request whole (head and Content-Length body) from the client,
then applies the next action of its script (one action per request, in the
order requests arrive; PASS once the script is used up):

    PASS            forward the request, return the server's response
    RESET_BEFORE    reset the client's connection (RST); the server never sees the request
    RESET_AFTER     forward; once the server has answered, reset the client's connection
    answer(...)     answer with these status, headers and body; the server never sees the request
    stall(s, fwd)   wait s seconds, then close (after forwarding the request when fwd)
    CUT             forward; return the response cut halfway through its body, then close
    slow(gap)       forward; trickle the response to the client one byte every gap seconds

Every request is recorded in .events as (request number, connection number,
action name, monotonic time). Keep-alive is kept on both sides: one upstream
connection per client connection, opened when first needed.
"""

import socket
import struct
import threading
import time

PASS = ("pass",)
RESET_BEFORE = ("reset_before",)
RESET_AFTER = ("reset_after",)
CUT = ("cut",)


def answer(status, body=b"", headers=None, reason="Proxy Says"):
    head = "HTTP/1.1 %d %s\r\nContent-Length: %d\r\n" % (status, reason, len(body))
    for k, v in (headers or {}).items():
        head += "%s: %s\r\n" % (k, v)
    return ("answer", head.encode() + b"\r\n" + body, status)


def stall(seconds, forward=False):
    return ("stall_after" if forward else "stall_before", seconds)


def slow(gap):
    return ("slow", gap)


def read_message(f):
    """One HTTP message from a buffered file: (head, body), or None at a clean EOF
    before it. Bodies: Content-Length only (what both sides here send)."""
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


def _reset(sock):
    # SO_LINGER with a zero timeout: close() sends RST instead of FIN
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    except OSError:
        pass
    sock.close()


class FaultProxy:
    def __init__(self, upstream_port, script=(), upstream_host="127.0.0.1"):
        self.upstream = (upstream_host, upstream_port)
        self.script = list(script)
        self.events = []  # (request number, connection number, action name, time.monotonic())
        self.connections = 0
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))  # loopback only
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]
        self.url = "http://127.0.0.1:%d" % self.port
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def close(self):
        self._stop.set()
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.sock.close()
        self._thread.join(5)

    def actions(self):
        return [e[2] for e in self.events]

    def _accept(self):
        while not self._stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            with self._lock:
                self.connections += 1
                n = self.connections
            threading.Thread(target=self._handle, args=(conn, n), daemon=True).start()

    def _next(self, conn_no):
        with self._lock:
            action = self.script.pop(0) if self.script else PASS
            self.events.append((len(self.events), conn_no, action[0], time.monotonic()))
        return action

    def _handle(self, client, conn_no):
        client.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
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
                    up.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
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
