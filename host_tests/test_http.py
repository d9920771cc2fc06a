"""uingest.http: keep-alive, reconnects and typed outcomes, on CPython and on
the MicroPython unix port, against a scripted server."""

import json
import socket
import time

import pytest

from conftest import FIRMWARE, HERE
from sample_windows import imu
from uingest import http
from uingest.upload import post_window
from uingest_tools.acquisition import decode, verify_signature
from uingest_tools.loopback import FakeServer, close_after, late_after, reply, stall

KEY = "ei_test_api_key_123"
HKEY = "hmac_key_456"


@pytest.fixture
def server(request):
    s = FakeServer(getattr(request, "param", []))
    yield s
    s.close()


def post(url, n=1, **kw):
    client = http.Client(url, timeout_ms=kw.pop("timeout_ms", 2000))
    outs = [post_window(client, imu(20), KEY, label="wave", hmac_key=HKEY, device_name="t", **kw) for _ in range(n)]
    client.close()
    return client, outs


def test_keep_alive_many_windows_one_connection(server):
    client, outs = post(server.url, n=10)
    assert [o.kind for o in outs] == [http.ACCEPTED] * 10
    assert server.connections == client.connections == 1
    head, body = server.requests[0]
    assert head.startswith(b"POST /api/training/data HTTP/1.1\r\n")
    assert b"\r\nx-api-key: " + KEY.encode() + b"\r\n" in head
    assert b"\r\nx-label: wave\r\n" in head and b"\r\nContent-Type: application/cbor\r\n" in head
    assert b"\r\nContent-Length: %d\r\n" % len(body) in head
    assert verify_signature(body, "cbor", HKEY)
    assert decode(body, "cbor")["payload"]["device_name"] == "t"


HEADER_SENDS = [
    dict(label="wave"),
    dict(label="wave"),
    dict(label="idle"),
    dict(label="idle", fmt="json"),
    dict(label="idle", fmt="json", file_name="x.json"),
    dict(label="idle", fmt="json", file_name="x.json", body_fmt="cbor"),  # the entry's, not the config's
    dict(label=None),
]
CBOR_TYPE, JSON_TYPE = "application/cbor", "application/json"
HEADERS_SENT = [
    ("wave", CBOR_TYPE, "wave.cbor", KEY),
    ("wave", CBOR_TYPE, "wave.cbor", KEY),
    ("idle", CBOR_TYPE, "idle.cbor", KEY),
    ("idle", JSON_TYPE, "idle.json", KEY),
    ("idle", JSON_TYPE, "x.json", KEY),
    ("idle", CBOR_TYPE, "x.json", KEY),
    (None, CBOR_TYPE, "sample.cbor", KEY),
]


def headers_sent(server):
    from email import message_from_bytes

    got = []
    for head, _ in server.requests:
        h = message_from_bytes(head.split(b"\r\n", 1)[1])  # the stdlib's parser, not uingest's
        got.append((h["x-label"], h["Content-Type"], h["x-file-name"], h["x-api-key"]))
    return got


def test_each_post_carries_its_own_headers_when_one_changes(server):
    """upload.send formats the header lines once while the key, label, format,
    file name and the body's content type stay the same: a change in any one
    is sent at once, and a body in another format (a window queued before the
    config changed) keeps its own Content-Type."""
    from uingest import upload
    from uingest.message import Message

    client = http.Client(server.url, timeout_ms=2000)
    for kw in HEADER_SENDS:
        fmt = kw.get("fmt", "cbor")
        body = Message(imu(2), kw.get("body_fmt", fmt), HKEY)
        out = upload.send(client, body, KEY, kw["label"], fmt=fmt, file_name=kw.get("file_name"))
        assert out.kind == http.ACCEPTED
    client.close()
    assert headers_sent(server) == HEADERS_SENT


def test_each_post_carries_its_own_headers_on_micropython(server, mpy, bundle):
    """The same sends on the unix port, where the lines go out through its sockets."""
    proc = mpy.run_program(
        "posts_with_changing_headers.py", server.url, json.dumps(HEADER_SENDS), path=bundle, heap="128K"
    )
    assert proc.stdout.decode().split() == ["ACCEPTED"] * len(HEADER_SENDS)
    assert headers_sent(server) == HEADERS_SENT


@pytest.mark.parametrize(
    "server",
    [[close_after(reply(body=b"first")), reply(body=b"second")]],
    indirect=True,
)
def test_reconnects_when_the_server_closed_the_connection(server):
    client, outs = post(server.url, n=2)
    assert [(o.kind, o.detail) for o in outs] == [(http.ACCEPTED, "first"), (http.ACCEPTED, "second")]
    assert server.connections == 2


@pytest.mark.parametrize(
    "server",
    [[b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nidle.\r\n4\r\n1234\r\n0\r\n\r\n", reply()]],
    indirect=True,
)
def test_chunked_response(server):
    _, outs = post(server.url, n=2)
    assert outs[0].kind == http.ACCEPTED and outs[0].detail == "idle.1234"
    assert outs[1].kind == http.ACCEPTED and server.connections == 1


@pytest.mark.parametrize("server", [[close_after(b"HTTP/1.0 200 OK\r\n\r\nstored-until-close")]], indirect=True)
def test_body_until_close(server):
    _, outs = post(server.url)
    assert outs[0].kind == http.ACCEPTED and outs[0].detail == "stored-until-close"


@pytest.mark.parametrize(
    "server,kind,status,detail",
    [
        (
            [reply(400, b"invalid message: values[3] has 2 values\nmore", reason="Bad Request")],
            "REJECTED",
            400,
            "invalid message: values[3] has 2 values",
        ),
        ([reply(401, b"")], "REJECTED", 401, "HTTP 401"),
        ([reply(409, b"duplicate sample")], "ACCEPTED", 409, "already stored: duplicate sample"),
        ([reply(503, b"busy", {"Retry-After": "3"})], "RETRY", 503, "busy"),
        ([reply(429, b"slow down")], "RETRY", 429, "slow down"),
        ([reply(500, b"boom")], "RETRY", 500, "boom"),
        (
            [close_after(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nhalf")],
            "RETRY",
            0,
            "connection closed by the server",
        ),
        ([close_after(b"garbage\r\n\r\n")], "RETRY", 0, "bad response"),
        ([b"HTTP/1.1 100 Continue\r\n\r\n" + reply(400, b"bad label")], "REJECTED", 400, "bad label"),
        ([b"HTTP/1.1 204 No Content\r\n\r\n"], "ACCEPTED", 204, ""),  # no body: not read until a close
        ([close_after(b"HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n")], "RETRY", 0, "bad response"),
    ],
    indirect=["server"],
)
def test_outcomes(server, kind, status, detail):
    _, outs = post(server.url)
    assert (outs[0].kind, outs[0].status) == (kind, status)
    assert outs[0].detail.startswith(detail)
    assert KEY not in repr(outs[0]) and HKEY not in repr(outs[0])


@pytest.mark.parametrize(
    "server,after_ms",
    [
        ([reply(503, b"busy", {"Retry-After": "3"})], 3000),
        ([reply(503, b"busy", {"Retry-After": "99999"})], 3600000),
        ([reply(503, b"busy", {"Retry-After": "Wed, 21 Oct 2026 07:28:00 GMT"})], 0),
        ([reply(500, b"x")], 0),
    ],
    indirect=["server"],
)
def test_retry_after_is_reported(server, after_ms):
    _, outs = post(server.url)
    assert outs[0].kind == http.RETRY and outs[0].retry_after_ms == after_ms


@pytest.mark.parametrize("server", [[reply(503, b"busy", {"Retry-After": "600"}), reply(500, b"x")]], indirect=True)
def test_retry_after_belongs_to_its_reply_only(server):
    _, outs = post(server.url, n=2)
    assert [o.retry_after_ms for o in outs] == [600000, 0]


@pytest.mark.parametrize("server", [[reply(400, b"bad label") + reply(body=b"ghost")]], indirect=True)
def test_bytes_after_a_reply_are_never_the_next_reply(server):
    client, outs = post(server.url, n=2)
    assert [(o.kind, o.detail) for o in outs] == [(http.REJECTED, "bad label"), (http.ACCEPTED, "ok")]
    assert server.connections == 2 and len(server.requests) == 2


@pytest.mark.parametrize(
    "late",
    [reply(408, b"request timeout"), reply(body=b"ghost"), b"\r\n"],
    ids=["408", "a-200", "a-line-feed"],
)
def test_bytes_on_an_idle_kept_alive_connection_are_never_the_next_reply(late):
    """What a server sends while the kept-alive connection idles between posts (a late 408, a stray reply) is
    not this post's reply: the post goes out on a fresh connection (on the unix port: test_hostile_server)."""
    server = FakeServer([late_after(reply(body=b"first"), late), reply(body=b"second")])
    try:
        client = http.Client(server.url, timeout_ms=2000)
        first = post_window(client, imu(20), KEY, label="wave", hmac_key=HKEY, device_name="t")
        time.sleep(0.3)
        second = post_window(client, imu(20), KEY, label="wave", hmac_key=HKEY, device_name="t")
        client.close()
    finally:
        server.close()
    assert [(o.kind, o.detail) for o in (first, second)] == [(http.ACCEPTED, "first"), (http.ACCEPTED, "second")]
    assert server.connections == client.connections == 2 and len(server.requests) == 2


@pytest.mark.parametrize("server", [[reply(), close_after(b"HTTP/1.1 200 " + b"A" * 300 + b"\r\n\r\n")]], indirect=True)
def test_a_garbled_reply_on_a_kept_alive_connection_is_not_resent(server):
    # the server answered (a status line too long to be one): only a connection that died
    # before any reply is retried on a fresh one; this request may have been stored
    client, outs = post(server.url, n=2)
    assert outs[1].kind == http.RETRY and outs[1].detail.startswith("bad response")
    assert len(server.requests) == 2 and server.connections == 1


@pytest.mark.parametrize("server", [[stall(3)]], indirect=True)
def test_timeout_is_retry(server):
    _, outs = post(server.url, timeout_ms=300)
    assert outs[0].kind == http.RETRY and outs[0].detail == "timed out"


def test_connection_refused_is_retry():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))  # bound, never listening: connections are refused
    url = "http://127.0.0.1:%d" % s.getsockname()[1]
    _, outs = post(url)
    s.close()
    assert outs[0].kind == http.RETRY and outs[0].status == 0


def test_bad_arguments_still_raise():
    client = http.Client("http://127.0.0.1:9")
    with pytest.raises(ValueError, match="category"):
        post_window(client, imu(2), KEY, category="nope")
    with pytest.raises(ValueError, match="api_key"):
        post_window(client, imu(2), "")
    with pytest.raises(ValueError, match="url"):
        http.Client("ftp://x")


@pytest.mark.parametrize(
    "url,parts",
    [
        ("http://h", ("http", "h", 80, "/")),
        ("https://ingestion.edgeimpulse.com", ("https", "ingestion.edgeimpulse.com", 443, "/")),
        ("http://127.0.0.1:4810/base", ("http", "127.0.0.1", 4810, "/base")),
        ("http://[::1]:4810", ("http", "::1", 4810, "/")),
    ],
)
def test_parse_url(url, parts):
    assert http.parse_url(url) == parts


def run_mp(mpy, url, n=1, timeout_ms=2000):
    proc = mpy.run_program(
        "post_windows_on_one_client.py", url, n, timeout_ms, KEY, HKEY, path=FIRMWARE + ":" + HERE, heap="128K"
    )
    return json.loads(proc.stdout)


def test_on_micropython_keep_alive(mpy, server):
    r = run_mp(mpy, server.url, n=10)
    assert [o[0] for o in r["outcomes"]] == ["ACCEPTED"] * 10
    assert r["connections"] == server.connections == 1
    assert all(verify_signature(body, "cbor", HKEY) for _, body in server.requests)
    # plain http never loads the TLS code (uingest.tls) nor ssl: their RAM is
    # only spent by a board whose URL is https
    assert r["tls_modules"] == []


@pytest.mark.parametrize(
    "server",
    [
        [
            close_after(reply(body=b"a")),
            reply(400, b"bad label"),
            reply(503, b"later"),
            close_after(b"HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\nab"),
            stall(2),
            reply(body=b"z"),
        ]
    ],
    indirect=True,
)
def test_on_micropython_outcomes(mpy, server):
    r = run_mp(mpy, server.url, n=6, timeout_ms=500)
    assert r["outcomes"] == [
        ["ACCEPTED", 200, "a"],
        ["REJECTED", 400, "bad label"],
        ["RETRY", 503, "later"],
        ["RETRY", 0, "connection closed by the server"],
        ["RETRY", 0, "timed out"],
        ["ACCEPTED", 200, "z"],
    ]
