"""Hostile WebSocket input against `uingest serve`'s remote management port (the server as its own process):
bad opcodes, lengths over the bound, unmasked client frames, a hello that is neither JSON nor CBOR, a flood
of pings from a peer that never reads, a request that is not a WebSocket handshake, a connection that never
sends one. Each is one log line,
the server does not crash, its memory stays bounded, and a well-behaved device still connects and is
sampled after all of them."""

import base64
import http.client
import json
import os
import socket
import struct
import time

from remote_device import FakeDevice

from uingest_tools.loopback import free_port, start_serve

API_KEY = "ei_hostile_ws_0c3d"


def handshake(port):
    s = socket.create_connection(("127.0.0.1", port), timeout=5)
    key = base64.b64encode(os.urandom(16)).decode()
    s.sendall(
        (
            "GET / HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            "Sec-WebSocket-Key: %s\r\nSec-WebSocket-Version: 13\r\n\r\n" % (port, key)
        ).encode()
    )
    reply = b""
    while b"\r\n\r\n" not in reply:
        chunk = s.recv(4096)
        assert chunk, reply
        reply += chunk
    assert reply.startswith(b"HTTP/1.1 101"), reply
    return s


def frame(opcode, payload=b"", masked=True, fin=True, length=None):
    n = len(payload) if length is None else length
    head = bytes([(0x80 if fin else 0) | opcode])
    mask_bit = 0x80 if masked else 0
    if n < 126:
        head += bytes([mask_bit | n])
    elif n < 65536:
        head += bytes([mask_bit | 126]) + struct.pack("!H", n)
    else:
        head += bytes([mask_bit | 127]) + struct.pack("!Q", n)
    if not masked:
        return head + payload
    mask = os.urandom(4)
    return head + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload))


def closed_by_server(s, timeout=10):
    """True when the server ends the connection (a close frame, then EOF, or a reset) within timeout."""
    s.settimeout(timeout)
    try:
        while s.recv(65536):
            pass
        return True
    except ConnectionResetError:
        return True
    except TimeoutError:
        return False
    finally:
        s.close()


def rss_kb(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise AssertionError("no VmRSS")


def test_hostile_websocket_input(tmp_path):
    port = free_port()
    log_path = tmp_path / "serve.log"
    with open(log_path, "w") as log_file:
        proc = start_serve(
            "--data-dir", str(tmp_path / "d"), "--api-key", API_KEY, "--remote-port", str(port), stderr=log_file
        )
    silent = socket.create_connection(("127.0.0.1", port), timeout=5)  # never sends its handshake
    silent_port = silent.getsockname()[1]
    try:

        def lines_after(mark):
            time.sleep(0.3)
            text = log_path.read_text()[mark:]
            quiet = "127.0.0.1:%d:" % silent_port  # its line comes when it comes
            return [ln for ln in text.splitlines() if "uingest.remote" in ln and quiet not in ln]

        def case(name, send, expect_close=True):
            mark = len(log_path.read_text())
            s = handshake(port)
            send(s)
            if expect_close:
                assert closed_by_server(s), name
            lines = wait_lines(mark)
            assert len(lines) == 1, (name, lines)
            assert "Traceback" not in log_path.read_text()[mark:], name
            return lines[0]

        def wait_lines(mark, timeout=10):
            deadline = time.monotonic() + timeout
            while True:
                lines = lines_after(mark)
                if lines or time.monotonic() > deadline:
                    return lines

        line = case("bad opcode", lambda s: s.sendall(frame(0x3, b"x")))
        assert "invalid opcode" in line, line
        line = case("over the bound", lambda s: s.sendall(frame(0x2, length=1 << 40)))
        assert "too big" in line or "1009" in line, line
        line = case("unmasked", lambda s: s.sendall(frame(0x1, b'{"hello": {}}', masked=False)))
        assert "mask" in line, line
        line = case("neither JSON nor CBOR", lambda s: s.sendall(frame(0x2, b"\xff\xfe\x00garbage")))
        assert "hello refused" in line and "neither JSON nor CBOR" in line, line
        line = case("not JSON", lambda s: s.sendall(frame(0x1, b"{hello")))
        assert "hello refused" in line, line
        line = case(
            "fragment over the bound", lambda s: [s.sendall(frame(0x2, b"a" * 60000, fin=False)) for _ in range(2)]
        )
        assert "too big" in line or "1009" in line, line
        line = case("bad UTF-8 text", lambda s: s.sendall(frame(0x1, b"\xc3\x28")))
        assert "utf-8" in line.lower() or "1007" in line, line

        # not a WebSocket request at all: one line each, no traceback
        for garbage in (b"\x16\x03\x01garbage that is not HTTP\r\n\r\n", b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"):
            mark = len(log_path.read_text())
            with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
                s.sendall(garbage)
                assert closed_by_server(s)
            lines = wait_lines(mark)
            assert len(lines) == 1 and "no WebSocket" in lines[0], lines
            assert "Traceback" not in log_path.read_text()[mark:]

        before = rss_kb(proc.pid)
        # floods of pings from peers that never read their pongs: cut when the replies pile up
        for _ in range(3):
            mark = len(log_path.read_text())
            s = handshake(port)
            s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            ping = frame(0x9, b"p" * 125)
            flood = ping * 400
            try:
                for _ in range(400):  # 20 MB of pings
                    s.sendall(flood)
            except OSError:
                pass  # cut by the server
            s.close()
            lines = wait_lines(mark)
            assert 1 <= len(lines) <= 1, lines
        # a flood of pings from a peer that reads: answered, nothing kept
        s = handshake(port)
        s.sendall(frame(0x9, b"p") * 5000)
        got = 0
        s.settimeout(5)
        while got < 5000 * 3:
            chunk = s.recv(65536)
            assert chunk
            got += len(chunk)
        s.close()
        grown = rss_kb(proc.pid) - before
        assert grown < 30 * 1024, "the server grew %d KB" % grown

        # the connection that never sent its handshake was closed after the open timeout (10 s)
        assert closed_by_server(silent, timeout=15)
        assert "127.0.0.1:%d: no WebSocket: no handshake within 10s" % silent_port in log_path.read_text()

        # still up, and a device is sampled as usual
        assert proc.poll() is None
        dev = FakeDevice("ws://127.0.0.1:%d" % port)
        assert dev.say_hello(API_KEY) == {"hello": True}
        conn = http.client.HTTPConnection("127.0.0.1", proc.port, timeout=10)
        body = {"label": "calm", "lengthMs": 100, "category": "training", "intervalMs": 10}
        conn.request("POST", "/v1/api/1/device/AA:BB:CC:00:11:22/start-sampling", json.dumps(body),
                     {"x-api-key": API_KEY})  # fmt: skip
        assert json.loads(conn.getresponse().read())["success"] is True
        conn.close()
        assert dev.record(dev.recv(), proc.port, API_KEY, "AA:BB:CC:00:11:22") == 200
        dev.close()
    finally:
        proc.terminate()
        proc.wait(10)
    assert "Traceback" not in log_path.read_text()
