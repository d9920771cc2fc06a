"""A scripted HTTP server on loopback for client tests: each request gets the
next action from a list. It records the raw requests and counts connections."""

import socket
import threading
import time


def reply(status=200, body=b"ok", headers=None, reason="OK"):
    head = "HTTP/1.1 %d %s\r\nContent-Length: %d\r\n" % (status, reason, len(body))
    for k, v in (headers or {}).items():
        head += "%s: %s\r\n" % (k, v)
    return head.encode() + b"\r\n" + body


class FakeServer:
    def __init__(self, actions):
        self.actions = list(actions)
        self.requests = []  # (head bytes, body bytes)
        self.connections = 0
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(8)
        self.port = self.sock.getsockname()[1]
        self.url = "http://127.0.0.1:%d" % self.port
        self._stop = False
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self):
        while not self._stop:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.connections += 1
            threading.Thread(target=self._handle, args=(conn,), daemon=True).start()

    def _read_request(self, f):
        head = b""
        while not head.endswith(b"\r\n\r\n"):
            line = f.readline()
            if not line:
                return None
            head += line
        length = 0
        for line in head.split(b"\r\n"):
            if line.lower().startswith(b"content-length:"):
                length = int(line.split(b":")[1])
        return head, f.read(length)

    def _handle(self, conn):
        f = conn.makefile("rb")
        try:
            while True:
                req = self._read_request(f)
                if req is None:
                    return
                self.requests.append(req)
                action = self.actions.pop(0) if self.actions else reply()
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

    def close(self):
        self._stop = True
        self.sock.close()


def close_after(data):
    def act(conn):
        conn.sendall(data)
        return "close"

    return act


def stall(seconds):
    def act(conn):
        time.sleep(seconds)
        return "close"

    return act
