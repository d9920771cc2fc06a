"""`uingest serve`'s remote management: fake devices (the `websockets` client, JSON and CBOR sessions) on its
WebSocket port, driven through the Studio-compatible API with Edge Impulse's own API client
(edgeimpulse_api, only its base URL changed), from the request to the stored sample."""

import http.client
import json
import logging
import threading
import time

import edgeimpulse_api as ei
import pytest
from remote_device import SENSORS, FakeDevice
from websockets.exceptions import ConnectionClosed

from uingest_tools import acquisition, serve
from uingest_tools.datafolder import read_index

API_KEY = "ei_remote_key_51c2"
HMAC_KEY = "remote-hmac-9d2e"
DEVICE = "AA:BB:CC:00:11:22"


@pytest.fixture
def server(tmp_path):
    app = serve.create_app(str(tmp_path), api_key=API_KEY, hmac_key=HMAC_KEY, remote_port=0)
    with serve.ServerThread(app) as s:
        s.remote = app.state.remote_management
        s.ws_url = "ws://127.0.0.1:%d" % s.remote.port
        s.data_dir = str(tmp_path)
        yield s


def studio(server, key=API_KEY):
    """Edge Impulse's API client with the local base URL: what a Studio script uses."""
    config = ei.Configuration(host=server.url + "/v1", api_key={"ApiKeyAuthentication": key})
    return ei.DevicesApi(ei.ApiClient(config))


def request(server, method, path, body=None, key=API_KEY):
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
    headers = {"Content-Type": "application/json"}
    if key:
        headers["x-api-key"] = key
    try:
        conn.request(method, path, json.dumps(body) if body is not None else None, headers)
        r = conn.getresponse()
        return r.status, json.loads(r.read())
    finally:
        conn.close()


def start(server, device=DEVICE, **fields):
    body = {"label": "wave", "lengthMs": 1000, "category": "training", "intervalMs": 10, "sensor": "Accelerometer"}
    body.update(fields)
    return request(server, "POST", "/v1/api/1/device/%s/start-sampling" % device, body)


def wait_for(what, timeout=10.0):
    deadline = time.monotonic() + timeout
    while True:
        got = what()
        if got:
            return got
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


def device_view(server, device=DEVICE):
    for d in server.remote.snapshot()["devices"]:
        if d["deviceId"] == device:
            return d
    return None


@pytest.mark.parametrize("encoding", ["json", "cbor"])
def test_a_recording_from_the_studio_api_to_the_stored_sample(server, encoding):
    dev = FakeDevice(server.ws_url, encoding)
    assert dev.say_hello(API_KEY) == {"hello": True}
    api = studio(server)

    listed = api.list_devices(project_id=1)
    assert listed.success and [d.device_id for d in listed.devices] == [DEVICE]
    d = listed.devices[0]
    assert d.device_type == "UINGEST_FAKE" and d.remote_mgmt_connected and d.remote_mgmt_mode == "ingestion"
    assert [(s.name, s.max_sample_length_s, s.frequencies) for s in d.sensors] == [
        (s["name"], s["maxSampleLengthS"], s["frequencies"]) for s in SENSORS
    ]
    assert api.get_device(project_id=1, device_id=DEVICE).device.device_id == DEVICE
    assert device_view(server)["state"] == "idle" and device_view(server)["encoding"] == encoding

    started = api.start_sampling(
        project_id=1,
        device_id=DEVICE,
        start_sampling_request=ei.StartSamplingRequest(
            label="wave", length_ms=2000, category="testing", interval_ms=10.0, sensor="Accelerometer"
        ),
    )
    assert started.success and isinstance(started.id, int)
    req = dev.recv()
    assert req == {
        "sample": {
            "label": "wave",
            "length": 2000,
            "path": "/api/testing/data",
            "hmacKey": HMAC_KEY,
            "interval": 10.0,
            "sensor": "Accelerometer",
        }
    }
    assert device_view(server)["state"] == "sampling"
    assert device_view(server)["job"]["stage"] == "requested"

    # the states a viewer sees while the device answers
    dev.send({"sample": True})
    dev.send({"sampleStarted": True})
    dev.send({"sampleReading": True, "progressPercentage": 40})
    wait_for(lambda: (device_view(server)["job"] or {}).get("progress") == 40)
    assert device_view(server)["job"]["stage"] == "reading" and device_view(server)["state"] == "sampling"
    dev.send({"sampleUploading": True})
    wait_for(lambda: device_view(server)["state"] == "uploading")

    # the rest of the recording as a board does it: the upload, then sampleFinished
    s = req["sample"]
    status = _upload(dev, server, s)
    assert status == 200
    dev.send({"sampleFinished": True})
    wait_for(lambda: device_view(server)["state"] == "idle")
    view = device_view(server)
    assert view["job"] is None and view["lastJob"]["stage"] == "finished" and view["lastJob"]["id"] == started.id
    records, _ = read_index(server.data_dir)
    assert len(records) == 1
    rec = records[0]
    assert (rec["label"], rec["category"], rec["rows"], rec["signature"]) == ("wave", "testing", 200, "valid")
    assert view["lastJob"]["sampleId"] == rec["sample_id"]
    with open("%s/%s" % (server.data_dir, rec["file"]), "rb") as f:
        assert acquisition.verify_signature(f.read(), "json", HMAC_KEY)
    dev.close()
    wait_for(lambda: not device_view(server)["connected"])
    gone = api.list_devices(project_id=1).devices[0]
    assert not gone.remote_mgmt_connected and gone.remote_mgmt_mode == "disconnected"


def _upload(dev, server, s):
    from remote_device import IMU

    from uingest import message
    from uingest.window import Window

    rows = round(s["length"] / s["interval"])
    w = Window(IMU, s["interval"], rows)
    for i in range(rows):
        w.append(i, -i, 9.81)
    body = message.encode(w, "json", hmac_key=s["hmacKey"], device_type="UINGEST_FAKE", device_name=DEVICE)
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
    try:
        headers = {"Content-Type": "application/json", "x-api-key": API_KEY, "x-file-name": s["label"] + ".json"}
        conn.request("POST", s["path"], body, headers)
        r = conn.getresponse()
        r.read()
        return r.status
    finally:
        conn.close()


def test_the_whole_recording_played_by_the_fake_device(server):
    dev = FakeDevice(server.ws_url)
    assert dev.say_hello(API_KEY) == {"hello": True}
    status, body = start(server, label="knock", lengthMs=1000, intervalMs=10, category="anomaly")  # 100 Hz, offered
    assert status == 200 and body["success"] is True, body
    assert dev.record(dev.recv(), server.port, API_KEY, DEVICE) == 200
    wait_for(lambda: (device_view(server)["lastJob"] or {}).get("stage") == "finished")
    records, _ = read_index(server.data_dir)
    assert [(r["label"], r["category"], r["rows"]) for r in records] == [("knock", "anomaly", 100)]
    assert device_view(server)["lastJob"]["sampleId"] == records[0]["sample_id"]


def test_the_hello_is_checked(server, caplog):
    caplog.set_level(logging.INFO, logger="uingest.remote")
    dev = FakeDevice(server.ws_url)
    assert dev.say_hello("ei_wrong") == {"hello": False, "err": "Invalid API key"}
    with pytest.raises(ConnectionClosed):
        dev.recv(timeout=5)  # closed by the server
    assert "ei_wrong" not in caplog.text and API_KEY not in caplog.text  # no key in the log
    cbor_dev = FakeDevice(server.ws_url, "cbor")
    assert cbor_dev.say_hello("ei_wrong") == {"hello": False, "err": "Invalid API key"}  # answered in CBOR
    bad = FakeDevice(server.ws_url)
    bad.ws.send("{not json")
    reply = bad.recv()
    assert reply["hello"] is False and "not JSON" in reply["err"]
    odd = FakeDevice(server.ws_url)
    odd.send({"hello": {"version": 3, "apiKey": API_KEY, "deviceId": "", "sensors": []}})
    assert odd.recv() == {"hello": False, "err": "deviceId must be a non-empty string"}
    assert server.remote.snapshot()["devices"] == []
    refused = [r for r in caplog.records if "hello refused" in r.getMessage()]
    assert len(refused) == 4, [r.getMessage() for r in refused]


def test_refusals_are_studio_style(server):
    status, body = start(server, device="nobody")
    assert (status, body["success"]) == (200, False) and "unknown device" in body["error"]
    with pytest.raises(Exception, match="unknown device"):  # Edge Impulse's client raises the error
        studio(server).start_sampling(
            project_id=1,
            device_id="nobody",
            start_sampling_request=ei.StartSamplingRequest(label="x", length_ms=10, category="training", interval_ms=1),
        )
    assert request(server, "GET", "/v1/api/1/devices", key="ei_wrong") == (
        401,
        {"success": False, "error": "Invalid API key"},
    )
    assert start(server, device="nobody")[0] == 200
    assert request(server, "POST", "/v1/api/1/device/x/start-sampling", {}, key=None)[0] == 401

    dev = FakeDevice(server.ws_url)
    assert dev.say_hello(API_KEY) == {"hello": True}
    for fields, error in (
        ({"label": ""}, "label"),
        ({"label": "a/b"}, "label"),
        ({"lengthMs": "1000"}, "lengthMs"),
        ({"lengthMs": 0}, "lengthMs"),
        ({"category": "validation"}, "category"),
        ({"intervalMs": 0}, "intervalMs"),
        ({"sensor": "Thermometer"}, "unknown sensor"),
    ):
        status, body = start(server, **fields)
        assert status == 200 and body["success"] is False and error in body["error"], (fields, body)
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
    conn.request("POST", "/v1/api/1/device/%s/start-sampling" % DEVICE, b"{oops", {"x-api-key": API_KEY})
    assert json.loads(conn.getresponse().read())["success"] is False
    conn.request("POST", "/v1/api/1/device/%s/start-sampling" % DEVICE, b" " * 100000, {"x-api-key": API_KEY})
    assert "over 16384 bytes" in json.loads(conn.getresponse().read())["error"]
    conn.close()

    # the sensor defaults to the first; a second request while it runs is refused: busy
    status, body = start(server, sensor=None)
    assert body["success"] is True
    assert dev.recv()["sample"]["sensor"] == "Accelerometer"
    status, body = start(server)
    assert body["success"] is False and "busy" in body["error"], body
    # the device refuses it after all: idle again, the error kept
    dev.send({"sample": False, "error": "too long for my RAM"})
    wait_for(lambda: device_view(server)["state"] == "idle")
    assert device_view(server)["lastJob"]["error"] == "too long for my RAM"

    dev.close()
    wait_for(lambda: not device_view(server)["connected"])
    status, body = start(server)
    assert body["success"] is False and "not connected" in body["error"]


def test_one_connection_per_device_and_a_device_leaving_mid_recording(server):
    first = FakeDevice(server.ws_url)
    assert first.say_hello(API_KEY) == {"hello": True}
    assert start(server)[1]["success"]
    first.recv()
    second = FakeDevice(server.ws_url, "cbor")
    assert second.say_hello(API_KEY) == {"hello": True}
    with pytest.raises(ConnectionClosed):
        first.recv(timeout=5)  # the server closed the older socket
    assert first.ws.close_code == 1000 and "replaced" in first.ws.close_reason
    view = wait_for(lambda: device_view(server))
    assert view["connected"] and view["encoding"] == "cbor" and view["state"] == "idle"
    assert "connected again" in view["lastJob"]["error"]
    assert len(server.remote.snapshot()["devices"]) == 1

    assert start(server)[1]["success"]
    assert second.recv()["sample"]["label"] == "wave"
    second.send({"sample": True})
    second.close()
    wait_for(lambda: not device_view(server)["connected"])
    assert device_view(server)["lastJob"]["error"] == "the device disconnected"


def test_unknown_messages_are_ignored(server):
    dev = FakeDevice(server.ws_url)
    assert dev.say_hello(API_KEY) == {"hello": True}
    for msg in ({"snapshotFrame": "AAAA"}, [1, 2], {"sampleFinished": True}, {"inferenceSummary": {}}, "text"):
        dev.send(msg)
    dev.ws.send("not json at all")
    assert start(server)[1]["success"]
    assert dev.recv()["sample"]["label"] == "wave"
    assert device_view(server)["connected"]


def test_dashboard_sees_the_devices(server):
    dev = FakeDevice(server.ws_url)
    assert dev.say_hello(API_KEY) == {"hello": True}
    status, body = request(server, "GET", "/api/dashboard/remote")
    assert status == 200 and body["port"] == server.remote.port
    assert [(d["deviceId"], d["state"], d["connected"]) for d in body["devices"]] == [(DEVICE, "idle", True)]
    assert request(server, "GET", "/api/dashboard/remote", key="bad")[0] == 401

    # the event stream: one event at open, one per change
    got = []
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
    conn.request("GET", "/api/dashboard/remote/events?key=" + API_KEY)
    r = conn.getresponse()

    def read_events():
        buf = b""
        while len(got) < 2:
            line = r.fp.readline()
            if not line:
                return
            buf += line
            if line == b"\n" and b"event: devices" in buf:
                got.append(json.loads(buf.split(b"data: ", 1)[1]))
                buf = b""

    t = threading.Thread(target=read_events, daemon=True)
    t.start()
    wait_for(lambda: got)
    assert start(server)[1]["success"]
    t.join(10)
    conn.close()
    assert got[0]["devices"][0]["state"] == "idle" and got[1]["devices"][0]["state"] == "sampling"


def test_serve_cli_names_the_remote_port(tmp_path):
    from uingest_tools.loopback import free_port, start_serve

    port = free_port()
    proc = start_serve("--data-dir", str(tmp_path), "--api-key", API_KEY, "--remote-port", str(port),
                       stderr=open(tmp_path / "log", "w"))  # fmt: skip
    try:
        dev = FakeDevice("ws://127.0.0.1:%d" % port)
        assert dev.say_hello(API_KEY) == {"hello": True}
        dev.close()
        # a second server cannot take the same remote port: one line, exit status 1
        other = start_serve
        with pytest.raises(RuntimeError, match="exited with status 1"):
            other("--data-dir", str(tmp_path / "b"), "--api-key", API_KEY, "--remote-port", str(port),
                  stderr=open(tmp_path / "log2", "w"))  # fmt: skip
    finally:
        proc.terminate()
        proc.wait(10)
    log = (tmp_path / "log").read_text()
    assert "remote management: ws://127.0.0.1:%d" % port in log
    assert API_KEY not in log
    log2 = (tmp_path / "log2").read_text()
    assert "cannot listen on port %d" % port in log2 and "Traceback" not in log2


def test_a_socket_without_a_hello_is_closed(server, caplog, monkeypatch):
    from uingest_tools import remote_management

    monkeypatch.setattr(remote_management, "HELLO_TIMEOUT", 0.5)
    caplog.set_level(logging.INFO, logger="uingest.remote")
    silent = FakeDevice(server.ws_url)
    with pytest.raises(ConnectionClosed):
        silent.recv(timeout=5)
    assert silent.ws.close_code == 1008
    assert [r.getMessage() for r in caplog.records if "no hello" in r.getMessage()] != []


def test_sockets_that_never_say_hello_cannot_keep_a_device_out(server, monkeypatch, caplog):
    """The socket cap full of sockets that upgraded and said nothing: a device still gets in (the one that has
    waited longest for its hello is closed to make room), and the crowd is a line a minute, not a line each."""
    from uingest_tools import remote_management

    monkeypatch.setattr(remote_management, "MAX_SESSIONS", 5)
    caplog.set_level(logging.WARNING, logger="uingest.remote")
    silent = [FakeDevice(server.ws_url) for _ in range(12)]  # each over the cap makes room by closing another
    try:
        dev = FakeDevice(server.ws_url)
        assert dev.say_hello(API_KEY) == {"hello": True}
        dev.close()
    finally:
        for s in silent:
            try:
                s.close()
            except Exception:
                pass
    lines = [r.getMessage() for r in caplog.records if "make room" in r.getMessage()]
    assert len(lines) == 1, lines


def test_a_device_flooding_unreadable_messages_is_one_line(server, caplog):
    caplog.set_level(logging.INFO, logger="uingest.remote")
    dev = FakeDevice(server.ws_url)
    assert dev.say_hello(API_KEY) == {"hello": True}
    for _ in range(200):
        dev.ws.send('{"garbage": [1, 2, 3]}{"more"')
    dev.close()
    wait_for(lambda: [r for r in caplog.records if "disconnected" in r.getMessage()])
    ignored = [r.getMessage() for r in caplog.records if "ignored a message" in r.getMessage()]
    assert len(ignored) == 1, len(ignored)
    assert [r for r in caplog.records if "200 messages ignored" in r.getMessage()]
