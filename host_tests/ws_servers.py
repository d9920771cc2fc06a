"""WebSocket servers on loopback for uingest.ws's tests.

    EchoServer   a well-behaved peer: the `websockets` library (RFC 6455 as its
                 maintainers read it), echoing, plus a few commands (below)
    RawServer    a scripted peer on a raw socket, for frames no library sends:
                 it answers the upgrade (or not), then sends its script's bytes

Both bind 127.0.0.1 on a free port and can serve TLS (an ssl.SSLContext).
"""

from __future__ import annotations

import base64
import hashlib
import socket
import struct
import threading
import time

from websockets.sync.server import serve

GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


def pattern(n, seed=0):
    """n bytes that differ from message to message (seed) and byte to byte."""
    return bytes((seed * 7 + i * 13) & 255 for i in range(n))


class EchoServer:
    """`websockets`' sync server. Each message is echoed, unless it is one of:

    frag N SIZE      a text message of SIZE bytes ("a".."z"), sent as N fragments
    sizes A,B,...    binary messages of these sizes, pattern(size, index)
    ping             the server pings; once the pong is back it sends "pong seen"
    close            the server closes: 1000 "bye"
    """

    def __init__(self, tls=None, max_size=2**20):
        self.received = []  # what clients sent, in order
        self.pongs = 0
        self._server = serve(
            self._handle,
            "127.0.0.1",
            0,
            ssl=tls,
            max_size=max_size,
            compression=None,
            ping_interval=None,
            close_timeout=1,
        )
        self.port = self._server.socket.getsockname()[1]
        self.url = "%s://127.0.0.1:%d/ws" % ("wss" if tls else "ws", self.port)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    def _handle(self, ws):
        for msg in ws:
            self.received.append(msg)
            if isinstance(msg, str) and msg.startswith("frag "):
                _, n, size = msg.split()
                text = "".join(chr(97 + i % 26) for i in range(int(size)))
                step = -(-len(text) // int(n))
                ws.send([text[i : i + step] for i in range(0, len(text), step)])
            elif isinstance(msg, str) and msg.startswith("sizes "):
                for i, size in enumerate(msg[6:].split(",")):
                    ws.send(pattern(int(size), i))
            elif msg == "ping":
                if ws.ping(b"are you there").wait(5):
                    self.pongs += 1
                    ws.send("pong seen")
            elif msg == "close":
                ws.close(1000, "bye")
                return
            else:
                ws.send(msg)

    def close(self):
        self._server.shutdown()
        self._thread.join(5)


def frame(op, payload=b"", fin=True, rsv=0, mask=None, length=None):
    """One frame's bytes as a server would send them (mask: 4 bytes to mask
    it, which a server must not). length: the length field's value (e.g. a
    lie, or 2**63 for the top bit), written in the 64-bit form when >= 2**16."""
    n = len(payload) if length is None else length
    head = bytes([(0x80 if fin else 0) | rsv << 4 | op])
    m = 0x80 if mask else 0
    if n < 126:
        head += bytes([m | n])
    elif n < 65536:
        head += bytes([m | 126]) + struct.pack(">H", n)
    else:
        head += bytes([m | 127]) + struct.pack(">Q", n)
    if mask:
        head += mask
        payload = bytes(b ^ mask[i & 3] for i, b in enumerate(payload))
    return head + payload


def close_frame(code, reason=b""):
    return frame(8, struct.pack(">H", code) + reason)


def parse_client_frames(data):
    """The client's frames: [(fin, opcode, masked, unmasked payload)] and
    the bytes after the last whole one."""
    out = []
    while len(data) >= 2:
        fin, op, masked, n = data[0] >> 7, data[0] & 15, data[1] >> 7, data[1] & 127
        at = 2
        if n == 126:
            if len(data) < 4:
                break
            n, at = struct.unpack(">H", data[2:4])[0], 4
        elif n == 127:
            if len(data) < 10:
                break
            n, at = struct.unpack(">Q", data[2:10])[0], 10
        key = data[at : at + 4] if masked else b"\0\0\0\0"
        at += 4 if masked else 0
        if len(data) < at + n:
            break
        payload = bytes(b ^ key[i & 3] for i, b in enumerate(data[at : at + n]))
        out.append((bool(fin), op, bool(masked), payload))
        data = data[at + n :]
    return out, data


def accept_of(key):
    return base64.b64encode(hashlib.sha1(key + GUID).digest())


def upgrade_reply(key, extra=b""):
    return (
        b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        b"Sec-WebSocket-Accept: " + accept_of(key) + b"\r\n" + extra + b"\r\n"
    )


class RawServer:
    """A scripted peer. Each connection: read the upgrade request (its head
    in .requests), answer handshake(key) (default: a right 101), then play
    script: bytes are sent, a number is a pause in seconds, "close" closes
    (else it holds the connection until hold seconds pass or the client
    closes). What the client sends after the upgrade is in .received (one
    bytes per connection, all of it)."""

    def __init__(self, script=(), handshake=upgrade_reply, hold=10.0, tls=None):
        self.script = list(script)
        self.handshake = handshake
        self.hold = hold
        self.tls = tls
        self.requests = []
        self.received = []
        self.connections = 0
        self._stop = threading.Event()
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(8)
        self.port = self.sock.getsockname()[1]
        self.url = "%s://127.0.0.1:%d/raw" % ("wss" if tls else "ws", self.port)
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while not self._stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.connections += 1
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn):
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if self.tls is not None:
            try:
                conn = self.tls.wrap_socket(conn, server_side=True)
            except OSError:
                conn.close()
                return
        index = len(self.received)
        self.received.append(b"")
        try:
            head = b""
            while b"\r\n\r\n" not in head:
                chunk = conn.recv(4096)
                if not chunk:
                    return
                head += chunk
            head, _, rest = head.partition(b"\r\n\r\n")
            self.requests.append(head)
            self.received[index] = rest
            key = b""
            for line in head.split(b"\r\n")[1:]:
                name, _, value = line.partition(b":")
                if name.strip().lower() == b"sec-websocket-key":
                    key = value.strip()
            reader = threading.Thread(target=self._read, args=(conn, index), daemon=True)
            conn.sendall(self.handshake(key))
            reader.start()
            for step in self.script:
                if isinstance(step, (int, float)):
                    time.sleep(step)
                elif step == "close":
                    return
                else:
                    conn.sendall(step)
            reader.join(self.hold)
        except OSError:
            pass
        finally:
            try:  # shutdown first: the reader thread's recv would hold the connection open
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            try:
                conn.close()
            except OSError:
                pass

    def _read(self, conn, index):
        while True:
            try:
                chunk = conn.recv(65536)
            except OSError:
                return
            if not chunk:
                return
            self.received[index] += chunk

    def frames(self, at_least=1, connection=0, wait=3.0):
        """The client's frames on a connection, once at_least of them have
        come (or wait seconds have passed)."""
        t0 = time.monotonic()
        while True:
            got = parse_client_frames(self.received[connection])[0] if len(self.received) > connection else []
            if len(got) >= at_least or time.monotonic() - t0 > wait:
                return got
            time.sleep(0.01)

    def close(self):
        self._stop.set()
        try:
            self.sock.close()
        except OSError:
            pass
