"""Remote management on the board (uingest.remote, issue 15): the app in mode
"remote" or "both" against a fake of the remote management service
(loopback.FakeRemoteManagement) and `uingest serve` for the uploads; the same
scenarios on CPython (the shim, the App on a thread) and on the MicroPython
unix port (firmware/main.py of the bundle, the unix-sim board)."""

import json
import os
import queue
import re
import subprocess
import threading
import time

import pytest

from conftest import ROOT
from helpers import read_index
from uingest_tools.acquisition import decode, verify_signature
from uingest_tools.loopback import FakeRemoteManagement
from uingest_tools.mpytools import unix_port_env
from uingest_tools.serve import ServerThread, create_app

API_KEY = "ei_remote_test_key"
HMAC_KEY = "board-hmac-key"
REQUEST_KEY = "studio-request-key"  # the hmacKey of a sample request: the sample is signed with it
BOARD = os.path.join(ROOT, "boards", "unix-sim")
RATE = 200
# the hello the board sends in these scenarios (JSON or CBOR): its config's device, its one sensor
HELLO = {
    "version": 3,
    "apiKey": API_KEY,
    "deviceId": "remote-test",
    "deviceType": "UINGEST_UNIX_SIM",
    "connection": "ip",
    "sensors": [{"name": "Accelerometer", "maxSampleLengthS": 5, "frequencies": [RATE]}],
    "supportsSnapshotStreaming": False,
}


def config(d, ingest_url, remote_url, **kw):
    cfg = {
        "board": "unix-sim",
        "api_key": API_KEY,
        "hmac_key": HMAC_KEY,
        "url": ingest_url,
        "labels": ["idle"],
        "window_ms": 5000,  # the RAM window: the longest a remote sample may be
        "sample_rate_hz": RATE,
        "device_name": "remote-test",
        "timeout_ms": 2000,
        "mode": "remote",
        "remote_url": remote_url,
        "queue_dir": os.path.join(d, "queue"),
    }
    cfg.update(kw)
    path = os.path.join(d, "config.json")
    with open(path, "w") as f:
        json.dump(cfg, f)
    return path


class OnCPython:
    """The App (uingest.app) on a thread, stepped until stop()."""

    def __init__(self, d, cfg_path, firmware):
        from uingest import app, config
        from uingest.sensors.hardware import Hardware
        from uingest.sensors.synthetic import SyntheticIMU
        from uingest.wifi import HostLink

        cfg = config.load(cfg_path)
        self.lines = []
        self.app = app.App(
            cfg,
            Hardware(SyntheticIMU("idle", cfg["sample_rate_hz"])),
            HostLink(),
            "UINGEST_UNIX_SIM",
            self.lines.append,
        )
        self._stop = False
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self):
        while not self._stop:  # as main() runs it: a status line per window
            n = self.app.windows
            self.app.step()
            if self.app.windows != n:
                self.lines.append(self.app.status())

    def stop(self):
        self._stop = True
        self._thread.join(30)
        self.app.close()
        return self.lines


class OnMicroPython:
    """firmware/main.py of the bundle on the unix port, as a board runs it."""

    def __init__(self, d, cfg_path, firmware, exe, heap="128K"):
        env = unix_port_env(firmware, BOARD)
        args = [exe, "-X", "heapsize=" + heap, os.path.join(firmware, "main.py"), cfg_path]
        self.proc = subprocess.Popen(
            args, cwd=d, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
        )
        self.lines = []
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self):
        for raw in self.proc.stdout:
            self.lines.append(raw.decode(errors="replace").rstrip())

    def stop(self):
        self.proc.kill()
        self.proc.wait(10)
        self._thread.join(10)
        return self.lines


@pytest.fixture(params=["cpython", "micropython"])
def start_board(request, tmp_path):
    """start_board(ingest_url, remote_url, **config) -> a running board
    (.lines, stop()); stopped at the end of the test."""
    boards = []

    def start(ingest_url, remote_url, heap="128K", **kw):
        d = str(tmp_path)
        path = config(d, ingest_url, remote_url, **kw)
        if request.param == "cpython":
            b = OnCPython(d, path, None)
        else:
            firmware = request.getfixturevalue("firmware")
            mpy = request.getfixturevalue("mpy")
            b = OnMicroPython(d, path, firmware, mpy.exe, heap)
        boards.append(b)
        return b

    yield start
    for b in boards:
        b.stop()


@pytest.fixture
def ingestion(tmp_path):
    data = str(tmp_path / "data")
    srv = ServerThread(
        create_app(data, api_key=API_KEY)
    ).start()  # the signature is checked here, with the request's key
    srv.data = data
    yield srv
    srv.stop()


@pytest.fixture
def remote():
    rm = FakeRemoteManagement(api_key=API_KEY)
    yield rm
    rm.close()


def request(label="wave", length=2000, category="testing", interval=1000 / RATE, sensor="Accelerometer", **kw):
    r = {"label": label, "length": length, "path": "/api/%s/data" % category, "hmacKey": REQUEST_KEY}
    r.update({"interval": interval, "sensor": sensor}, **kw)
    return {"sample": r}


def replies(rm, timeout=15):
    """The device's messages up to the end of one request: sampleFinished or
    a refusal / error ({"sample": false})."""
    out = []
    while True:
        m = rm.next(timeout)
        out.append(m)
        if m.get("sampleFinished") is True or m.get("sample") is False:
            return out


def steps(msgs):
    """The kinds of messages in order, progress messages folded into one."""
    kinds = []
    for m in msgs:
        k = "sample=%s" % m["sample"] if "sample" in m else min(k for k in m if k.startswith("sample"))
        if not kinds or kinds[-1] != k:
            kinds.append(k)
    return kinds


def stored(data):
    out = []
    for e in read_index(data):
        with open(os.path.join(data, e["file"]), "rb") as f:
            out.append((e, f.read()))
    return out


def test_hello_is_version_3_json_with_the_boards_sensor(start_board, ingestion, remote):
    board = start_board(ingestion.url, remote.url)
    assert remote.wait_session(1, 20), board.lines
    assert remote.hellos[0] == HELLO
    time.sleep(0.5)
    assert remote.connections == 1
    assert stored(ingestion.data) == []  # "remote" records only when asked


def test_a_sample_request_is_answered_in_order_and_stored_signed_with_its_key(start_board, ingestion, remote):
    board = start_board(ingestion.url, remote.url)
    assert remote.wait_session(1, 20), board.lines
    remote.send(request("wave", 4000, "testing"))
    msgs = replies(remote)
    assert steps(msgs) == ["sample=True", "sampleStarted", "sampleReading", "sampleUploading", "sampleFinished"], msgs
    progress = [m["progressPercentage"] for m in msgs if "sampleReading" in m]
    assert progress == sorted(progress) and all(0 <= p < 100 for p in progress), progress
    ((entry, body),) = stored(ingestion.data)
    assert entry["label"] == "wave" and entry["category"] == "testing", entry
    assert entry["file_name"].startswith("wave"), entry  # x-file-name from the label, as Studio sends it
    assert verify_signature(body, "cbor", REQUEST_KEY) and not verify_signature(body, "cbor", HMAC_KEY)
    payload = decode(body, "cbor")["payload"]
    assert len(payload["values"]) == 4000 // 5 and payload["interval_ms"] == 5
    assert any("at 200 Hz (200 Hz asked)" in line for line in board.lines), board.lines
    _wait(lambda: any(line.startswith("status: windows=1 ") and " remote=open " in line for line in board.lines), board)


def test_a_request_longer_than_the_heap_is_recorded_to_flash(start_board, ingestion, remote):
    from uingest.cbor import max_row_bytes

    board = start_board(ingestion.url, remote.url, window_ms=100, record_to_flash=True, queue_budget_bytes=65536)
    assert remote.wait_session(1, 20), board.lines
    (sensor,) = remote.hellos[0]["sensors"]
    assert sensor["maxSampleLengthS"] == (65536 - 2048) // max_row_bytes(3, "f") / RATE
    remote.send(request("wave", 3000, "anomaly"))  # 30 windows' worth: through the 2 KB chunk to flash
    msgs = replies(remote)
    assert steps(msgs) == ["sample=True", "sampleStarted", "sampleUploading", "sampleFinished"], msgs
    ((entry, body),) = stored(ingestion.data)
    assert entry["label"] == "wave" and entry["category"] == "anomaly", entry
    assert verify_signature(body, "cbor", REQUEST_KEY)
    assert len(decode(body, "cbor")["payload"]["values"]) == 600


def test_a_long_non_ascii_label_escaped_by_the_server_fits_the_socket_bound(start_board, ingestion, remote):
    label = "\u00e9t\u00e9 " * 30  # 150 bytes of UTF-8 (the service allows 128 per label: refused by it, not here)
    label = label.encode()[:126].decode(errors="ignore").strip()
    board = start_board(ingestion.url, remote.url)
    assert remote.wait_session(1, 20), board.lines
    remote.send(request(label, 500, "training"))  # json.dumps escapes each non-ASCII character: \u00e9
    msgs = replies(remote)
    assert steps(msgs)[-1] == "sampleFinished", (msgs, board.lines[-5:])
    assert [e["label"] for e, _ in stored(ingestion.data)] == [label]
    assert remote.connections == 1


def test_tls_to_both_services_with_one_ca_file(start_board, tmp_path):
    import ssl

    import trustme

    ca = trustme.CA()  # ECDSA P-256: mbedTLS takes it
    ca_file = str(tmp_path / "ca.pem")
    ca.cert_pem.write_to_path(ca_file)
    cert = ca.issue_cert("127.0.0.1", "localhost")
    server_pem = str(tmp_path / "server.pem")
    cert.private_key_and_cert_chain_pem.write_to_path(server_pem)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    cert.configure_cert(ctx)
    data = str(tmp_path / "data")
    srv = ServerThread(create_app(data, api_key=API_KEY), ssl_certfile=server_pem).start()
    rm = FakeRemoteManagement(api_key=API_KEY, tls=ctx)
    try:
        assert srv.url.startswith("https://") and rm.url.startswith("wss://")
        # 128K is too small here with this 5 s window: TLS to both services (README, the bench)
        board = start_board(srv.url, rm.url, ca_file=ca_file, heap="160K")
        assert rm.wait_session(1, 30), board.lines
        rm.send(request("wave", 500, "training"))
        try:
            msgs = replies(rm, 30)
        except queue.Empty:
            raise AssertionError(board.lines)
        assert steps(msgs)[-1] == "sampleFinished", (msgs, board.lines[-5:])
        assert [e["label"] for e, _ in stored(data)] == ["wave"]
    finally:
        rm.close()
        srv.stop()


def test_a_refused_hello_is_one_line_and_backs_off(start_board, ingestion):
    rm = FakeRemoteManagement(api_key="ei_some_other_key")
    try:
        board = start_board(ingestion.url, rm.url)
        _wait(lambda: rm.connections >= 2, board)  # the unix port may take a while to start on a loaded machine
        time.sleep(1)
        # 1 s, then 2 s (+-25 %) between tries: at most 3 by now, never a tight loop
        assert 2 <= rm.connections <= 3, (rm.connections, board.lines)
        hellos = len(rm.hellos)
        # the refusal of the last hello may still be on its way to the board's log
        deadline = time.monotonic() + 5
        while True:
            lines = [line for line in board.lines if "hello refused" in line]
            if len(lines) >= hellos or time.monotonic() > deadline:
                break
            time.sleep(0.05)
        assert hellos >= 2 and hellos <= len(lines) <= len(rm.hellos), board.lines
        assert all("Invalid API key" in line and API_KEY not in line for line in lines), lines
    finally:
        rm.close()


def test_an_unreachable_service_is_one_line_and_backs_off(start_board, ingestion):
    from uingest_tools.loopback import free_port

    board = start_board(ingestion.url, "ws://127.0.0.1:%d" % free_port())
    _wait(lambda: any(line.startswith("remote:") for line in board.lines), board)
    time.sleep(3.5)  # tries after 1 s, 2 s (+-25 %): the same reason is not said again
    lines = [line for line in board.lines if line.startswith("remote:")]
    assert len(lines) == 1 and lines[0].startswith("remote: closed: connection refused"), board.lines


def test_unknown_sensor_too_long_and_unknown_messages_are_refused_or_ignored(start_board, ingestion, remote):
    board = start_board(ingestion.url, remote.url)
    assert remote.wait_session(1, 20), board.lines
    remote.send({"startSnapshot": True})
    remote.send("not json at all")
    remote.send([1, 2, 3])
    remote.send(request(sensor="Camera (320x240)"))
    (m,) = replies(remote)
    assert m["sample"] is False and "unknown sensor" in m["error"], m
    remote.send(request(length=60000))
    (m,) = replies(remote)
    assert m["sample"] is False and "too long" in m["error"], m
    remote.send(request("idle", 500, "training"))  # the session still works
    assert steps(replies(remote))[-1] == "sampleFinished"
    assert remote.connections == 1, board.lines
    assert [e["label"] for e, _ in stored(ingestion.data)] == ["idle"]


def test_a_request_while_busy_is_refused_and_the_first_finishes(start_board, ingestion, remote):
    board = start_board(ingestion.url, remote.url)
    assert remote.wait_session(1, 20), board.lines
    remote.send(request("wave", 3000))
    assert remote.next(10) == {"sample": True}
    assert remote.next(10) == {"sampleStarted": True}
    remote.send(request("idle", 500))
    msgs = replies(remote)
    assert msgs[0]["sample"] is False and "busy" in msgs[0]["error"], msgs
    msgs = replies(remote)
    assert steps(msgs) == ["sampleUploading", "sampleFinished"], msgs
    assert [e["label"] for e, _ in stored(ingestion.data)] == ["wave"]


def test_both_services_going_away_the_board_reconnects_and_keeps_its_queue(start_board, tmp_path, remote):
    data = str(tmp_path / "data")
    srv = ServerThread(create_app(data, api_key=API_KEY, hmac_key=HMAC_KEY)).start()
    port = srv.port
    try:
        board = start_board(srv.url, remote.url, mode="both", window_ms=100, labels=["idle"])
        assert remote.wait_session(1, 20), board.lines
        _wait(lambda: len(read_index(data)) >= 2, board)
        srv.stop()
        remote.drop()  # the collector went away: both its services
        _wait(lambda: any(" queued=3 " in line for line in board.lines), board)
        srv = ServerThread(create_app(data, api_key=API_KEY, hmac_key=HMAC_KEY), port=port).start()
        assert remote.wait_session(2, 20), board.lines  # a new hello on a new connection
        _wait(lambda: any(" queued=0 " in line for line in board.lines[-3:]), board)
        remote.send(request("wave", 100, "training", hmacKey=HMAC_KEY))  # the window's length: the longest here
        msgs = replies(remote)
        assert steps(msgs)[-1] == "sampleFinished", msgs
        lines = list(board.lines)
    finally:
        srv.stop()
    samples = stored(data)
    assert all(verify_signature(b, "cbor", HMAC_KEY) for _, b in samples)
    assert [e["label"] for e, _ in samples].count("wave") == 1
    assert any("remote: closed" in line for line in lines), lines
    # the status line shows the session with the last window's sampler figures
    assert any(re.search(r" remote=open late_max=\d+us missed=\d+ free=", line) for line in lines), lines
    assert not any(" lost=1" in line or "dropped=1" in line for line in lines)


def _wait(cond, board, timeout=20):
    end = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > end:
            raise AssertionError("\n".join(board.lines[-30:]))
        time.sleep(0.05)


def test_a_stream_only_board_never_loads_the_socket(mpy, firmware, tmp_path, ingestion):
    d = str(tmp_path)
    path = config(d, ingestion.url, "ws://127.0.0.1:9", mode="stream", window_ms=100)
    prog = os.path.join(d, "run_app.py")
    with open(prog, "w") as f:
        f.write(
            "import sys\nfrom uingest import app\nrc = app.main(sys.argv[1], 2)\n"
            "print('modules', sorted(k for k in sys.modules if k.startswith('uingest')))\nsys.exit(rc)\n"
        )
    proc = mpy.run_program(prog, path, heap="128K", path=firmware + os.pathsep + BOARD, cwd=d)
    out = proc.stdout.decode()
    mods = [line for line in out.split("\n") if line.startswith("modules")][0]
    assert "uingest.ws" not in mods and "uingest.remote" not in mods and "uingest.app" in mods, out


@pytest.mark.parametrize(
    "fields, problem",
    [
        ({"mode": "remote-only"}, "config: mode: expected 'stream'"),
        ({"mode": "remote", "remote_url": "http://127.0.0.1:4820"}, "config: remote_url: expected the remote"),
        ({"mode": "remote", "remote_url": "wss://remote-mgmt.edgeimpulse.com"}, "config: ca_file: a wss remote_url"),
    ],
)
def test_config_checks_the_remote_fields(fields, problem):
    from uingest import config

    raw = {"board": "unix-sim", "api_key": API_KEY, "labels": ["idle"], "url": "http://127.0.0.1:4810"}
    raw.update(fields)
    _, problems = config.validate(raw)
    assert len(problems) == 1 and problems[0].startswith(problem), problems


def test_a_stream_board_needs_no_ca_for_the_default_remote_url():
    from uingest import config

    raw = {"board": "unix-sim", "api_key": API_KEY, "labels": ["idle"], "url": "http://127.0.0.1:4810"}
    cfg, problems = config.validate(raw)
    assert problems == [] and cfg["mode"] == "stream" and cfg["remote_url"] == "wss://remote-mgmt.edgeimpulse.com"


def record_through_studio_api(start_board, tmp_path, **config):
    """The board (with these config fields) connected to `uingest serve`'s remote management port, a sample
    asked for through Studio's API (edgeimpulse_api, only the base URL changed), recorded and stored: the
    collector's view of the device when it connected, and the one stored (entry, body)."""
    import edgeimpulse_api as ei

    data = str(tmp_path / "collected")
    app = create_app(data, api_key=API_KEY, hmac_key=HMAC_KEY, remote_port=0)
    srv = ServerThread(app).start()
    try:
        rm = app.state.remote_management
        board = start_board(srv.url, "ws://127.0.0.1:%d" % rm.port, **config)
        _wait(lambda: [d for d in rm.snapshot()["devices"] if d["deviceId"] == "remote-test"], board)
        [connected] = rm.snapshot()["devices"]
        api = ei.DevicesApi(
            ei.ApiClient(ei.Configuration(host=srv.url + "/v1", api_key={"ApiKeyAuthentication": API_KEY}))
        )
        [device] = api.list_devices(project_id=1).devices
        assert device.device_id == "remote-test" and device.remote_mgmt_connected
        started = api.start_sampling(
            project_id=1,
            device_id="remote-test",
            start_sampling_request=ei.StartSamplingRequest(
                label="knock",
                length_ms=1000,
                category="testing",
                interval_ms=1000 / RATE,
                sensor=device.sensors[0].name,
            ),
        )
        assert started.success
        _wait(lambda: read_index(data), board)
        _wait(lambda: [d for d in rm.snapshot()["devices"] if d["state"] == "idle"], board)
        time.sleep(0.2)
    finally:
        srv.stop()
    [stored_one] = stored(data)
    return connected, stored_one


def test_the_board_recorded_from_uingest_serves_studio_api(start_board, tmp_path):
    """The whole loop with no fake: the board (CPython and the unix port) holds its socket to `uingest serve`'s
    remote management port; a script posts Studio's start-sampling to the collector with only the base URL
    changed (edgeimpulse_api); the board records, signs with the collector's key and uploads; the device's
    state goes back to idle and the sample is in the index with the requested label and category."""
    _, (entry, body) = record_through_studio_api(start_board, tmp_path)
    assert (entry["label"], entry["category"], entry["rows"]) == ("knock", "testing", RATE)
    assert entry["signature"] == "valid" and verify_signature(body, "cbor", HMAC_KEY)
