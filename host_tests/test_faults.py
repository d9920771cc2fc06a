"""Network faults between the firmware and `uingest serve`: the firmware runs on
the real MicroPython unix port (the simulator, and the whole app with its
flash queue), a fault-injecting proxy (uingest_tools.loopback.FaultProxy) sits in front of the
server. Every window must be stored exactly once, and the firmware's outcome
log must name each fault it met."""

import json
import os
import re
import subprocess

import pytest

from conftest import ROOT
from helpers import read_index
from uingest_tools import simulate
from uingest_tools.acquisition import decode, verify_signature
from uingest_tools.loopback import CUT, PASS, RESET_AFTER, RESET_BEFORE, FaultProxy, answer, slow, stall
from uingest_tools.mpytools import unix_port_env
from uingest_tools.serve import ServerThread, create_app

API_KEY = "ei_faults_api_key_77"
HMAC_KEY = "faults-hmac-key"
BOARD = os.path.join(ROOT, "boards", "unix-sim")
TIMEOUT_MS = 800
STALL_S = 1.3  # longer than the client's timeout
TRICKLE_S = 0.003  # between two bytes of a slow response: ~0.5 s for the whole reply, within the timeout
BUSY = "server busy (proxy): try again later"
HTTP_500 = answer(500)  # no body: the firmware names it "HTTP 500"
HTTP_503 = answer(503, BUSY.encode(), {"Retry-After": "2"}, reason="Service Unavailable")
# for the app run: a Retry-After would hold its queue for that long (tested in test_app_unit.py)
HTTP_503_NO_WAIT = answer(503, BUSY.encode(), reason="Service Unavailable")
DUPLICATE = "already stored: duplicate: this sample is already stored (x-disallow-duplicates)"


@pytest.fixture
def served(tmp_path):
    data = str(tmp_path / "data")
    srv = ServerThread(create_app(data, api_key=API_KEY, hmac_key=HMAC_KEY)).start()
    yield srv, data
    srv.stop()


def stored(data):
    """(index entry, decoded message) of every stored sample; each signature checked."""
    out = []
    for e in read_index(data):
        with open(os.path.join(data, e["file"]), "rb") as g:
            body = g.read()
        assert verify_signature(body, "cbor", HMAC_KEY)
        out.append((e, decode(body, "cbor")))
    return out


def assert_each_window_once(data, n):
    samples = stored(data)
    shas = [e["sha256"] for e, _ in samples]
    values = [json.dumps(m["payload"]["values"]) for _, m in samples]
    assert len(samples) == n, "%d windows sent, %d stored" % (n, len(samples))
    assert len(set(shas)) == n  # no bytes stored twice
    assert len(set(values)) == n  # and no window stored twice under other bytes (another iat, say)
    assert all(e["signature"] == "valid" for e, _ in samples)
    return samples


def gap_after_503(proxy):
    """Seconds between the proxy's 503 (its last scripted answer) and the next request."""
    ev = proxy.events
    i = max(i for i, e in enumerate(ev) if e[2] == "answer")
    return ev[i + 1][3] - ev[i][3]


# One script for the simulator (boards/unix-sim/simulator.py: post_window, and on
# RETRY the same window again after retry_delay_ms). One action per request
# reaching the proxy, with the outcome the firmware must log for it. Requests
# on a kept-alive connection that die before any reply are re-sent once on a
# fresh connection inside http.Client.request (no outcome of their own).
SIMULATE = [
    # (window, action, outcome kind, status, detail)
    (0, PASS, "ACCEPTED", 200, None),
    (1, HTTP_500, "RETRY", 500, "HTTP 500"),
    (1, HTTP_503, "RETRY", 503, BUSY),
    (1, RESET_AFTER, None, None, None),  # reused connection: stored, reply lost: re-sent at once...
    (1, PASS, "ACCEPTED", 409, DUPLICATE),  # ...and found already stored
    (2, CUT, "RETRY", 0, "connection closed by the server"),  # stored, reply cut mid-body
    (2, PASS, "ACCEPTED", 409, DUPLICATE),
    (3, RESET_BEFORE, None, None, None),  # reused connection: re-sent at once...
    (3, RESET_BEFORE, "RETRY", 0, "connection reset"),  # ...on a fresh one, reset again: no third try
    (3, stall(STALL_S, forward=True), "RETRY", 0, "timed out"),  # stored, reply never comes
    (3, RESET_AFTER, "RETRY", 0, "connection reset"),  # its 409 lost
    (3, PASS, "ACCEPTED", 409, DUPLICATE),
    (4, slow(TRICKLE_S), "ACCEPTED", 200, None),
    (5, stall(STALL_S), None, None, None),  # reused connection: a timeout there is re-sent at once too...
    (5, stall(STALL_S), "RETRY", 0, "timed out"),  # ...and times out again: never reached the server
    (5, PASS, "ACCEPTED", 200, None),
    (6, PASS, "ACCEPTED", 200, None),
    (7, PASS, "ACCEPTED", 200, None),
]
LINE = re.compile(r"^window (\S+) (\d+) (ACCEPTED|RETRY|REJECTED) (-?\d+) (.*) free=\d+$")


def test_simulator_through_faults_every_window_once(firmware, served):
    srv, data = served
    n = 8
    with FaultProxy(srv.port, [s[1] for s in SIMULATE]) as proxy:
        settings = {
            "url": proxy.url,
            "api_key": API_KEY,
            "hmac_key": HMAC_KEY,
            "labels": ["wave"],
            "windows": n,
            "rows": 50,
            "timeout_ms": TIMEOUT_MS,
            "retry_delay_ms": 250,  # > 1 s from a stored try to the next: another iat if re-encoded
            "retries": 100,
            "device_name": "faults",
        }
        rc, summary, lines = simulate.run(settings, firmware_dir=firmware, timeout=60)
        assert not proxy.script, "the script was not used up: %r\n%s" % (proxy.script, "\n".join(lines[-20:]))
        gap = gap_after_503(proxy)
    assert rc == 0, lines[-5:]
    assert summary["accepted"] == n and summary["failed"] == summary["rejected"] == 0
    got = []
    for line in lines:
        m = LINE.match(line)
        if m:
            got.append((int(m.group(2)), m.group(3), int(m.group(4)), m.group(5)))
    want = [(w, kind, status, detail) for w, _, kind, status, detail in SIMULATE if kind is not None]
    assert [g[:3] for g in got] == [w[:3] for w in want], "\n".join(lines)
    for g, w in zip(got, want):
        if w[3] is not None:
            assert g[3] == w[3], (g, w)
    samples = assert_each_window_once(data, n)
    # simulator.py marks window w with accZ = 9.80665 + w * 0.001
    marks = sorted(round((m["payload"]["values"][0][2] - 9.80665) / 0.001) for _, m in samples)
    assert marks == list(range(n))
    assert gap >= 1.9  # Retry-After: 2 is honoured before the next try


# The whole app (firmware/main.py, board unix-sim): a window that gets RETRY
# waits in the flash queue and is re-sent, byte for byte, oldest first.
APP = [
    PASS,  # step 1: window 1
    HTTP_500,  # step 2: window 2 -> queued
    HTTP_503_NO_WAIT,  # step 2: drain: window 2 again
    RESET_AFTER,  # step 3: window 2 stored, reply lost on a reused connection: re-sent at once...
    PASS,  # ... 409: already stored, taken off the queue
    RESET_BEFORE,  # step 3: window 3 on the reused connection: re-sent at once...
    RESET_BEFORE,  # ... and reset again on a fresh one
    stall(STALL_S, forward=True),  # step 4: window 3 stored, no reply in time
    RESET_AFTER,  # step 5: window 3 again, its 409 lost
    PASS,  # step 6: window 3: 409
    CUT,  # step 6: window 4 stored, reply cut mid-body
    stall(STALL_S),  # step 7: window 4 (fresh connection) never reaches the server
    PASS,  # step 8: window 4: 409
    slow(TRICKLE_S),  # step 8: window 5
    stall(STALL_S),  # step 8: window 6 on the reused connection: timed out, re-sent at once...
    PASS,  # ... stored
]
APP_RETRIES = [
    (2, "HTTP 500"),
    (2, BUSY),
    (3, "connection reset"),
    (4, "timed out"),
    (5, "connection reset"),
    (6, "connection closed by the server"),
    (7, "timed out"),
]


def test_app_through_faults_every_window_once(mpy, firmware, served, tmp_path):
    srv, data = served
    n = 10
    d = tmp_path / "device"
    d.mkdir()
    with FaultProxy(srv.port, APP) as proxy:
        cfg = {
            "board": "unix-sim",
            "api_key": API_KEY,
            "hmac_key": HMAC_KEY,
            "url": proxy.url,
            "labels": ["idle"],
            "window_ms": 100,
            "sample_rate_hz": 200,
            "device_name": "faults-app",
            "timeout_ms": TIMEOUT_MS,
        }
        (d / "config.json").write_text(json.dumps(cfg))
        env = unix_port_env(firmware, BOARD)
        args = [mpy.exe, "-X", "heapsize=128K", os.path.join(firmware, "main.py"), "config.json", str(n)]
        proc = subprocess.run(args, cwd=d, env=env, capture_output=True, text=True, timeout=60)
        assert not proxy.script, "the script was not used up: %r" % proxy.script
    lines = proc.stdout.splitlines()
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr
    retries = []
    for line in lines:
        m = re.match(r"^window (\d+): will retry: (.*)$", line)
        if m:
            retries.append((int(m.group(1)), m.group(2)))
    assert retries == APP_RETRIES, "\n".join(lines)
    last = [line for line in lines if line.startswith("status: ")][-1]
    assert " sent=%d retry=%d rejected=0 queued=0 dropped=0 " % (n, len(APP_RETRIES)) in last, last
    assert_each_window_once(data, n)
    assert os.listdir(d / "queue" / "rejected") == []
