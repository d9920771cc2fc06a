"""End to end: the firmware, compiled to .mpy as shipped, on the real
MicroPython unix port (board unix-sim), posting to `uingest serve`. The stored
files are judged with cbor2/json and Python's hmac."""

import math
import os
import sys
import threading
import time

import pytest

from conftest import ROOT
from helpers import f32, read_index
from uingest_tools import simulate
from uingest_tools.acquisition import decode, verify_signature
from uingest_tools.serve import ServerThread, create_app

sys.path.insert(0, os.path.join(ROOT, "boards", "unix-sim"))
import board  # noqa: E402  (the unix-sim board, also importable on CPython)

API_KEY = "ei_e2e_api_key_0123"
HMAC_KEY = "e2e-hmac-key"


class CountConnections:
    """ASGI wrapper: the distinct client (address, port) pairs are the TCP
    connections the server saw."""

    def __init__(self, app):
        self.app = app
        self.peers = set()

    async def __call__(self, scope, receive, send):
        if scope["type"] == "http" and scope.get("client"):
            self.peers.add(tuple(scope["client"]))
        await self.app(scope, receive, send)


def expected_rows(label, window_index, rows=200, rate_hz=100):
    s = board.SyntheticIMU(label, rate_hz)
    w = 2 * math.pi * s.freq_hz / rate_hz
    out = []
    for i in range(rows):
        t = window_index * rows + i
        out.append([f32(s.amp * math.sin(w * t)), f32(s.amp * math.cos(w * t)), f32(9.80665 + window_index * 0.001)])
    return out


def window_index_of(label, values):
    for i in range(50):
        want = expected_rows(label, i)
        if all(abs(a - b) <= 1e-5 for r, q in zip(values, want) for a, b in zip(r, q)):
            return i
    raise AssertionError("values match no window of label %s" % label)


def settings(url, labels, fmt="cbor", windows=10, **kw):
    s = {
        "url": url,
        "api_key": API_KEY,
        "hmac_key": HMAC_KEY,
        "labels": labels,
        "format": fmt,
        "windows": windows,
        "device_name": "e2e-sim",
    }
    s.update(kw)
    return s


@pytest.mark.parametrize("fmt", ["cbor", "json"])
def test_three_labels_ten_windows_one_connection(tmp_path, firmware, fmt):
    data = str(tmp_path / "data")
    app = CountConnections(create_app(data, api_key=API_KEY, hmac_key=HMAC_KEY))
    labels = ["idle", "wave", "circle"]
    srv = ServerThread(app).start()
    try:
        # JSON floats go through the portable formatter, a short string per
        # sample; on the x64 port (objects twice an ESP32's) that churn needs
        # more than 64K. CBOR, the on-board default, runs in 64K.
        heap = "64K" if fmt == "cbor" else "128K"
        rc, summary, lines = simulate.run(settings(srv.url, labels, fmt), heap=heap, firmware_dir=firmware)
    finally:
        srv.stop()
    assert rc == 0, lines[-5:]
    assert summary == {"accepted": 30, "rejected": 0, "failed": 0, "connections": 1}
    assert len(app.peers) == 1  # the server saw one TCP connection for 30 windows
    entries = read_index(data)
    assert len(entries) == 30
    seen = set()
    for e in entries:
        assert e["category"] == "training" and e["device_type"] == board.DEVICE_TYPE
        assert e["device_name"] == "e2e-sim" and e["signature"] == "valid" and e["rows"] == 200
        assert e["sensors"] == ["accX", "accY", "accZ"] and e["interval_ms"] == 10
        path = os.path.join(data, e["file"])
        assert os.path.basename(path).startswith(e["label"] + ".") and path.endswith("." + fmt)
        with open(path, "rb") as f:
            body = f.read()
        msg = decode(body, fmt)
        assert verify_signature(body, fmt, HMAC_KEY)
        p = msg["payload"]
        assert p["sensors"] == [{"name": n, "units": u} for n, u in board.SENSORS]
        seen.add((e["label"], window_index_of(e["label"], p["values"])))
    assert seen == {(label, i) for label in labels for i in range(10)}


@pytest.mark.parametrize("fmt", ["cbor", "json"])
def test_simulate_romfs_runs_both_formats_in_64k(tmp_path, fmt, capsys):
    """`uingest simulate --romfs`: the modules run in place from a ROMFS image,
    as on a board with a ROMFS partition; with the bytecode out of the heap,
    JSON fits the same 64K as CBOR."""
    data = str(tmp_path / "data")
    srv = ServerThread(create_app(data, api_key=API_KEY, hmac_key=HMAC_KEY)).start()
    try:
        argv = ["--url", srv.url, "--api-key", API_KEY, "--hmac-key", HMAC_KEY, "--format", fmt]
        argv += ["--label", "idle", "--label", "wave", "--windows", "3", "--romfs", "--heap", "64K", "--quiet"]
        rc = simulate.main(argv)
    finally:
        srv.stop()
    out = capsys.readouterr().out
    assert rc == 0, out
    assert out.strip().endswith("simulate idle,wave: 6/6 windows accepted, 0 rejected, 0 failed, over 1 connection(s)")
    entries = read_index(data)
    assert len(entries) == 6
    for e in entries:
        with open(os.path.join(data, e["file"]), "rb") as f:
            body = f.read()
        assert verify_signature(body, fmt, HMAC_KEY)
        assert window_index_of(e["label"], decode(body, fmt)["payload"]["values"]) in range(3)


def test_server_restarted_mid_run_every_window_once(tmp_path, firmware):
    data = str(tmp_path / "data")
    srv = ServerThread(create_app(data, api_key=API_KEY, hmac_key=HMAC_KEY)).start()
    port = srv.port
    result = {}

    def run():
        result["out"] = simulate.run(
            settings(srv.url, ["wave"], windows=20, retry_delay_ms=100, retries=100, pause_ms=30), firmware_dir=firmware
        )

    t = threading.Thread(target=run)
    t.start()
    deadline = time.monotonic() + 30
    while len(read_index(data)) < 5 and time.monotonic() < deadline:
        time.sleep(0.01)
    srv.stop()  # in-flight requests finish; new connections are refused
    time.sleep(0.5)
    srv = ServerThread(create_app(data, api_key=API_KEY, hmac_key=HMAC_KEY), port=port).start()
    t.join(60)
    srv.stop()
    rc, summary, lines = result["out"]
    assert rc == 0, lines[-5:]
    assert summary["accepted"] == 20 and summary["connections"] >= 2
    assert any("RETRY" in line for line in lines)  # it did see the server gone
    entries = read_index(data)
    assert len(entries) == 20
    got = sorted(
        window_index_of("wave", decode(open(os.path.join(data, e["file"]), "rb").read(), "cbor")["payload"]["values"])
        for e in entries
    )
    assert got == list(range(20))


@pytest.mark.parametrize(
    "label,reason",
    [
        (".hidden", "label must not start with '.': '.hidden'"),
        ("a/b", "label must not contain '/' or '\\': 'a/b'"),
        ("a\u202eb", "label must not contain control or format characters: 'a\\u202eb'"),
    ],
)
def test_simulate_refuses_a_label_the_board_would_not_send_in_one_line(label, reason, capsys):
    rc = simulate.main(["--url", "http://127.0.0.1:9", "--api-key", API_KEY, "--label", "idle", "--label", label])
    err = capsys.readouterr().err
    assert rc == 2 and err == "uingest simulate: --label %r: %s\n" % (label, reason)
    assert API_KEY not in err


def test_a_unicode_label_goes_end_to_end(tmp_path, capsys):
    """A label that is not plain ASCII, from the board's config to Edge Impulse: the board percent-encodes it
    (as Edge Impulse's uploader does), `uingest serve` stores it, the dashboard shows it, `uingest relay`
    sends it on to a second server, which stores it again."""
    import json
    import urllib.request

    from uingest_tools import relay

    label = "caf\u00e9 \u2615 50%"
    first, second = str(tmp_path / "first"), str(tmp_path / "second")
    a = ServerThread(create_app(first, api_key=API_KEY, hmac_key=HMAC_KEY)).start()
    b = ServerThread(create_app(second, api_key="ei_second", hmac_key=HMAC_KEY)).start()
    try:
        argv = ["--url", a.url, "--api-key", API_KEY, "--hmac-key", HMAC_KEY, "--label", label, "--windows", "2"]
        assert simulate.main(argv + ["--quiet"]) == 0, capsys.readouterr()
        assert [e["label"] for e in read_index(first)] == [label, label]
        assert all(e["file"].startswith("training/" + label + ".") for e in read_index(first))
        req = urllib.request.Request(a.url + "/api/dashboard/summary", headers={"x-api-key": API_KEY})
        with urllib.request.urlopen(req, timeout=10) as r:
            assert label in json.dumps(json.load(r), ensure_ascii=False)
        rc = relay.main(["--data-dir", first, "--url", b.url, "--api-key", "ei_second", "--retry-delay", "0.001"])
        assert rc == 0, capsys.readouterr()
    finally:
        a.stop()
        b.stop()
    assert [e["label"] for e in read_index(second)] == [label, label]
