"""The firmware's HTTP client against hostile servers, on the MicroPython unix
port in a board-sized heap (64K), the firmware as shipped (.mpy): a server
that drips its reply a byte at a time, stalls, sends a body or headers for
ever, a 10 MB status line, glues a second reply to the first, or answers
`100 Continue` first. Each post ends within timeout_ms (plus a margin for a
loaded machine) with the outcome it must have, the next post to a good server
is accepted, and the heap is the same after as before."""

import json
import time

import pytest

from uingest_tools.loopback import FakeServer, late_after, reply

KEY = "ei_hostile_api_key_77"
HKEY = "hostile-hmac-key"
TIMEOUT_MS = 1000
MARGIN_MS = 1500  # two cores shared with other work: a post may wait this much past its deadline
GOOD = reply(body=b"stored.cbor")
SEND_FOR = 20  # seconds a hostile server goes on at most (the client must give up long before)


def drip(data, gap):
    """Send data a byte every gap seconds."""

    def act(conn):
        for i in range(len(data)):
            conn.sendall(data[i : i + 1])
            time.sleep(gap)
        return "close"

    return act


def endless(head, piece, gap=0.005):
    """Send head, then piece every gap seconds, for SEND_FOR seconds."""

    def act(conn):
        conn.sendall(head)
        end = time.monotonic() + SEND_FOR
        while time.monotonic() < end:
            conn.sendall(piece)
            time.sleep(gap)
        return "close"

    return act


def stall_open(head=b""):
    """Send head (maybe nothing), then nothing more for SEND_FOR seconds, the connection open."""

    def act(conn):
        conn.sendall(head)
        time.sleep(SEND_FOR)
        return "close"

    return act


def run(mpy, bundle, actions, pause_ms=0):
    """A good reply, the actions, then a good reply: each post's [kind, status,
    detail, ms], and the heap after the first and after the last post."""
    srv = FakeServer([GOOD, *actions, GOOD])
    try:
        n = len(actions) + 2
        proc = mpy.run_program(
            "post_to_hostile_server.py",
            srv.url,
            n,
            TIMEOUT_MS,
            KEY,
            HKEY,
            pause_ms,
            path=bundle,
            heap="64K",
            timeout=60,
        )
        lines = [json.loads(line) for line in proc.stdout.decode().strip().splitlines()]
    finally:
        srv.close()
    outcomes, heap = lines[:-1], lines[-1]
    assert len(outcomes) == n, lines
    assert outcomes[0][:3] == outcomes[-1][:3] == ["ACCEPTED", 200, "stored.cbor"], outcomes
    assert heap[0] == heap[1], "heap before %d, after %d" % tuple(heap)
    assert len(srv.requests) == n  # every post reached the server, the last one too
    for o in outcomes:
        assert o[3] <= TIMEOUT_MS + MARGIN_MS, outcomes
    print(outcomes)
    return outcomes[1:-1]


OK_REPLY = reply(body=b"ok")


CASES = [
    ("drip", drip(OK_REPLY, 0.3), "RETRY", "timed out"),
    ("drip-in-time", drip(OK_REPLY, 0.005), "ACCEPTED", "ok"),
    ("stall", stall_open(), "RETRY", "timed out"),
    ("stall-after-status", stall_open(b"HTTP/1.1 200 OK\r\n"), "RETRY", "timed out"),
    ("endless-body", endless(b"HTTP/1.1 200 OK\r\n\r\n", b"x" * 512), "RETRY", "timed out"),
    (
        "endless-chunks",
        endless(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n", b"3\r\nabc\r\n"),
        "RETRY",
        "timed out",
    ),
    ("endless-headers", endless(b"HTTP/1.1 200 OK\r\n", b"X-More: y\r\n"), "RETRY", "bad response"),
    ("endless-status-line", endless(b"HTTP/1.1 200 ", b"A" * 512), "RETRY", "bad response"),
    ("10MB-status-line", reply().replace(b" OK", b" " + b"A" * 10_000_000), "RETRY", "bad response"),
    ("100-continue", b"HTTP/1.1 100 Continue\r\n\r\n" + reply(400, b"bad label"), "REJECTED", "bad label"),
    # no body whatever its headers say (RFC 9112 6.3): not read until a close that a kept-alive server never sends
    ("204-kept-alive", b"HTTP/1.1 204 No Content\r\n\r\n", "ACCEPTED", ""),
    ("204-with-a-length", b"HTTP/1.1 204 No Content\r\nContent-Length: 5\r\n\r\n", "ACCEPTED", ""),
]


@pytest.mark.parametrize("name,action,kind,detail", CASES, ids=[c[0] for c in CASES])
def test_hostile_reply(mpy, bundle, name, action, kind, detail):
    [(k, status, d, ms)] = run(mpy, bundle, [action])
    assert k == kind and d.startswith(detail), (name, k, status, d, ms)


def test_a_reply_glued_to_the_last_is_never_the_next_reply(mpy, bundle):
    """A server that sends a second reply right after the first (a 400, then a
    200): the 200 must not be taken as the answer to the next post; that post
    goes to the server on a fresh connection."""
    glued = reply(400, b"bad label") + reply(body=b"ghost")
    [first, second] = run(mpy, bundle, [glued, GOOD])
    assert first[:3] == ["REJECTED", 400, "bad label"]
    assert second[:3] == ["ACCEPTED", 200, "stored.cbor"]


@pytest.mark.parametrize(
    "late",
    [reply(408, b"request timeout"), b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nghost", b"\r\n"],
    ids=["408", "a-200", "a-line-feed"],
)
def test_bytes_on_an_idle_kept_alive_connection_are_never_the_next_reply(mpy, bundle, late):
    """A server that sends something on the kept-alive connection while it idles between posts (uvicorn's and
    our own collector's 408, a stray reply): the next post goes out on a fresh connection and gets its own
    reply (before, a late 408 was taken as the answer and the window dropped as REJECTED)."""
    [first, second] = run(mpy, bundle, [late_after(reply(body=b"ok"), late), GOOD], pause_ms=300)
    assert first[:3] == ["ACCEPTED", 200, "ok"]
    assert second[:3] == ["ACCEPTED", 200, "stored.cbor"]
