"""uingest serve against slow, idle and surplus clients: each is closed after its named deadline, a 408 says
why, the cap makes room for a device, and the log gets one line, not one per connection."""

import http.client
import logging
import os
import socket
import subprocess
import sys
import time

import pytest

from helpers import read_index
from uingest import message
from uingest.window import Window
from uingest_tools import serve
from uingest_tools.connections import Limits, default_max_connections
from uingest_tools.loopback import free_port

API_KEY = "ei_test_key"
SHORT = Limits(request=0.6, headers=0.8, body=0.8, idle=1.0)


def window_body():
    w = Window([("accX", "m/s2")], 10, 4)
    for i in range(4):
        w.append(float(i))
    return message.encode(w, "cbor", hmac_key=None, device_type="TEST")


BODY = window_body()


def request_head(length=None, label="idle"):
    return (
        "POST /api/training/data HTTP/1.1\r\nHost: x\r\nContent-Type: application/cbor\r\n"
        "x-api-key: %s\r\nx-file-name: %s.cbor\r\nx-label: %s\r\nContent-Length: %d\r\n\r\n"
        % (API_KEY, label, label, len(BODY) if length is None else length)
    ).encode()


@pytest.fixture
def start(tmp_path):
    servers = []

    def start(limits=SHORT):
        data = str(tmp_path / ("data%d" % len(servers)))
        srv = serve.ServerThread(serve.create_app(data, api_key=API_KEY), limits=limits).start()
        servers.append(srv)
        srv.data_dir = data
        return srv

    yield start
    for srv in servers:
        srv.stop()


def connect(srv, timeout=10):
    return socket.create_connection(("127.0.0.1", srv.port), timeout=timeout)


def read_until_closed(s, limit=10.0):
    """Everything the server sends until it closes: (bytes, seconds it took)."""
    t0 = time.monotonic()
    s.settimeout(limit)
    got = b""
    while True:
        try:
            part = s.recv(4096)
        except ConnectionResetError:
            break
        if not part:
            break
        got += part
    return got, time.monotonic() - t0


def post(srv, label="idle", conn=None):
    c = conn or http.client.HTTPConnection("127.0.0.1", srv.port, timeout=10)
    headers = {"Content-Type": "application/cbor", "x-api-key": API_KEY, "x-file-name": label + ".cbor"}
    c.request("POST", "/api/training/data", BODY, headers)
    r = c.getresponse()
    r.read()
    return r.status


def test_a_silent_connection_is_closed_after_the_request_timeout(start):
    srv = start()
    with connect(srv) as s:
        got, took = read_until_closed(s)
    assert got == b""
    assert 0.4 < took < 3.0


def test_half_a_request_line_gets_408_naming_the_option(start):
    srv = start()
    with connect(srv) as s:
        s.sendall(b"POST /api/tra")
        got, took = read_until_closed(s)
    assert got.startswith(b"HTTP/1.1 408 ")
    assert b"--request-timeout" in got and b"connection: close" in got.lower()
    assert took < 3.0


def test_dripped_headers_do_not_extend_the_header_deadline(start):
    srv = start()
    with connect(srv) as s:
        s.sendall(b"POST /api/training/data HTTP/1.1\r\n")
        t0 = time.monotonic()
        closed = False
        for c in b"Host: x\r\nx-a: " + b"b" * 100:  # a byte every 0.1 s: 10 s of headers if allowed
            try:
                s.sendall(bytes([c]))
            except (BrokenPipeError, ConnectionResetError):
                closed = True
                break
            s.settimeout(0.1)
            try:
                got = s.recv(4096)
            except socket.timeout:
                continue
            assert got.startswith(b"HTTP/1.1 408 ") and b"--header-timeout" in got
            closed = True
            break
        assert closed
        assert time.monotonic() - t0 < 3.0


def test_a_stalled_body_is_closed_and_nothing_is_stored(start):
    srv = start()
    with connect(srv) as s:
        s.sendall(request_head() + BODY[:10])
        got, took = read_until_closed(s)
    assert got.startswith(b"HTTP/1.1 408 ") and b"--body-timeout" in got, got
    assert took < 3.0
    assert read_index(srv.data_dir) == []
    assert post(srv) == 200  # and the server goes on


def test_a_body_that_keeps_coming_may_take_longer_than_the_gap(start):
    srv = start()
    with connect(srv) as s:
        s.sendall(request_head())
        for i in range(0, len(BODY), 8):  # 0.4 s gaps: more than the body timeout in all, under it each
            s.sendall(BODY[i : i + 8])
            time.sleep(0.4)
        s.settimeout(5)
        reply = s.recv(4096)
    assert reply.startswith(b"HTTP/1.1 200 ")
    assert len(read_index(srv.data_dir)) == 1


def test_kept_alive_connections_live_until_the_idle_timeout(start):
    srv = start()
    conn = http.client.HTTPConnection("127.0.0.1", srv.port, timeout=10)
    assert post(srv, conn=conn) == 200
    time.sleep(0.5)  # under the idle timeout: the same connection is reused
    sock = conn.sock
    assert post(srv, conn=conn) == 200
    assert conn.sock is sock
    got, took = read_until_closed(conn.sock)
    assert got == b"" and 0.7 < took < 3.0
    conn.close()


def test_a_kept_alive_connection_that_starts_a_request_and_stops_gets_408(start):
    srv = start()
    conn = http.client.HTTPConnection("127.0.0.1", srv.port, timeout=10)
    assert post(srv, conn=conn) == 200
    conn.sock.sendall(b"POST /api/training/data HTTP/1.1\r\nHost")
    got, took = read_until_closed(conn.sock)
    assert got.startswith(b"HTTP/1.1 408 ") and took < 3.0
    conn.close()


def test_many_half_requests_do_not_stop_a_device(start):
    srv = start(Limits(request=30, headers=30, body=30, idle=30, max_connections=50))
    slow = []
    try:
        for _ in range(120):  # more than the cap: the oldest half requests make room
            s = connect(srv)
            s.sendall(b"POST /api/training/data HTTP/1.1\r\nHost: x\r\n")
            slow.append(s)
        t0 = time.monotonic()
        assert post(srv, "device") == 200
        assert time.monotonic() - t0 < 2.0
        assert [r["label"] for r in read_index(srv.data_dir)] == ["device"]
    finally:
        for s in slow:
            s.close()


def test_over_the_cap_with_nothing_to_close_the_new_connection_gets_503(start):
    srv = start(Limits(request=30, headers=30, body=30, idle=30, max_connections=5))
    busy = []
    try:
        for _ in range(5):  # each in the middle of its body: never closed to make room
            s = connect(srv)
            s.sendall(request_head() + BODY[:5])
            busy.append(s)
        time.sleep(0.2)
        with connect(srv) as s:
            got, _ = read_until_closed(s)
        assert got.startswith(b"HTTP/1.1 503 ")
        assert b"retry-after: 1" in got.lower() and b"--max-connections" in got
        for s in busy:  # the ones it kept finish their uploads
            s.sendall(BODY[5:])
            s.settimeout(5)
            assert s.recv(4096).startswith(b"HTTP/1.1 200 ")
    finally:
        for s in busy:
            s.close()


def test_a_request_head_over_the_limit_gets_431_and_the_close(start):
    from uingest_tools.connections import HEAD_BYTES

    srv = start(Limits(request=30, headers=30, body=30, idle=30))
    with connect(srv) as s:
        s.sendall(b"POST /api/training/data HTTP/1.1\r\nHost: x\r\n")
        for _ in range(HEAD_BYTES // 1000 + 1):  # headers within their deadline, never ending
            s.sendall(b"x-pad: " + b"p" * 991 + b"\r\n")
        got, took = read_until_closed(s)
    assert got.startswith(b"HTTP/1.1 431 ") and b"over %d bytes" % HEAD_BYTES in got and took < 3.0
    assert post(srv) == 200  # and the server goes on


def test_pipelined_requests_are_answered_in_order_then_the_connection_idles(start):
    srv = start()
    with connect(srv) as s:
        s.sendall(request_head(label="one") + BODY + request_head(label="two") + BODY)
        got, took = read_until_closed(s)
    assert got.count(b"HTTP/1.1 200 ") == 2 and 0.9 < took < 3.0  # closed by the idle timeout, not before
    assert [r["label"] for r in read_index(srv.data_dir)] == ["one", "two"]


def test_closes_are_logged_in_one_line_not_one_per_connection(start, caplog):
    srv = start(Limits(request=0.3, headers=0.3, body=0.3, idle=0.3))
    caplog.set_level(logging.WARNING, logger="uingest.serve")
    socks = [connect(srv) for _ in range(30)]
    for s in socks:
        s.sendall(b"GET /api/he")
    for s in socks:
        read_until_closed(s)
        s.close()
    lines = [r.getMessage() for r in caplog.records if r.name == "uingest.serve"]
    assert len(lines) == 1, lines  # the first close is reported at once, the rest in a minute
    assert "--request-timeout" in lines[0]


def test_default_cap_leaves_room_under_the_open_file_limit():
    assert default_max_connections(1024) == 1024 - 64
    assert default_max_connections(20) == 1
    assert default_max_connections(10**6) == 10000


def test_help_names_every_timeout_and_the_cap():
    out = subprocess.run(
        [sys.executable, "-m", "uingest_tools.serve", "--help"], capture_output=True, text=True, check=True
    ).stdout
    for flag in ("--request-timeout", "--header-timeout", "--body-timeout", "--idle-timeout", "--max-connections"):
        assert flag in out


def test_a_low_open_file_limit_is_one_line_not_a_traceback_per_accept(tmp_path):
    """The server cannot raise a hard limit of 80 descriptors: it caps connections under it, says so once,
    and a device still posts while 200 silent connections are thrown at it."""
    port = free_port()
    env = dict(os.environ, UINGEST_API_KEY=API_KEY)
    code = (
        "import resource, sys; resource.setrlimit(resource.RLIMIT_NOFILE, (80, 80)); "
        "from uingest_tools import serve; sys.exit(serve.main(sys.argv[1:]))"
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", code, "--port", str(port), "--data-dir", str(tmp_path / "d")],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    socks = []
    try:
        deadline = time.monotonic() + 15
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                assert time.monotonic() < deadline, "server did not start"
                time.sleep(0.1)
        for _ in range(200):
            try:
                socks.append(socket.create_connection(("127.0.0.1", port), timeout=2))
            except OSError:
                break
        time.sleep(0.5)
        c = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        headers = {"Content-Type": "application/cbor", "x-api-key": API_KEY, "x-file-name": "dev.cbor"}
        for _ in range(20):  # the cap closes a silent connection to let the device in
            try:
                c.request("POST", "/api/training/data", BODY, headers)
                status = c.getresponse().status
                break
            except (ConnectionError, http.client.HTTPException, OSError):
                c.close()
                time.sleep(0.2)
        assert status == 200
    finally:
        for s in socks:
            s.close()
        proc.terminate()
        out = proc.communicate(timeout=15)[0]
    assert "Traceback" not in out, out
    assert "connections: at most 16;" in out, out  # 80 descriptors less the 64 kept for the server's files
    assert len([line for line in out.splitlines() if "cannot accept" in line]) <= 1, out
    assert API_KEY not in out


def test_a_thousand_half_requests_do_not_stop_a_device(tmp_path):
    """`uingest serve` as users run it (its own process, its default limits): a thousand connections that send
    half a request, and a device posts as if they were not there."""
    from uingest_tools.connections import raise_open_file_limit
    from uingest_tools.loopback import start_serve

    _, files = raise_open_file_limit()  # this process holds the thousand
    half = min(1000, files - 100)
    env = dict(os.environ, UINGEST_API_KEY=API_KEY)
    srv = start_serve("--data-dir", str(tmp_path / "d"), env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    slow = []
    try:
        for _ in range(half):
            s = socket.create_connection(("127.0.0.1", srv.port), timeout=5)
            s.sendall(b"POST /api/training/data HTTP/1.1\r\nHost: x\r\nContent-Le")
            slow.append(s)
        c = http.client.HTTPConnection("127.0.0.1", srv.port, timeout=10)
        t0 = time.monotonic()
        for i in range(5):
            headers = {"Content-Type": "application/cbor", "x-api-key": API_KEY, "x-file-name": "dev%d.cbor" % i}
            c.request("POST", "/api/training/data", BODY, headers)
            r = c.getresponse()
            r.read()
            assert r.status == 200
        assert time.monotonic() - t0 < 5.0
        assert half >= 900
    finally:
        for s in slow:
            s.close()
        srv.terminate()
        srv.wait()
