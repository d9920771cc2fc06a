"""uingest.ws, the board's RFC 6455 client, against a well-behaved peer (the
`websockets` library) and a scripted hostile one (ws_servers.RawServer),
on CPython through the shim and inside the MicroPython unix port (the
shipped .mpy files, a 64K heap). The same session program
(mp_programs/ws_session.py) runs on both interpreters. Whatever the peer
does, the client never raises: it closes with one line in .reason."""

import hashlib
import json
import os
import ssl
import struct
import time

import pytest
import trustme
from ws_servers import EchoServer, RawServer, accept_of, close_frame, frame, pattern, upgrade_reply

from conftest import run_on_cpython

SESSION = "ws_session.py"
CLOSE_1000 = (True, 8, True, struct.pack(">H", 1000))  # the client's close (the session ends with one)


@pytest.fixture(params=["cpython", "micropython"])
def run(request, tmp_path):
    """run(url, steps, **options) -> the session's result, on one interpreter."""

    def script(steps, options):
        path = str(tmp_path / ("script%d.json" % len(os.listdir(tmp_path))))
        with open(path, "w") as f:
            json.dump({"steps": steps, "options": options}, f)
        return path

    if request.param == "cpython":

        def on_cpython(url, steps, **options):
            g = run_on_cpython(SESSION, url, script(steps, options))
            return json.loads(json.dumps(g["result"]))

        return on_cpython
    mpy = request.getfixturevalue("mpy")
    bundle = request.getfixturevalue("bundle")

    def on_micropython(url, steps, **options):
        proc = mpy.run_program(SESSION, url, script(steps, options), path=bundle, heap="64K", timeout=60)
        return json.loads(proc.stdout.decode().strip().splitlines()[-1])

    return on_micropython


@pytest.fixture
def echo():
    srv = EchoServer()
    yield srv
    srv.close()


def logged(data):
    # as ws_session.py logs a message
    return "%d:%s" % (len(data), hashlib.sha256(data).hexdigest()) if len(data) > 32 else data.hex()


def text(s):
    return ["text", logged(s.encode())]


def binary(b):
    return ["binary", logged(bytes(b))]


# -- a well-behaved peer ----------------------------------------------------------------------


def test_text_and_binary_echo(run, echo):
    r = run(echo.url, [["connect"], ["text", "héllo"], ["recv", 3000], ["binary", "00ff10"], ["recv", 3000]])
    assert r["events"] == [
        ["connected", True, ""],
        ["sent", True],
        text("héllo"),
        ["sent", True],
        binary(b"\0\xff\x10"),
    ]
    assert echo.received == ["héllo", b"\0\xff\x10"]
    assert r["closed"] is False


def test_sends_of_every_length_form_arrive_whole(run, echo):
    # 7-bit, 16-bit lengths; over one 256-byte send piece; the bound's size
    sizes = [0, 125, 126, 255, 256, 257, 1000, 2048]
    steps = [["connect"]] + [["binary_n", n] for n in sizes] + [["recv", 3000] for _ in sizes]
    r = run(echo.url, steps)
    want = [bytes(i * 7 & 255 for i in range(n)) for n in sizes]
    assert echo.received == want
    assert r["events"][1 + len(sizes) :] == [binary(b) for b in want]


def test_fragmented_messages_are_reassembled(run, echo):
    r = run(echo.url, [["connect"], ["text", "frag 5 2000"], ["recv", 3000], ["text", "frag 3 100"], ["recv", 3000]])
    letters = "".join(chr(97 + i % 26) for i in range(2000))
    assert r["events"][2] == text(letters)
    assert r["events"][4] == text(letters[:100])


def test_messages_of_every_size_up_to_the_bound(run, echo):
    sizes = [0, 1, 125, 126, 127, 65, 2047, 2048, 3]
    steps = [["connect"], ["text", "sizes " + ",".join(map(str, sizes))]] + [["recv", 3000] for _ in sizes]
    r = run(echo.url, steps)
    assert r["events"][2:] == [binary(pattern(n, i)) for i, n in enumerate(sizes)]


def test_a_ping_from_the_server_is_answered(run, echo):
    r = run(echo.url, [["connect"], ["text", "ping"], ["recv", 3000]])
    assert r["events"][2] == text("pong seen") and echo.pongs == 1


def test_the_server_closing_is_answered_and_reported(run, echo):
    r = run(echo.url, [["connect"], ["text", "close"], ["recv", 3000], ["text", "after"], ["recv", 100]])
    assert r["events"][2:] == [["closed", "closed by the server: 1000 bye"], ["sent", False]] + [
        ["closed", "closed by the server: 1000 bye"]
    ]
    assert r["closed"] is True and r["reason"] == "closed by the server: 1000 bye"


def test_the_client_closing_sends_1000(run):
    srv = RawServer(hold=2)
    try:
        r = run(srv.url, [["connect"], ["close"]])
        assert r["events"] == [["connected", True, ""], ["closed", "closed by the app"]]
        assert srv.frames() == [CLOSE_1000]
    finally:
        srv.close()


def test_a_quiet_peer_that_answers_pings_stays_connected(run, echo):
    # websockets answers the client's pings: the connection stays up however quiet
    r = run(echo.url, [["connect"], ["quiet", 1500], ["text", "still"], ["recv", 3000]], ping_ms=200, dead_ms=400)
    assert r["events"][1:] == [["sent", True], text("still")]


def test_reconnects_after_the_server_closed(run, echo):
    r = run(
        echo.url, [["connect"], ["text", "close"], ["recv", 3000], ["ensure", 5000], ["text", "again"], ["recv", 3000]]
    )
    assert r["events"][3] == ["ensured", True, 2]
    assert r["events"][4:] == [["sent", True], text("again")]


# -- what the client sends --------------------------------------------------------------------


def test_the_upgrade_request(run):
    srv = RawServer(hold=1)
    try:
        run(srv.url, [["connect"]])
        [head] = srv.requests
        lines = head.split(b"\r\n")
        assert lines[0] == b"GET /raw HTTP/1.1"
        headers = dict(line.split(b": ", 1) for line in lines[1:])
        assert headers[b"Host"] == b"127.0.0.1:%d" % srv.port
        assert headers[b"Upgrade"] == b"websocket" and headers[b"Connection"] == b"Upgrade"
        assert headers[b"Sec-WebSocket-Version"] == b"13"
        import base64

        assert len(base64.b64decode(headers[b"Sec-WebSocket-Key"], validate=True)) == 16
    finally:
        srv.close()


def test_every_frame_is_masked_with_a_fresh_key(run):
    srv = RawServer(hold=2)
    try:
        run(srv.url, [["connect"], ["text", "one"], ["text", "one"], ["binary_n", 300]])
        frames = srv.frames(4)
        assert frames[:3] == [
            (True, 1, True, b"one"),
            (True, 1, True, b"one"),
            (True, 2, True, bytes(i * 7 & 255 for i in range(300))),
        ]
        data = srv.received[0]
        keys = [data[2:6], data[11:15]]  # the two "one" frames: 2-byte head, key, 3 bytes
        assert keys[0] != keys[1]
        assert frames[3:] == [CLOSE_1000]
    finally:
        srv.close()


# -- a hostile peer ---------------------------------------------------------------------------

HOSTILE = {
    "reserved bits": (frame(1, b"x", rsv=4), "a frame with reserved bits set", 1002),
    "masked by the server": (frame(1, b"hi", mask=b"abcd"), "a masked frame from the server", 1002),
    "opcode 3": (frame(3, b"x"), "a frame with the unknown opcode 3", 1002),
    "opcode 11": (frame(11), "a frame with the unknown opcode 11", 1002),
    "control over 125": (frame(9, b"p" * 126), "a control frame over 125 bytes", 1002),
    "fragmented control": (frame(9, b"p", fin=False), "a fragmented control frame", 1002),
    "over the bound": (frame(2, length=2049), "a message over 2048 bytes", 1009),
    "fragments over the bound": (
        frame(1, b"a" * 1500, fin=False) + frame(0, b"a" * 1000),
        "a message over 2048 bytes",
        1009,
    ),
    "64-bit length": (frame(2, length=2**40), "a message over 2048 bytes", 1009),
    "64-bit top bit": (frame(2, length=2**63), "a 64-bit length with the top bit set", 1002),
    "continuation alone": (frame(0, b"x"), "a continuation of no message", 1002),
    "message inside a message": (
        frame(1, b"a", fin=False) + frame(1, b"b"),
        "a new message inside a fragmented one",
        1002,
    ),
    "close of 1 byte": (frame(8, b"\x03"), "a close frame of 1 byte", 1002),
    "close": (close_frame(1001, b"going away"), "closed by the server: 1001 going away", 1001),
    "close, unprintable reason": (close_frame(4000, b"a\nb\x00\xff"), "closed by the server: 4000 a?b??", 4000),
    "close, no code": (frame(8), "closed by the server: 1000", 1000),
}


@pytest.mark.parametrize("case", list(HOSTILE))
def test_a_bad_frame_closes_with_one_line(run, case):
    data, reason, code = HOSTILE[case]
    srv = RawServer([frame(1, b"before"), data], hold=2)
    try:
        r = run(srv.url, [["connect"], ["recv", 3000], ["recv", 3000], ["text", "after"]])
        assert r["events"][1:] == [text("before"), ["closed", reason], ["sent", False]]
        time.sleep(0.2)  # nothing after its close
        assert srv.frames() == [(True, 8, True, struct.pack(">H", code))]
    finally:
        srv.close()


def test_the_connection_dropped_mid_stream(run):
    srv = RawServer([frame(1, b"hi"), frame(2, length=100)[:2] + b"partial", "close"])
    try:
        r = run(srv.url, [["connect"], ["recv", 3000], ["recv", 3000]])
        assert r["events"][1:] == [text("hi"), ["closed", "connection closed by the server"]]
    finally:
        srv.close()


def test_a_frame_that_stalls_is_dropped_by_its_deadline(run):
    srv = RawServer([frame(2, length=100)[:2] + b"ten bytes."], hold=5)
    try:
        t0 = time.monotonic()
        r = run(srv.url, [["connect"], ["recv", 4000]], timeout_ms=500)
        assert r["events"][1] == ["closed", "a frame took over 500 ms"]
        assert time.monotonic() - t0 < 3.5
    finally:
        srv.close()


def test_a_dead_peer_is_pinged_then_dropped(run):
    srv = RawServer([], hold=5)  # says nothing, answers nothing
    try:
        r = run(srv.url, [["connect"], ["recv", 4000]], ping_ms=300, dead_ms=400)
        assert r["events"][1] == ["closed", "no answer to a ping in 400 ms"]
        assert srv.frames()[0] == (True, 9, True, b"")
    finally:
        srv.close()


def test_pings_are_answered_inside_a_fragmented_message(run):
    script = [frame(1, b"ab", fin=False), frame(9, b"p1"), frame(0, b"cd", fin=False), frame(10), frame(0, b"ef")]
    srv = RawServer(script, hold=2)
    try:
        r = run(srv.url, [["connect"], ["recv", 3000], ["quiet", 300]])
        assert r["events"][1:] == [text("abcdef")] and r["closed"] is False
        assert srv.frames(2) == [(True, 10, True, b"p1"), CLOSE_1000]
    finally:
        srv.close()


def test_a_flood_of_pings_is_answered_and_the_message_after_it_arrives(run):
    srv = RawServer([frame(9, b"%d" % i) for i in range(300)] + [frame(1, b"after")], hold=3)
    try:
        r = run(srv.url, [["connect"], ["recv", 10000], ["quiet", 300]])
        assert r["events"][1:] == [text("after")] and r["closed"] is False
        assert srv.frames(301) == [(True, 10, True, b"%d" % i) for i in range(300)] + [CLOSE_1000]
    finally:
        srv.close()


def test_text_that_is_not_utf8_is_handed_over_as_it_came(run):
    # A decision: the layer above parses text (JSON) and refuses what it cannot read.
    srv = RawServer([frame(1, b"\xc0\x80\xff")], hold=1)
    try:
        r = run(srv.url, [["connect"], ["recv", 3000]])
        assert r["events"][1] == ["text", "c080ff"] and r["closed"] is False
    finally:
        srv.close()


def test_frames_in_the_same_packet_as_the_upgrade_are_read(run):
    srv = RawServer(handshake=lambda key: upgrade_reply(key) + frame(1, b"early") + frame(2, b"\1\2"), hold=1)
    try:
        r = run(srv.url, [["connect"], ["recv", 3000], ["recv", 3000]])
        assert r["events"] == [["connected", True, ""], text("early"), binary(b"\1\2")]
    finally:
        srv.close()


# -- the upgrade refused or garbled -----------------------------------------------------------

HANDSHAKES = {
    "403": (lambda key: b"HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\n\r\n", "upgrade refused: HTTP 403"),
    "200": (lambda key: b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok", "upgrade refused: HTTP 200"),
    "wrong accept": (
        lambda key: upgrade_reply(b"not the key").replace(b"\r\n\r\n", b"\r\n\r\n"),
        "wrong Sec-WebSocket-Accept",
    ),
    "no accept": (
        lambda key: b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n",
        "wrong Sec-WebSocket-Accept",
    ),
    "not HTTP": (lambda key: b"SSH-2.0-OpenSSH_9.6\r\n", "not an HTTP response"),
    "41 header lines": (
        lambda key: upgrade_reply(key, b"".join(b"X-%d: y\r\n" % i for i in range(41))),
        "too many header lines",
    ),
    "an extension": (
        lambda key: upgrade_reply(key, b"Sec-WebSocket-Extensions: permessage-deflate\r\n"),
        "an extension it did not ask for",
    ),
    "closed": (lambda key: b"HTTP/1.1 101 Switch", "connection closed by the server"),
}


@pytest.mark.parametrize("case", list(HANDSHAKES))
def test_a_bad_upgrade_reply_fails_the_connect_with_one_line(run, case):
    handshake, reason = HANDSHAKES[case]
    srv = RawServer(["close"], handshake=handshake)
    try:
        r = run(srv.url, [["connect"], ["text", "x"]])
        assert r["events"] == [["connected", False, reason], ["sent", False]]
    finally:
        srv.close()


def test_forty_header_lines_are_taken(run):
    extra = b"".join(b"X-%d: y\r\n" % i for i in range(37))  # and Upgrade, Connection, the accept: 40
    srv = RawServer([frame(1, b"ok")], handshake=lambda key: upgrade_reply(key, extra))
    try:
        r = run(srv.url, [["connect"], ["recv", 3000]])
        assert r["events"] == [["connected", True, ""], text("ok")]
    finally:
        srv.close()


def test_a_long_header_line_is_cut_not_held(run):
    srv = RawServer([frame(1, b"ok")], handshake=lambda key: upgrade_reply(key, b"X-Long: " + b"y" * 20000 + b"\r\n"))
    try:
        r = run(srv.url, [["connect"], ["recv", 3000]])
        assert r["events"] == [["connected", True, ""], text("ok")]
    finally:
        srv.close()


def test_a_server_that_never_answers_the_upgrade_times_out(run):
    srv = RawServer(handshake=lambda key: b"HTTP/1.1 101 Switching", hold=5)
    try:
        t0 = time.monotonic()
        r = run(srv.url, [["connect"]], timeout_ms=500)
        assert r["events"] == [["connected", False, "timed out"]]
        assert time.monotonic() - t0 < 3.5
    finally:
        srv.close()


def test_connection_refused(run):
    import socket

    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    r = run("ws://127.0.0.1:%d/" % port, [["connect"], ["text", "x"]])
    assert r["events"] == [["connected", False, "connection refused"], ["sent", False]]


# -- wss:// through uingest.tls ---------------------------------------------------------------


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    d = tmp_path_factory.mktemp("wspki")
    ca, wrong = trustme.CA(), trustme.CA()  # ECDSA P-256: mbedTLS takes it
    paths = {name: str(d / name) for name in ("ca.pem", "wrong.pem")}
    ca.cert_pem.write_to_path(paths["ca.pem"])
    wrong.cert_pem.write_to_path(paths["wrong.pem"])
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1", "localhost").configure_cert(ctx)
    return paths, ctx


@pytest.fixture
def wss(pki):
    srv = EchoServer(tls=pki[1])
    yield srv
    srv.close()


def test_wss_echo_verified_against_the_ca(run, wss, pki):
    steps = [["connect"], ["text", "secure"], ["recv", 5000], ["text", "frag 4 1500"], ["recv", 5000]]
    r = run(wss.url, steps, ca_file=pki[0]["ca.pem"], timeout_ms=8000)
    assert r["events"][:3] == [["connected", True, ""], ["sent", True], text("secure")]
    assert r["events"][4] == text("".join(chr(97 + i % 26) for i in range(1500)))


def test_wss_with_the_wrong_ca_is_refused(run, wss, pki):
    r = run(wss.url, [["connect"]], ca_file=pki[0]["wrong.pem"], timeout_ms=8000)
    assert r["events"] == [["connected", False, "TLS certificate verification failed"]]


def test_wss_insecure_skips_the_check(run, wss, pki):
    r = run(wss.url, [["connect"], ["text", "x"], ["recv", 5000]], insecure=True, timeout_ms=8000)
    assert r["events"] == [["connected", True, ""], ["sent", True], text("x")]


# -- on CPython only: the URL, the backoff --------------------------------------------------------


def test_a_send_over_65535_bytes_is_refused_and_the_connection_stays(echo):
    from uingest import ws

    c = ws.Client(echo.url)
    assert c.connect()
    assert c.send(bytes(65536), ws.BINARY) is False and not c.closed
    assert c.send(bytes(65535), ws.BINARY) is True  # the most it sends; its echo is over the bound:
    t0 = time.monotonic()
    while c.poll() is None and not c.closed and time.monotonic() - t0 < 5:
        time.sleep(0.001)
    assert c.closed and c.reason == "a message over 2048 bytes"


def test_urls():
    from uingest import ws

    c = ws.Client("wss://remote-mgmt.edgeimpulse.com")
    assert (c.scheme, c.host, c.port, c.path, c._host) == (  # scheme: http's, which http.Client._connect reads
        "https",
        "remote-mgmt.edgeimpulse.com",
        443,
        "/",
        "remote-mgmt.edgeimpulse.com",
    )
    c = ws.Client("ws://[::1]:4810/remote?x=1")
    assert (c.scheme, c.host, c.port, c.path, c._host) == ("http", "::1", 4810, "/remote?x=1", "[::1]:4810")
    for bad in ("http://x", "ws:/x", "wss://", "ws://x:99999"):
        with pytest.raises(ValueError):
            ws.Client(bad)
    assert accept_of(b"dGhlIHNhbXBsZSBub25jZQ==") == b"s3pPLMBiTxaQ9kYGzzhZRbK+xOo="  # RFC 6455 1.3


def test_reconnect_backoff_doubles_with_jitter_and_resets_once_stable():
    import socket

    from uingest import ws

    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    c = ws.Client("ws://127.0.0.1:%d/" % port, timeout_ms=1000)
    waits = []
    for _ in range(8):
        c._next_try = None  # due now
        assert not c.ensure() and c.reason == "connection refused"
        waits.append(time.ticks_diff(c._next_try, time.ticks_ms()))
    backoff = 1000
    for w in waits:  # the Wi-Fi link's: +-25 %, doubling from 1 s to a minute
        assert backoff * 0.7 <= w <= backoff * 1.3, (w, backoff)
        backoff = min(backoff * 2, 60000)
    assert c.backoff_ms == 60000
    assert not c.ensure() and c.connections == 0  # not due: no attempt
    srv = EchoServer()
    try:
        c = ws.Client(srv.url.replace(str(srv.port), str(srv.port)), timeout_ms=2000)
        assert c.connect()
        c.close()  # a short connection (a refused hello): the wait grows
        assert c.backoff_ms == 2000 and not c.ensure()
        c._next_try = None
        assert c.ensure() and c.connections == 2
        c._opened = time.ticks_add(time.ticks_ms(), -31000)  # open for 31 s: stable
        assert c.poll() is None and c.backoff_ms == 1000
    finally:
        srv.close()
