"""Edge Impulse's own clients against `uingest serve`, over real HTTP on loopback.

- The Node ``DataForwarder`` of npm ``edge-impulse-linux`` (signed JSON to ``/api/<category>/data``), run
  unmodified by ei_clients/forward.js. `make test` installs the package's files and its one dependency,
  undici, into .venv/node (see the Makefile).
- The Python SDK (PyPI ``edgeimpulse``, pinned in requirements-dev.txt) uploading directories to
  ``/api/<category>/files``, run by ei_clients/sdk_upload.py in its own process with EI_INGESTION_ENDPOINT
  and EI_API_KEY in its environment, as a user would set them.

The server runs with an HMAC key, so it verifies every signed message itself; the test verifies the stored
bytes again with acquisition.verify_signature. Nothing here is skipped: a missing client is a failure.
"""

import hashlib
import importlib.util
import json
import math
import os
import re
import shutil
import subprocess
import sys
import time

import pytest

from helpers import IEEE_FLOAT, read_index, wav_by_hand, wav_bytes
from uingest import message
from uingest.window import Window
from uingest_tools.acquisition import decode, verify_signature
from uingest_tools.collector_rules import split_category
from uingest_tools.serve import ServerThread, create_app

HERE = os.path.dirname(os.path.abspath(__file__))
FORWARD_JS = os.path.join(HERE, "ei_clients", "forward.js")
SDK_UPLOAD = os.path.join(HERE, "ei_clients", "sdk_upload.py")
EI_LINUX = os.path.join(sys.prefix, "node", "edge-impulse-linux")  # .venv/node, installed by `make test`
DATA_FORWARDER = os.path.join(EI_LINUX, "build", "library", "data-forwarder.js")

API_KEY = "ei_0123456789abcdef0123456789abcdef"
HMAC_KEY = "0a1b2c3d4e5f60718293a4b5c6d7e8f9"
IMU = [("accX", "m/s2"), ("accY", "m/s2"), ("accZ", "m/s2")]


@pytest.fixture
def server(tmp_path):
    data_dir = tmp_path / "data"
    srv = ServerThread(create_app(str(data_dir), api_key=API_KEY, hmac_key=HMAC_KEY)).start()
    try:
        yield srv, data_dir
    finally:
        srv.stop()


def stored_name(label, ext):
    """<label>.<id>.<ext>, as `uingest serve` names the files it stores."""
    return re.compile(re.escape(label) + r"\.[0-9a-f]+\." + ext)


# --- the Node DataForwarder (edge-impulse-linux)


@pytest.fixture(scope="module")
def node():
    exe = shutil.which("node")
    if exe is None:
        pytest.fail("node is not on PATH: Edge Impulse's DataForwarder needs Node.js (18 or later)")
    if not os.path.isfile(DATA_FORWARDER):
        pytest.fail(
            "edge-impulse-linux is not installed at %s: run `make test` (its .venv/node/.installed step "
            "installs it with npm)" % EI_LINUX
        )
    return exe


def forward(node, srv, uploads, hmac_key=HMAC_KEY, api_key=API_KEY):
    job = {
        "server": srv.url,
        "apiKey": api_key,
        "hmacKey": hmac_key,
        "deviceId": "ac:87:a3:0a:2d:1b",
        "deviceType": "LINUX_FORWARDER",
        "sensors": [{"name": n, "units": u} for n, u in IMU],
        "intervalMs": 10,
        "uploads": uploads,
    }
    # EI_HOST=localhost: the DataForwarder's own switch to a local ingestion server (http://localhost:4810)
    env = dict(os.environ, EI_HOST="localhost")
    proc = subprocess.run(
        [node, FORWARD_JS, EI_LINUX], input=json.dumps(job), capture_output=True, text=True, env=env, timeout=30
    )
    assert proc.returncode == 0, "forward.js failed:\n" + proc.stderr
    results = json.loads(proc.stdout)
    assert len(results) == len(uploads)
    return results


def imu_rows(n, phase):
    return [[round(math.sin(i / 5 + phase) * 9.81, 4), (i % 17) * 0.125 - 1, 9.80665] for i in range(n)]


def test_data_forwarder_windows_are_stored_and_signed(node, server):
    srv, data_dir = server
    uploads = [
        {"category": "training", "label": "idle", "filename": "idle.01", "values": imu_rows(50, 0)},
        {"category": "testing", "label": "wave", "filename": "wave.01", "values": imu_rows(40, 1)},
        # encodeURIComponent'ed in x-label and x-file-name by the client
        {"category": "anomaly", "label": "left wave", "filename": "left wave.01", "values": imu_rows(30, 2)},
        {
            "category": "training",
            "label": "caf\u00e9 \u2615",
            "filename": "caf\u00e9 \u2615.01",
            "values": imu_rows(9, 4),
        },
        {"category": "split", "label": "idle", "filename": "idle.02", "values": imu_rows(20, 3)},
    ]
    t0 = time.time()
    results = forward(node, srv, uploads)
    assert all(r["ok"] for r in results), results

    records = {r["file"].split("/")[-1]: r for r in read_index(data_dir)}
    assert len(records) == len(uploads)
    for up, res in zip(uploads, results):
        name = res["body"]  # /data answers with the stored file name
        rec = records[name]
        raw = (data_dir / rec["file"]).read_bytes()
        if up["category"] == "split":
            assert rec["category"] == split_category(hashlib.sha256(raw).hexdigest())
        else:
            assert rec["category"] == up["category"]
        assert rec["file"] == "%s/%s" % (rec["category"], name)
        assert stored_name(up["label"], "json").fullmatch(name), name
        assert rec["label"] == up["label"]
        assert rec["file_name"] == up["filename"]
        assert rec["signature"] == "valid"  # the server checked it
        assert (rec["device_type"], rec["device_name"]) == ("LINUX_FORWARDER", "ac:87:a3:0a:2d:1b")
        assert (rec["rows"], rec["interval_ms"], rec["sensors"]) == (len(up["values"]), 10, ["accX", "accY", "accZ"])

        # what the client sent, byte for byte: JSON.stringify of protected, signature, payload, signed in place
        msg = json.loads(raw)
        assert msg == decode(raw, "json")
        assert list(msg) == ["protected", "signature", "payload"]
        assert b": " not in raw and b", " not in raw
        assert msg["protected"]["ver"] == "v1" and msg["protected"]["alg"] == "HS256"
        assert abs(msg["protected"]["iat"] - t0) < 300
        assert msg["payload"]["values"] == up["values"]
        assert msg["payload"]["sensors"] == [{"name": n, "units": u} for n, u in IMU]
        assert verify_signature(raw, "json", HMAC_KEY)
        assert not verify_signature(raw, "json", HMAC_KEY + "x")


def test_data_forwarder_sees_the_servers_refusals(node, server):
    srv, data_dir = server
    up = [{"category": "training", "label": "idle", "filename": "idle.01", "values": imu_rows(10, 0)}]
    # the DataForwarder throws the response body of any non-200 answer
    [bad_sig] = forward(node, srv, up, hmac_key="not-the-project-key")
    assert not bad_sig["ok"] and "signature does not match" in bad_sig["error"], bad_sig
    [bad_key] = forward(node, srv, up, api_key="ei_wrong")
    assert not bad_key["ok"] and "Invalid API key" in bad_key["error"], bad_key
    up[0]["category"] = "validation"
    [bad_cat] = forward(node, srv, up)
    assert not bad_cat["ok"] and "unknown category" in bad_cat["error"], bad_cat
    assert read_index(data_dir) == []


# --- the Python SDK (edgeimpulse)


def sdk_upload(srv, calls):
    if importlib.util.find_spec("edgeimpulse") is None:
        pytest.fail("the edgeimpulse SDK is not installed in %s: run `make test`" % sys.prefix)
    env = dict(os.environ, EI_INGESTION_ENDPOINT=srv.url, EI_API_KEY=API_KEY)
    proc = subprocess.run(
        [sys.executable, SDK_UPLOAD], input=json.dumps(calls), capture_output=True, text=True, env=env, timeout=60
    )
    assert proc.returncode == 0, "sdk_upload.py failed:\n" + proc.stderr
    out = json.loads(proc.stdout)
    assert out["endpoint"] == srv.url  # the SDK took the endpoint from EI_INGESTION_ENDPOINT
    return out["calls"]


def imu_window(rows, phase):
    w = Window(IMU, 10, rows)
    for i in range(rows):
        w.append(math.sin(i / 7 + phase) * 9.81, i * 0.01 - 1, 9.81)
    return w


def acquisition(fmt, rows, phase):
    return message.encode(imu_window(rows, phase), fmt, hmac_key=HMAC_KEY, device_type="ESP32_DEVKITC")


def write_files(folder, files):
    for rel, data in files.items():
        path = folder / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)


def test_python_sdk_uploads_directories(server, tmp_path):
    srv, data_dir = server
    # infer_from_filename takes the category from any 'training'/'testing'/'anomaly' in the whole path
    assert not re.search("training|testing|anomaly", str(tmp_path)), tmp_path

    plain = {
        "idle.01.cbor": acquisition("cbor", 40, 0),
        "idle.02.cbor": acquisition("cbor", 30, 1),
        "wave.01.json": acquisition("json", 20, 2),
        "noise.01.wav": wav_bytes(1600),
        "updown.01.csv": b"timestamp,accX,accY\n0,0.5,1.25\n10,0.75,-2\n20,1,0\n",
        "notes.txt": b"not a sample: the SDK leaves it out\n",
    }
    write_files(tmp_path / "plain", plain)
    sorted_ = {
        "training/wave.03.cbor": acquisition("cbor", 25, 3),
        "testing/idle.03.json": acquisition("json", 25, 4),
    }
    write_files(tmp_path / "sorted", sorted_)
    # an Edge Impulse export: info.labels gives each file its category, label and metadata
    exported = {"training/sample-a.cbor": acquisition("cbor", 15, 5)}
    write_files(tmp_path / "exported", exported)
    info = {
        "version": 1,
        "files": [
            {
                "path": "training/sample-a.cbor",
                "name": "sample-a",
                "category": "training",
                "label": {"type": "label", "label": "resting"},
                "metadata": {"site": "lab"},
                "boundingBoxes": [],
            }
        ],
    }
    (tmp_path / "exported" / "info.labels").write_text(json.dumps(info))

    calls = sdk_upload(
        srv,
        [
            {"directory": str(tmp_path / "plain")},  # no category: the SDK posts to /api/split/files
            {"directory": str(tmp_path / "plain")},  # again: x-disallow-duplicates (the SDK's default)
            {"directory": str(tmp_path / "sorted"), "infer_from_filename": True},
            {"directory": str(tmp_path / "exported")},
        ],
    )
    by_id = {r["sample_id"]: r for r in read_index(data_dir)}

    def check(call, sources, category, label_of):
        assert call["fails"] == []
        assert sorted(s["filename"] for s in call["successes"]) == sorted(os.path.basename(p) for p in sources)
        for s in call["successes"]:
            assert s["success"]
            rel = next(p for p in sources if os.path.basename(p) == s["filename"])
            src = sources[rel]
            rec = by_id[s["sample_id"]]  # the SDK got the server's sampleId
            raw = (data_dir / rec["file"]).read_bytes()
            assert raw == src
            want = category(rel, src)
            assert rec["category"] == want
            assert rec["label"] == label_of(rel)
            ext = rel.rsplit(".", 1)[1]
            assert rec["file"].split("/") == [want, rec["file"].split("/")[1]]
            assert stored_name(rec["label"], ext).fullmatch(rec["file"].split("/")[1]), rec["file"]
            assert rec["file_name"] == s["filename"]
            if ext in ("cbor", "json"):
                assert rec["signature"] == "valid"
                assert verify_signature(raw, ext, HMAC_KEY)
            else:
                assert rec["signature"] is None
        return len(call["successes"])

    def split(rel, data):
        return split_category(hashlib.sha256(data).hexdigest())

    def prefix(rel):
        return os.path.basename(rel).split(".")[0]

    plain_samples = {k: v for k, v in plain.items() if not k.endswith(".txt")}
    plain_call, again, sorted_call, exported_call = calls
    # split: no x-label, the server infers the label from the file name and picks training or testing
    assert all(s["category"] == "split" and s["label"] is None for s in plain_call["successes"])
    n = check(plain_call, plain_samples, split, prefix)
    # duplicates: the SDK reports each file as failed with the server's reason, and nothing more is stored
    assert again["successes"] == []
    assert sorted(f["filename"] for f in again["fails"]) == sorted(plain_samples)
    assert all("duplicate" in f["error"] for f in again["fails"]), again["fails"]
    # infer_from_filename: category from the folder, label from the file name, sent as x-label
    assert all(s["label"] == prefix(s["filename"]) for s in sorted_call["successes"])
    n += check(sorted_call, sorted_, lambda rel, data: rel.split("/")[0], prefix)
    # export: category, label (x-label) and metadata (x-metadata) from info.labels
    n += check(exported_call, exported, lambda rel, data: "training", lambda rel: "resting")
    [exp] = exported_call["successes"]
    assert by_id[exp["sample_id"]]["metadata"] == {"site": "lab"}

    assert n == len(by_id) == 8


def test_python_sdk_multi_label_samples_and_bounding_boxes(server, tmp_path):
    """upload_samples with structured_labels (a structured_labels.labels part) and bounding_boxes
    (the x-bounding-boxes header), as the SDK sends them."""
    srv, data_dir = server
    (tmp_path / "session.cbor").write_bytes(acquisition("cbor", 40, 6))
    (tmp_path / "desk.png").write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(32))
    segments = [{"label": "idle", "startIndex": 0, "endIndex": 19}, {"label": "wave", "startIndex": 20, "endIndex": 39}]
    boxes = [{"label": "cup", "x": 4, "y": 5, "width": 16, "height": 12}]
    [call] = sdk_upload(
        srv,
        [
            {
                "samples": [
                    {
                        "path": str(tmp_path / "session.cbor"),
                        "filename": "session.cbor",
                        "category": "training",
                        "structured_labels": segments,
                    },
                    {
                        "path": str(tmp_path / "desk.png"),
                        "filename": "desk.png",
                        "category": "training",
                        "label": "cup",
                        "bounding_boxes": boxes,
                    },
                ]
            }
        ],
    )
    assert call["fails"] == [] and len(call["successes"]) == 2
    recs = {r["file_name"]: r for r in read_index(data_dir)}
    assert recs["session.cbor"]["structured_labels"] == segments and recs["session.cbor"]["rows"] == 40
    assert recs["desk.png"]["bounding_boxes"] == boxes and recs["desk.png"]["label"] == "cup"


def test_python_sdk_sees_our_reason_for_a_refused_label_file(server, tmp_path):
    """upload_samples with structured labels that leave rows without a label: the request is refused whole
    (nothing stored) and the SDK reports the sample as failed with our reason."""
    srv, data_dir = server
    (tmp_path / "session.cbor").write_bytes(acquisition("cbor", 40, 6))
    gap = [{"label": "idle", "startIndex": 0, "endIndex": 19}, {"label": "wave", "startIndex": 25, "endIndex": 39}]
    sample = {"path": str(tmp_path / "session.cbor"), "filename": "session.cbor", "category": "training"}
    [call] = sdk_upload(srv, [{"samples": [dict(sample, structured_labels=gap)]}])
    assert call["successes"] == [] and [f["filename"] for f in call["fails"]] == ["session.cbor"]
    reason = "structured_labels.labels: session.cbor: structured labels leave rows 20..24 without a label"
    assert call["fails"][0]["error"] == reason
    assert read_index(data_dir) == []


@pytest.fixture
def unsigned_server(tmp_path):
    """A server with no HMAC key: the SDK's numpy, pandas and DataAcquisition uploads are unsigned."""
    data_dir = tmp_path / "unsigned"
    srv = ServerThread(create_app(str(data_dir), api_key=API_KEY)).start()
    try:
        yield srv, data_dir
    finally:
        srv.stop()


def test_every_upload_function_of_the_python_sdk_stores_its_samples(unsigned_server, tmp_path):
    """Each upload function of the pinned SDK against `uingest serve`: its messages carry null for iat,
    signature and device_name (an unsigned sample, as the service takes it), its pandas uploads are CSV."""
    srv, data_dir = unsigned_server
    windows = [
        [[0.5, 1.25, -2.0], [0.75, 1.5, -2.25], [1.0, 1.75, -2.5]],
        [[2.0, 0.0, 1.0], [2.5, 0.5, 1.5], [3, 1, 2]],
    ]
    (tmp_path / "plain").mkdir()
    knock = acquisition("cbor", 12, 7)
    (tmp_path / "plain" / "knock.01.cbor").write_bytes(knock)
    (tmp_path / "exported" / "training").mkdir(parents=True)
    tap = acquisition("cbor", 14, 8)
    (tmp_path / "exported" / "training" / "s.cbor").write_bytes(tap)
    info = {
        "version": 1,
        "files": [
            {
                "path": "training/s.cbor",
                "name": "s",
                "category": "training",
                "label": {"type": "label", "label": "tap"},
                "boundingBoxes": [],
            }
        ],
    }
    (tmp_path / "exported" / "info.labels").write_text(json.dumps(info))
    imu = [["accX", "m/s2"], ["accY", "m/s2"], ["accZ", "m/s2"]]
    calls = [
        (
            "upload_numpy",
            dict(data=windows, labels=["up", "down"], sensors=imu, sample_rate_ms=10, category="training"),
        ),
        (
            "upload_acquisition",
            dict(device_type="SDK", sensors=imu, values=windows[0], interval_ms=10, filename="acq.json", label="lift"),
        ),
        (
            "upload_pandas_sample",
            dict(
                df={"x": [1.0, 2.0, 3.0], "y": [4.0, 5.0, 6.0]},
                label="wave",
                sample_rate_ms=10,
                filename="wave1",
                category="training",
            ),
        ),
        (
            "upload_pandas_dataframe",
            dict(
                df={"a": [1.0, 2.0], "b": [3.0, 4.0], "label": ["p", "q"], "cat": ["training", "testing"]},
                feature_cols=["a", "b"],
                label_col="label",
                category_col="cat",
            ),
        ),
        (
            "upload_pandas_dataframe_wide",
            dict(
                df={"label": ["l1", "l2"], "t0": [1.0, 5.0], "t1": [2.0, 6.0], "t2": [3.0, 7.0]},
                sample_rate_ms=10,
                data_col_start=1,
                label_col="label",
            ),
        ),
        (
            "upload_pandas_dataframe_with_group",
            dict(
                df={
                    "ts": [0, 10, 20, 0, 10],
                    "g": ["a", "a", "a", "b", "b"],
                    "v": [1.0, 2.0, 3.0, 4.0, 5.0],
                    "label": ["x", "x", "x", "y", "y"],
                },
                timestamp_col="ts",
                group_by="g",
                feature_cols=["v"],
                label_col="label",
            ),
        ),
        ("upload_plain_directory", dict(directory=str(tmp_path / "plain"), category="testing")),
        ("upload_exported_dataset", dict(directory=str(tmp_path / "exported"))),
    ]
    results = sdk_upload(srv, [{"function": name, "kwargs": kw} for name, kw in calls])
    for (name, _), r in zip(calls, results):
        assert r["fails"] == [] and r["successes"], (name, r)
    by_id = {rec["sample_id"]: rec for rec in read_index(data_dir)}
    got = {name: [by_id[s["sample_id"]] for s in r["successes"]] for (name, _), r in zip(calls, results)}

    def values_of(rec):
        return decode((data_dir / rec["file"]).read_bytes(), rec["file"].rsplit(".", 1)[1])["payload"]["values"]

    def csv_of(rec):
        return (data_dir / rec["file"]).read_text().splitlines()

    numpy_recs = sorted(got["upload_numpy"], key=lambda rec: rec["label"], reverse=True)
    assert [rec["label"] for rec in numpy_recs] == ["up", "down"]
    assert [values_of(rec) for rec in numpy_recs] == windows
    for rec in numpy_recs:
        raw = json.loads((data_dir / rec["file"]).read_bytes())
        assert raw["protected"]["iat"] is None and raw["signature"] is None and raw["payload"]["device_name"] is None
        assert rec["signature"] == "none" and rec["device_name"] is None and rec["category"] == "training"
        assert rec["upload_source"] == "EDGE_IMPULSE_PYTHON_SDK"
    [acq] = got["upload_acquisition"]
    assert acq["label"] == "lift" and values_of(acq) == windows[0] and acq["device_type"] == "SDK"
    [wave] = got["upload_pandas_sample"]
    assert wave["label"] == "wave" and csv_of(wave) == ["timestamp,x,y", "0,1.0,4.0", "10,2.0,5.0", "20,3.0,6.0"]
    rows = sorted(got["upload_pandas_dataframe"], key=lambda rec: rec["label"])
    assert [(rec["label"], rec["category"]) for rec in rows] == [("p", "training"), ("q", "testing")]
    assert [csv_of(rec) for rec in rows] == [["a,b", "1.0,3.0"], ["a,b", "2.0,4.0"]]
    wide = sorted(got["upload_pandas_dataframe_wide"], key=lambda rec: rec["label"])
    assert [rec["label"] for rec in wide] == ["l1", "l2"]
    assert [csv_of(rec)[1:] for rec in wide] == [["0,1.0", "10,2.0", "20,3.0"], ["0,5.0", "10,6.0", "20,7.0"]]
    groups = sorted(got["upload_pandas_dataframe_with_group"], key=lambda rec: rec["label"])
    assert [(rec["label"], rec["file_name"]) for rec in groups] == [("x", "a.csv"), ("y", "b.csv")]
    # ts in seconds, made milliseconds by the SDK (its ts_to_ms)
    assert [csv_of(rec) for rec in groups] == [
        ["timestamp,v", "0,1.0", "10000,2.0", "20000,3.0"],
        ["timestamp,v", "0,4.0", "10000,5.0"],
    ]
    [plain] = got["upload_plain_directory"]
    assert plain["label"] == "knock" and plain["category"] == "testing"
    assert (data_dir / plain["file"]).read_bytes() == knock and plain["signature"] == "unchecked"
    [exported] = got["upload_exported_dataset"]
    assert exported["label"] == "tap" and exported["category"] == "training"
    assert (data_dir / exported["file"]).read_bytes() == tap


# --- the uploader's upload() (edge-impulse-linux build/cli-common/make-image.js)

UPLOADER_JS = os.path.join(HERE, "ei_clients", "uploader.js")


def uploader(node, srv, uploads, api_key=API_KEY):
    job = {"server": srv.url, "apiKey": api_key, "uploads": uploads}
    proc = subprocess.run(
        [node, UPLOADER_JS, EI_LINUX], input=json.dumps(job), capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 0, "uploader.js failed:\n" + proc.stderr
    results = json.loads(proc.stdout)
    assert len(results) == len(uploads)
    return results


def test_uploader_sends_label_files_and_every_file_type(node, server, tmp_path):
    """The uploader's label files (bounding_boxes.labels, structured_labels.labels, label_map.labels) are
    applied to the file they come with; images by their bytes, .txt as CSV, float WAV and video stored."""
    srv, data_dir = server
    files = {
        "desk.jpg": b"\x89PNG\r\n\x1a\n" + bytes(40),  # PNG bytes under a .jpg name, as Studio exports them
        "session.cbor": acquisition("cbor", 30, 7),
        "shelf.png": b"\x89PNG\r\n\x1a\n" + bytes(48),
        "updown.txt": b"timestamp,accX,accY\n0,0.5,1.25\n10,0.75,-2\n20,1,0\n",
        "hum.wav": wav_by_hand(IEEE_FLOAT, 16000, 32, [[i / 100, -i / 100] for i in range(100)]),
        "clip.mp4": (24).to_bytes(4, "big") + b"ftypisom" + bytes(12) + (8).to_bytes(4, "big") + b"mdat",
        "bad.png": b"\x89PNG\r\n\x1a\n" + bytes(56),
    }
    for name, data in files.items():
        (tmp_path / name).write_bytes(data)
    boxes = [{"label": "cup", "x": 4, "y": 5.5, "width": 16, "height": 12}]
    segments = [{"startIndex": 0, "endIndex": 14, "label": "idle"}, {"startIndex": 15, "endIndex": 29, "label": "wave"}]
    key_values = {"object": "cup", "place": "shelf"}

    def up(name, label, **kw):
        return {"path": str(tmp_path / name), "filename": name, "category": "training", "label": label, **kw}

    results = uploader(
        node,
        srv,
        [
            up("desk.jpg", {"type": "label", "label": "cup"}, boundingBoxes=boxes),
            up("session.cbor", {"type": "multi-label", "labels": segments}),
            up("shelf.png", {"type": "keyvalue-labels", "labels": key_values}),
            up("updown.txt", {"type": "infer"}),
            up("hum.wav", {"type": "label", "label": "hum"}),
            up("clip.mp4", {"type": "label", "label": "clip"}),
            up("bad.png", {"type": "label", "label": "cup"}, boundingBoxes=[dict(boxes[0], width=0)]),
        ],
    )
    assert [r["ok"] for r in results] == [True] * 6 + [False], results
    assert "bounding_boxes.labels: bad.png: width and height must be > 0" in results[-1]["error"]  # our reason
    recs = {r["file_name"]: r for r in read_index(data_dir)}
    assert sorted(recs) == sorted(n for n in files if n != "bad.png")  # nothing of the refused request
    for name, rec in recs.items():
        assert (data_dir / rec["file"]).read_bytes() == files[name]
    assert recs["desk.jpg"]["file"].endswith(".png") and recs["desk.jpg"]["bounding_boxes"] == boxes
    assert recs["desk.jpg"]["label"] == "cup"
    assert recs["session.cbor"]["structured_labels"] == segments and recs["session.cbor"]["signature"] == "valid"
    assert recs["shelf.png"]["label_map"] == key_values and recs["shelf.png"]["label"] == "shelf"  # inferred
    assert recs["updown.txt"]["file"].endswith(".csv") and recs["updown.txt"]["label"] == "updown"
    assert recs["hum.wav"]["file"].endswith(".wav") and recs["clip.mp4"]["file"].endswith(".mp4")


def test_uploader_sends_a_unicode_label_and_names_itself(node, server, tmp_path):
    """The uploader percent-encodes x-label (its encoding.js); the label is stored as the Unicode text it was,
    the file under its Unicode name; x-upload-source and x-device-type are kept in the index."""
    srv, data_dir = server
    label = "caf\u00e9 \u2615 50%"
    wav = wav_by_hand(IEEE_FLOAT, 8000, 32, [[i / 50] for i in range(50)])
    (tmp_path / "tasse.wav").write_bytes(wav)
    up = {"path": str(tmp_path / "tasse.wav"), "category": "testing", "label": {"type": "label", "label": label}}
    results = uploader(node, srv, [dict(up, filename="tasse \u2615.wav")])
    assert results == [{"ok": True}], results
    [rec] = read_index(data_dir)
    assert rec["label"] == label and rec["file_name"] == "tasse \u2615.wav" and rec["category"] == "testing"
    assert rec["file"].startswith("testing/" + label + ".") and (data_dir / rec["file"]).read_bytes() == wav
    assert (rec["upload_source"], rec["device_type"]) == ("EDGE_IMPULSE_CLI_UPLOADER", "EDGE_IMPULSE_CLI")


def test_the_uploader_shows_the_servers_reasons(node, server, tmp_path):
    """What the uploader throws (and its CLI prints) is our reason, whole-request refusals (a top-level error
    with its status) and per-file failures alike, not a bare status."""
    srv, data_dir = server
    (tmp_path / "ok.png").write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(16))
    (tmp_path / "bad.csv").write_bytes(b"0,1,2\n10,3,4\n")
    (tmp_path / "gap.cbor").write_bytes(acquisition("cbor", 20, 9))

    def up(name, label, **kw):
        return {"path": str(tmp_path / name), "filename": name, "category": "training", "label": label, **kw}

    [wrong_key] = uploader(node, srv, [up("ok.png", {"type": "label", "label": "x"})], api_key="ei_wrong")
    assert not wrong_key["ok"] and wrong_key["error"].endswith("failed: Invalid API key"), wrong_key
    gap = [{"startIndex": 0, "endIndex": 9, "label": "idle"}]  # rows 10..19 have none
    results = uploader(
        node,
        srv,
        [
            up("bad.csv", {"type": "label", "label": "x"}),
            up("gap.cbor", {"type": "multi-label", "labels": gap}),
            up("ok.png", {"type": "label", "label": "x"}, category="validation"),
        ],
    )
    assert [r["ok"] for r in results] == [False] * 3, results
    assert results[0]["error"].endswith(
        "failed: CSV file has no header row: its first line is numbers, not column names"
    )
    assert results[1]["error"].endswith(
        "failed: structured_labels.labels: gap.cbor: structured labels leave rows 10..19 without a label"
    )
    assert "unknown category 'validation'" in results[2]["error"]
    assert read_index(data_dir) == []
