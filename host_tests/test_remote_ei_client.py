"""Edge Impulse's own device-side remote management client (RemoteMgmt of npm edge-impulse-linux,
unmodified, on the ws package the Linux CLI uses) connected to `uingest serve`, and sampled through the
Studio-compatible API with Edge Impulse's own API client (edgeimpulse_api, only the base URL changed).
Its Studio calls are stubs (host_tests/ei_clients/remote.js). `make test` installs the Node package; nothing
here is skipped: a missing client is a failure."""

import json
import os
import subprocess
import sys
import threading
import time

import edgeimpulse_api as ei
import pytest

from uingest_tools import acquisition, serve
from uingest_tools.datafolder import read_index

API_KEY = "ei_node_remote_4b1e"
HMAC_KEY = "node-hmac-77aa"
EI_LINUX = os.path.join(sys.prefix, "node", "edge-impulse-linux")
SCRIPT = os.path.join(os.path.dirname(__file__), "ei_clients", "remote.js")
SENSORS = [{"name": "Accelerometer", "maxSampleLengthS": 300, "frequencies": [62.5, 100]}]


class NodeDevice:
    def __init__(self, job):
        assert os.path.isdir(EI_LINUX), "run `make .venv/node/.installed` (edge-impulse-linux for the Node tests)"
        self.proc = subprocess.Popen(
            ["node", SCRIPT, EI_LINUX],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.proc.stdin.write(json.dumps(job))
        self.proc.stdin.close()
        self.events = []
        self.output = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self):
        for line in self.proc.stdout:
            self.output.append(line)
            if line.startswith('{"event"'):
                self.events.append(json.loads(line))

    def wait(self, event, timeout=20):
        deadline = time.monotonic() + timeout
        while True:
            found = [e for e in self.events if e["event"] == event]
            if found:
                return found[-1]
            assert self.proc.poll() is None or found, "node exited %s:\n%s%s" % (
                self.proc.returncode,
                "".join(self.output),
                self.proc.stderr.read(),
            )
            assert time.monotonic() < deadline, "no %r from node:\n%s" % (event, "".join(self.output))
            time.sleep(0.05)

    def stop(self):
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(10)


@pytest.fixture
def server(tmp_path):
    app = serve.create_app(str(tmp_path), api_key=API_KEY, hmac_key=HMAC_KEY, remote_port=0)
    with serve.ServerThread(app) as s:
        s.remote = app.state.remote_management
        s.data_dir = str(tmp_path)
        yield s


def test_edge_impulse_linux_remote_client_sampled_through_the_studio_api(server):
    job = {
        "ws": "ws://127.0.0.1:%d" % server.remote.port,
        "ingestion": server.url,
        "apiKey": API_KEY,
        "deviceId": "node:fake:01",
        "deviceType": "EDGE_IMPULSE_LINUX_FAKE",
        "sensors": SENSORS,
        "samples": 1,
    }
    node = NodeDevice(job)
    try:
        node.wait("connected")
        config = ei.Configuration(host=server.url + "/v1", api_key={"ApiKeyAuthentication": API_KEY})
        api = ei.DevicesApi(ei.ApiClient(config))
        devices = api.list_devices(project_id=1).devices
        assert [(d.device_id, d.device_type, d.remote_mgmt_connected, d.remote_mgmt_mode) for d in devices] == [
            ("node:fake:01", "EDGE_IMPULSE_LINUX_FAKE", True, "ingestion")
        ]
        assert devices[0].sensors[0].frequencies == [62.5, 100]
        started = api.start_sampling(
            project_id=1,
            device_id="node:fake:01",
            start_sampling_request=ei.StartSamplingRequest(
                label="wave", length_ms=960, category="training", interval_ms=16.0, sensor="Accelerometer"
            ),
        )
        assert started.success
        request = node.wait("request")["sample"]
        assert request == {
            "label": "wave",
            "length": 960,
            "path": "/api/training/data",
            "hmacKey": HMAC_KEY,
            "interval": 16.0,
            "sensor": "Accelerometer",
        }
        assert node.wait("uploaded")["status"] == 200
        deadline = time.monotonic() + 10
        while True:
            d = server.remote.snapshot()["devices"][0]
            if d["lastJob"] and d["lastJob"]["id"] == started.id:
                break
            assert time.monotonic() < deadline, d
            time.sleep(0.05)
        assert d["lastJob"]["stage"] == "finished", d["lastJob"]
        records, _ = read_index(server.data_dir)
        assert [(r["label"], r["category"], r["rows"], r["signature"], r["device_name"]) for r in records] == [
            ("wave", "training", 60, "valid", "node:fake:01")
        ]
        assert d["lastJob"]["sampleId"] == records[0]["sample_id"]
        with open(os.path.join(server.data_dir, records[0]["file"]), "rb") as f:
            assert acquisition.verify_signature(f.read(), "json", HMAC_KEY)
        assert node.proc.wait(10) == 0
    finally:
        node.stop()


def test_edge_impulse_linux_remote_client_with_a_wrong_key(server):
    job = {
        "ws": "ws://127.0.0.1:%d" % server.remote.port,
        "ingestion": server.url,
        "apiKey": "ei_not_this_one",
        "deviceId": "node:fake:02",
        "deviceType": "EDGE_IMPULSE_LINUX_FAKE",
        "sensors": SENSORS,
        "samples": 1,
    }
    node = NodeDevice(job)
    try:
        node.wait("refused")
        assert node.proc.wait(10) == 3
        assert server.remote.snapshot()["devices"] == []
    finally:
        node.stop()
