"""uingest serve: the local ingestion server, over real HTTP on loopback."""

import http.client
import json
import logging
import math
import os
import re
import signal
import socket
import subprocess
import threading
import time

import cbor2
import pytest
from hypothesis import given
from hypothesis import strategies as st

from helpers import IEEE_FLOAT, PCM, read_index, wav_by_hand, wav_bytes, wav_header
from label_cases import LABEL_CASES, ids
from uingest import message
from uingest.window import Window
from uingest_tools import collector_rules, serve
from uingest_tools.acquisition import decode
from uingest_tools.loopback import start_serve

API_KEY = "ei_test_key"
HMAC_KEY = "hmac-test-key"
IMU = [("accX", "m/s2"), ("accY", "m/s2"), ("accZ", "m/s2")]


def imu_window(rows=20):
    w = Window(IMU, 10, rows)
    for i in range(rows):
        w.append(math.sin(i / 7) * 9.81, i * 0.01 - 1, 9.81)
    return w


def msg_bytes(fmt="cbor", key=HMAC_KEY, rows=20, device_name="ac:87:a3:0a:2d:1b"):
    return message.encode(imu_window(rows), fmt, hmac_key=key, device_type="ESP32_DEVKITC", device_name=device_name)


def hand_cbor(values, sensors=IMU):
    """A message built with cbor2 (for what the firmware refuses to encode); alg none."""
    return cbor2.dumps(
        {
            "protected": {"ver": "v1", "alg": "none"},
            "signature": "0" * 64,
            "payload": {
                "device_type": "TEST",
                "interval_ms": 10,
                "sensors": [{"name": n, "units": u} for n, u in sensors],
                "values": values,
            },
        }
    )


CTYPE = {"cbor": "application/cbor", "json": "application/json"}


class Client:
    def __init__(self, srv, data_dir, port=None):
        self.srv = srv
        self.port = port or srv.port
        self.data_dir = data_dir

    def request(self, method, path, body=None, headers=None, **kw):
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        try:
            conn.request(method, path, body=body, headers=headers or {}, **kw)
            r = conn.getresponse()
            return r.status, r.getheader("content-type", ""), r.read()
        finally:
            conn.close()

    def post_data(self, body, fmt="cbor", category="training", file_name="idle.01.cbor", key=API_KEY, **extra):
        h = {"Content-Type": CTYPE.get(fmt, fmt)}
        if key is not None:
            h["x-api-key"] = key
        if file_name is not None:
            h["x-file-name"] = file_name
        h.update(extra)
        return self.request("POST", "/api/%s/data" % category, body, h)

    def post_files(self, parts, category="training", key=API_KEY, chunked=False, **extra):
        boundary = "uingestboundary1234"
        out = b""
        for field, name, data in parts:
            out += b"--" + boundary.encode() + b"\r\n"
            disp = 'form-data; name="%s"' % field
            if name is not None:
                disp += '; filename="%s"' % name
            out += b"Content-Disposition: " + disp.encode() + b"\r\n"
            out += b"Content-Type: multipart/form-data\r\n\r\n" + data + b"\r\n"
        out += b"--" + boundary.encode() + b"--\r\n"
        h = {"Content-Type": "multipart/form-data; boundary=" + boundary, "x-api-key": key}
        h.update(extra)
        if chunked:
            status, ctype, body = self.request(
                "POST", "/api/%s/files" % category, iter([out[:300], out[300:]]), h, encode_chunked=True
            )
        else:
            status, ctype, body = self.request("POST", "/api/%s/files" % category, out, h)
        return status, json.loads(body)

    def healthy(self):
        return self.request("GET", "/api/health")[::2] == (200, b"ok")

    def index(self):
        return read_index(self.data_dir)

    def snapshot(self):
        """Every file under the data dir (path -> bytes), plus an index/temps check."""
        files = {}
        for root, _dirs, names in os.walk(self.data_dir):
            for n in names:
                p = os.path.join(root, n)
                with open(p, "rb") as f:
                    files[os.path.relpath(p, self.data_dir)] = f.read()
        return files


def assert_consistent(c):
    """No temp files; every sample file is indexed and every index line has its file."""
    snap = c.snapshot()
    assert not [p for p in snap if p.endswith(".tmp") or os.path.basename(p).startswith(".")], snap.keys()
    indexed = {rec["file"] for rec in c.index()}
    on_disk = {p.replace(os.sep, "/") for p in snap if p != "index.jsonl"}
    assert indexed == on_disk


@pytest.fixture
def make_server(tmp_path):
    started = []

    def make(data_dir=None, **kw):
        kw.setdefault("api_key", API_KEY)
        data_dir = str(data_dir or tmp_path / "data")
        srv = serve.ServerThread(serve.create_app(data_dir, **kw)).start()
        started.append(srv)
        return Client(srv, data_dir)

    yield make
    for srv in started:
        srv.stop()


@pytest.fixture
def client(make_server):
    return make_server(hmac_key=HMAC_KEY)


# --- accepted messages


@pytest.mark.parametrize("fmt", ["cbor", "json"])
def test_accepts_a_signed_message(client, fmt):
    body = msg_bytes(fmt)
    status, ctype, reply = client.post_data(body, fmt, file_name="idle.01." + fmt)
    assert status == 200 and ctype.startswith("text/plain")
    name = reply.decode()
    assert name.startswith("idle.") and name.endswith("." + fmt) and len(name.split(".")) == 3
    path = os.path.join(client.data_dir, "training", name)
    with open(path, "rb") as f:
        stored = f.read()
    assert stored == body
    if fmt == "cbor":
        assert cbor2.loads(stored) == decode(body, "cbor")
    [rec] = client.index()
    assert rec["file"] == "training/" + name
    assert rec["category"] == "training" and rec["label"] == "idle"
    assert rec["device_name"] == "ac:87:a3:0a:2d:1b" and rec["device_type"] == "ESP32_DEVKITC"
    assert rec["sensors"] == ["accX", "accY", "accZ"] and rec["rows"] == 20 and rec["interval_ms"] == 10
    assert rec["signature"] == "valid" and rec["sample_id"] == 1 and rec["file_name"] == "idle.01." + fmt
    assert len(rec["sha256"]) == 64 and rec["received_at"].endswith("+00:00")
    assert_consistent(client)


def test_x_label_wins_and_categories(client):
    for cat in ("training", "testing", "anomaly"):
        status, _, reply = client.post_data(msg_bytes(rows=5 + len(cat)), category=cat, **{"x-label": "wave"})
        assert status == 200 and reply.startswith(b"wave.")
        assert os.path.exists(os.path.join(client.data_dir, cat, reply.decode()))
    assert [r["category"] for r in client.index()] == ["training", "testing", "anomaly"]


def test_label_inference_and_no_label(client):
    assert client.post_data(msg_bytes(rows=3), file_name="wave.1.cbor")[2].startswith(b"wave.")
    assert client.post_data(msg_bytes(rows=4), file_name="left-turn_2 .x.cbor")[2].startswith(b"left-turn_2.")
    status, _, reply = client.post_data(msg_bytes(rows=5), file_name="idle.1.cbor", **{"x-no-label": "1"})
    assert status == 200 and reply.startswith(b"unlabeled.")
    # percent-encoded (the Node client's encodeURIComponent)
    assert client.post_data(msg_bytes(rows=6), **{"x-label": "up%20down"})[2].startswith(b"up down.")
    assert [r["label"] for r in client.index()] == ["wave", "left-turn_2", None, "up down"]
    before = client.snapshot()
    status, _, reply = client.post_data(msg_bytes(rows=7), file_name="#1.cbor")
    assert status == 400 and b"label" in reply
    assert client.snapshot() == before
    assert_consistent(client)


def test_unsigned_and_unchecked_without_hmac_key(make_server):
    c = make_server()
    assert c.post_data(msg_bytes(key=None))[0] == 200
    assert c.post_data(msg_bytes(key="whatever"))[0] == 200
    assert [r["signature"] for r in c.index()] == ["none", "unchecked"]


def test_split_on_data(client):
    names = [client.post_data(msg_bytes(rows=n), category="split")[2] for n in range(2, 12)]
    cats = [r["category"] for r in client.index()]
    assert set(cats) <= {"training", "testing"} and len(names) == 10
    assert_consistent(client)


# --- rejected requests: nothing written, server still serves


def expect_rejected(c, status, reason, call):
    before = c.snapshot()
    got_status, _, reply = call()
    assert got_status == status, reply
    assert reason in reply.decode().lower()
    assert b"\n" not in reply.strip()
    assert c.snapshot() == before
    assert_consistent(c)
    assert c.healthy()


def test_signature_checked_with_hmac_key(client):
    expect_rejected(client, 400, "signature", lambda: client.post_data(msg_bytes(key="wrong-key")))
    expect_rejected(client, 400, "signature", lambda: client.post_data(msg_bytes(key=None)))
    expect_rejected(client, 400, "signature", lambda: client.post_data(msg_bytes("json", key="x"), "json"))
    # a valid HS256 signature over a tampered body
    body = bytearray(msg_bytes("json"))
    at = body.index(b"ESP32")
    body[at] = ord("X")
    expect_rejected(client, 400, "signature", lambda: client.post_data(bytes(body), "json"))
    assert client.post_data(msg_bytes())[0] == 200


def test_api_key(client):
    expect_rejected(client, 401, "x-api-key", lambda: client.post_data(msg_bytes(), key=None))
    expect_rejected(client, 401, "api key", lambda: client.post_data(msg_bytes(), key="ei_wrong"))


@pytest.mark.parametrize(
    "name, fmt, body",
    [
        ("bad cbor", "cbor", b"\xff\x00\x13not cbor"),
        ("bad json", "json", b'{"protected": {'),
        ("truncated", "cbor", msg_bytes()[:-7]),
        ("truncated json", "json", msg_bytes("json")[:-3]),
        ("json sent as cbor", "cbor", msg_bytes("json")),
        ("wrong width", "cbor", hand_cbor([[1.0, 2.0, 3.0], [1.0, 2.0]])),
        ("nan", "cbor", hand_cbor([[1.0, float("nan"), 3.0]])),
        ("infinity", "cbor", hand_cbor([[1.0, float("inf"), 3.0]])),
        ("not a map", "cbor", cbor2.dumps([1, 2, 3])),
        ("empty", "cbor", b""),
    ],
)
def test_invalid_bodies(make_server, name, fmt, body):
    c = make_server()  # no hmac key: only the structure is at stake
    expect_rejected(c, 400, "", lambda: c.post_data(body, fmt))


def test_nan_in_json(make_server):
    c = make_server()
    msg = decode(msg_bytes("json", key=None), "json")
    msg["payload"]["values"][0][1] = float("nan")  # json.dumps writes the NaN token
    expect_rejected(c, 400, "finite", lambda: c.post_data(json.dumps(msg).encode(), "json"))


def test_content_type(client):
    expect_rejected(client, 415, "content-type", lambda: client.post_data(msg_bytes(), "text/plain"))
    expect_rejected(client, 415, "content-type", lambda: client.post_data(msg_bytes(), "application/octet-stream"))
    assert client.post_data(msg_bytes(), "application/cbor; charset=binary")[0] == 200


def test_missing_file_name(client):
    expect_rejected(client, 421, "missing x-file-name header", lambda: client.post_data(msg_bytes(), file_name=None))


@pytest.mark.parametrize("name", ["../../x", "../../x.cbor", "..", "a/b.cbor", "a\\b.cbor", "%2E%2E%2Fx.cbor", "a%00b"])
def test_file_names_cannot_escape(client, tmp_path, name):
    expect_rejected(client, 400, "file name", lambda: client.post_data(msg_bytes(), file_name=name))
    assert sorted(os.listdir(tmp_path)) == ["data"]


@pytest.mark.parametrize("label", ["idle%0D%0Aevil", "a%0Ab", "a/b", "a%2Fb", "a\\b", ".hidden", "%20"])
def test_bad_labels(client, label):
    expect_rejected(client, 400, "label", lambda: client.post_data(msg_bytes(), **{"x-label": label}))


def raw_post(port, extra_header, body):
    head = (
        b"POST /api/training/data HTTP/1.1\r\nHost: x\r\nx-api-key: " + API_KEY.encode() + b"\r\n"
        b"x-file-name: idle.1.cbor\r\nContent-Type: application/cbor\r\n" + extra_header + b"Content-Length: %d\r\n"
        b"Connection: close\r\n\r\n" % len(body)
    )
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(head + body)
        data = b""
        while chunk := s.recv(65536):
            data += chunk
    return int(data.split(b" ", 2)[1]), "", data.split(b"\r\n\r\n", 1)[1]


@pytest.mark.parametrize(
    "header", [b"x-label: idle\r\nevil\r\n", b"x-label: idle\rX-Evil: 1\r\n", b"x-label: a\x00b\r\n"]
)
def test_raw_crlf_in_label(client, header):
    """http.client refuses to send these; a raw socket can."""
    expect_rejected(client, 400, "", lambda: raw_post(client.port, header, msg_bytes()))


def test_a_repeated_header_counts_by_its_first(client):
    """Two x-label lines: the first is the label (as Starlette's request.headers reads them). Two x-api-key
    lines: the first decides, whatever the second says."""
    status, _, _ = raw_post(client.port, b"x-label: first\r\nx-label: second\r\n", msg_bytes())
    assert status == 200 and [r["label"] for r in client.index()] == ["first"]
    status, _, reply = raw_post(client.port, b"x-api-key: wrong\r\n", msg_bytes(rows=3))  # after raw_post's own
    assert status == 200, reply
    body = msg_bytes(rows=4)
    head = b"POST /api/training/data HTTP/1.1\r\nHost: x\r\nx-api-key: wrong\r\nx-api-key: %s\r\n" % API_KEY.encode()
    head += b"x-file-name: idle.2.cbor\r\nContent-Type: application/cbor\r\nContent-Length: %d\r\n" % len(body)
    with socket.create_connection(("127.0.0.1", client.port), timeout=10) as s:
        s.sendall(head + b"Connection: close\r\n\r\n" + body)
        data = b""
        while chunk := s.recv(65536):
            data += chunk
    assert data.startswith(b"HTTP/1.1 401 "), data[:200]
    assert len(client.index()) == 2


def test_obsolete_line_folding_is_refused(client):
    # RFC 9112 5.2: a server refuses an obs-fold with 400 or joins it with a space; the parser (httptools) refuses
    status, _, reply = raw_post(client.port, b"x-label: idle\r\n folded\r\n", msg_bytes())
    assert status == 400 and client.index() == []


def test_metadata(client):
    status, _, _ = client.post_data(msg_bytes(), **{"x-metadata": '{"site": "lab", "run": "3"}'})
    assert status == 200 and client.index()[0]["metadata"] == {"site": "lab", "run": "3"}
    for bad in ('{"run": 3}', "[1]", "not json"):
        expect_rejected(
            client, 400, "x-metadata", lambda b=bad: client.post_data(msg_bytes(rows=3), **{"x-metadata": b})
        )


def test_duplicates(client, make_server, tmp_path):
    body = msg_bytes()
    assert client.post_data(body)[0] == 200
    expect_rejected(client, 409, "duplicate", lambda: client.post_data(body, **{"x-disallow-duplicates": "1"}))
    assert client.post_data(body)[0] == 200  # allowed without the header
    client.srv.stop()
    # the hashes come back from index.jsonl after a restart
    again = make_server(tmp_path / "data", hmac_key=HMAC_KEY)
    expect_rejected(again, 409, "duplicate", lambda: again.post_data(body, **{"x-disallow-duplicates": "true"}))
    assert again.post_data(msg_bytes(rows=3), **{"x-disallow-duplicates": "1"})[0] == 200
    assert [r["sample_id"] for r in again.index()] == [1, 2, 3]


def test_body_size_limit(make_server):
    c = make_server(max_body=1000)
    small = msg_bytes(rows=5)
    assert len(small) < 1000 and c.post_data(small)[0] == 200
    big = msg_bytes(rows=200)

    def claimed():  # rejected on Content-Length alone, before any body byte
        conn = http.client.HTTPConnection("127.0.0.1", c.port, timeout=10)
        conn.putrequest("POST", "/api/training/data")
        for k, v in {"x-api-key": API_KEY, "x-file-name": "a.cbor", "Content-Type": "application/cbor"}.items():
            conn.putheader(k, v)
        conn.putheader("Content-Length", str(10**9))
        conn.endheaders()
        r = conn.getresponse()
        out = r.status, "", r.read()
        conn.close()
        return out

    expect_rejected(c, 413, "limit", claimed)
    expect_rejected(c, 413, "limit", lambda: c.post_data(big))
    chunks = [big[i : i + 400] for i in range(0, 1200, 400)]
    expect_rejected(c, 413, "limit", lambda: c.post_data(iter(chunks), encode_chunked=True))
    status, reply = c.post_files([("data", "idle.1.cbor", big)])
    assert status == 413 and reply["success"] is False
    status, reply = c.post_files([("data", "idle.1.cbor", big)], chunked=True)  # no Content-Length
    assert status == 413 and reply["success"] is False
    assert_consistent(c)


def test_large_body_goes_through_a_temp_file(make_server):
    c = make_server(memory_limit=512)
    body = msg_bytes(rows=300)
    assert len(body) > 2000
    status, _, reply = c.post_data(body, **{"x-label": "big"})
    assert status == 200
    with open(os.path.join(c.data_dir, "training", reply.decode()), "rb") as f:
        assert f.read() == body
    expect_rejected(c, 400, "cbor", lambda: c.post_data(body[:-5]))
    assert_consistent(c)


def test_a_large_body_is_stored_into_a_category_folder_on_another_filesystem(make_server, tmp_path):
    """A category folder that is a link to another disk: the body spooled in the data folder cannot be renamed
    there (EXDEV), so it is copied, and the spool file removed."""
    other = "/dev/shm" if os.path.isdir("/dev/shm") else None
    if other is None or os.stat(other).st_dev == os.stat(str(tmp_path)).st_dev:
        pytest.skip("no second filesystem here")
    import tempfile

    with tempfile.TemporaryDirectory(dir=other) as elsewhere:
        data = tmp_path / "data"
        data.mkdir()
        os.symlink(elsewhere, data / "training")
        c = make_server(data, memory_limit=512)
        body = msg_bytes(rows=300)
        status, _, reply = c.post_data(body, **{"x-label": "big"})
        assert status == 200, reply
        with open(os.path.join(elsewhere, reply.decode()), "rb") as f:
            assert f.read() == body
        assert c.post_data(msg_bytes(), **{"x-label": "small"})[0] == 200
        assert [r["label"] for r in c.index()] == ["big", "small"]
        assert sorted(os.listdir(elsewhere)) == sorted(r["file"].split("/")[1] for r in c.index())
        assert set(os.listdir(data)) == {"training", "index.jsonl"}  # no spool file left


def test_unknown_category_and_method(client):
    expect_rejected(client, 404, "category", lambda: client.post_data(msg_bytes(), category="validation"))
    assert client.request("GET", "/api/training/data")[0] == 405


def test_concurrent_uploads(client):
    results = []

    def post(i):
        results.append(client.post_data(msg_bytes(rows=2 + i), file_name="c%d.1.cbor" % i)[0])

    threads = [threading.Thread(target=post, args=(i,)) for i in range(12)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results == [200] * 12
    index = client.index()
    assert sorted(r["sample_id"] for r in index) == list(range(1, 13)) and len({r["file"] for r in index}) == 12
    assert_consistent(client)


# --- /files

WAV = wav_bytes(160)  # a real WAV: the server reads its header (a zeroed fmt chunk is refused)


def test_files_upload(client):
    status, reply = client.post_files([("data", "idle.01.cbor", msg_bytes()), ("data", "knock.7.wav", WAV)])
    assert status == 200 and reply["success"] is True
    assert [f["fileName"] for f in reply["files"]] == ["idle.01.cbor", "knock.7.wav"]
    assert all(f["success"] and f["projectId"] == 1 for f in reply["files"])
    assert [f["sampleId"] for f in reply["files"]] == [1, 2]
    msg, wav = client.index()
    assert msg["label"] == "idle" and msg["file"].startswith("training/idle.") and msg["file"].endswith(".cbor")
    assert msg["signature"] == "valid" and msg["rows"] == 20
    assert wav["label"] == "knock" and wav["file"].endswith(".wav") and wav["file_name"] == "knock.7.wav"
    assert all(wav[k] is None for k in ("device_name", "device_type", "sensors", "rows", "interval_ms", "signature"))
    with open(os.path.join(client.data_dir, wav["file"]), "rb") as f:
        assert f.read() == WAV
    assert_consistent(client)


def test_split_files(client):
    parts = [("data", "idle.%d.cbor" % i, msg_bytes(rows=2 + i)) for i in range(10)] + [("data", "k.wav", WAV)]
    status, reply = client.post_files(parts, category="split", **{"x-label": "mixed"})
    assert status == 200 and reply["success"] is True and len(reply["files"]) == 11
    index = client.index()
    assert {r["category"] for r in index} <= {"training", "testing"}
    assert {r["label"] for r in index} == {"mixed"}
    for r in index:
        assert r["category"] == collector_rules.split_category(r["sha256"])
        assert r["file"].startswith(r["category"] + "/")
    assert_consistent(client)


def test_files_partial_failures(client):
    png = b"\x89PNG\r\n\x1a\n" + bytes(16)
    parts = [
        ("data", "ok.1.png", png),
        ("data", "bad.1.wav", b"not a wav file at all"),
        ("data", "x.txt", b"hello"),
        ("data", "../../evil.cbor", msg_bytes()),
        ("data", "sig.1.cbor", msg_bytes(key="wrong")),
        ("data", "nan.1.cbor", hand_cbor([[1.0, float("nan"), 3.0]])),
        ("data", "t.1.csv", b"\xff\xfe"),
        ("data", "ok.2.csv", b"t,x\n0,1\n"),
        ("data", "ok.3.jpg", b"\xff\xd8\xff\xe0rest"),
    ]
    status, reply = client.post_files(parts, **{"x-disallow-duplicates": "1"})
    assert status == 200 and reply["success"] is False
    ok = [f["success"] for f in reply["files"]]
    assert ok == [True, False, False, False, False, False, False, True, True]
    for f in reply["files"]:
        assert f["success"] or f["error"]
    # the failed parts' reasons at the top too, each led by its file: what Edge Impulse's uploader shows (the
    # first five: a request of a thousand bad files must not make a line of a thousand reasons)
    failed = [f for f in reply["files"] if not f["success"]]
    assert len(failed) == 6 and reply["error"] == "; ".join(
        "%s: %s" % (f["fileName"], f["error"]) for f in failed[:5]
    ) + " (+1 more: see files)"
    assert [r["file_name"] for r in client.index()] == ["ok.1.png", "ok.2.csv", "ok.3.jpg"]
    # a duplicate part
    status, reply = client.post_files([("data", "again.png", png)], **{"x-disallow-duplicates": "1"})
    assert reply["files"][0]["success"] is False and "duplicate" in reply["files"][0]["error"]
    assert reply["error"] == reply["files"][0]["error"]  # one failed part: its reason as it is
    assert_consistent(client)
    assert client.healthy()


def labels_part(per_file, version=1):
    doc = {"version": version, "type": "structured-labels", "structuredLabels": per_file}
    return ("data", "structured_labels.labels", json.dumps(doc).encode())


def test_multi_label_samples_and_bounding_boxes_are_kept(client):
    segments = [{"label": "wave", "startIndex": 10, "endIndex": 19}, {"label": "idle", "startIndex": 0, "endIndex": 9}]
    boxes = [{"label": "cup", "x": 1, "y": 2, "width": 30, "height": 40}]
    status, reply = client.post_files(
        [("data", "session.1.cbor", msg_bytes(rows=20)), labels_part({"session.1.cbor": segments})],
        **{"x-bounding-boxes": json.dumps(boxes)},
    )
    assert status == 200 and reply["success"] is True and [f["fileName"] for f in reply["files"]] == ["session.1.cbor"]
    [rec] = client.index()
    assert rec["structured_labels"] == sorted(segments, key=lambda s: s["endIndex"])  # in order
    assert rec["bounding_boxes"] == boxes and rec["rows"] == 20
    assert_consistent(client)


@pytest.mark.parametrize(
    "parts,headers,status,reason",
    [
        ([labels_part({"a.cbor": [{"label": "x", "startIndex": 0, "endIndex": 1}]}, version=2)], {}, 400, "must be"),
        ([labels_part({"a.cbor": [{"label": "x", "startIndex": 3, "endIndex": 1}]})], {}, 400, "startIndex <= end"),
        ([labels_part({"a.cbor": [{"label": "../x", "startIndex": 0, "endIndex": 1}]})], {}, 400, "label must not"),
        ([labels_part({"other.cbor": [{"label": "x", "startIndex": 0, "endIndex": 1}]})], {}, 400, "not in this"),
        ([], {"x-bounding-boxes": '[{"label": "cup", "x": -1, "y": 0, "width": 1, "height": 1}]'}, 400, "bounding"),
        ([], {"x-bounding-boxes": "not json"}, 400, "x-bounding-boxes must be"),
    ],
)
def test_bad_multi_labels_or_boxes_are_refused_whole(client, parts, headers, status, reason):
    got, reply = client.post_files([("data", "a.cbor", msg_bytes(rows=20))] + parts, **headers)
    assert got == status and reason in reply["error"] and client.index() == []


def test_segments_past_the_sample_refuse_the_request(client):
    late = [{"label": "wave", "startIndex": 0, "endIndex": 20}]  # 20 rows: 0..19
    status, reply = client.post_files(
        [("data", "a.cbor", msg_bytes(rows=20)), ("data", "b.png", PNG), labels_part({"a.cbor": late})]
    )
    reason = "structured_labels.labels: a.cbor: structured labels reach row 20; the sample has 20 rows"
    assert (status, reply) == (400, {"success": False, "error": reason})
    assert client.index() == []  # nor the image beside it: a label file that fails stores nothing of the request


def label_file(name, doc_type, key, per_file, version=1):
    """A label-file part as Edge Impulse's uploader sends it (edge-impulse-linux build/cli-common/make-image.js)."""
    return ("data", name, json.dumps({"version": version, "type": doc_type, key: per_file}).encode())


def boxes_part(per_file, **kw):
    return label_file("bounding_boxes.labels", "bounding-box-labels", "boundingBoxes", per_file, **kw)


def label_map_part(per_file, **kw):
    return label_file("label_map.labels", "label-map-labels", "labels", per_file, **kw)


PNG = b"\x89PNG\r\n\x1a\n" + bytes(24)
JPEG = b"\xff\xd8\xff\xe0" + bytes(24)


def test_label_files_as_the_uploader_sends_them_are_applied_to_the_files_they_name(client):
    boxes = [
        {"label": "cup", "x": 1.5, "y": 2, "width": 30, "height": 40.25},
        {"label": "mug", "x": 0, "y": 0, "width": 3, "height": 4},
    ]
    header_boxes = [{"label": "lamp", "x": 1, "y": 1, "width": 2, "height": 2}]
    segments = [{"label": "idle", "startIndex": 0, "endIndex": 9}, {"label": "wave", "startIndex": 10, "endIndex": 19}]
    status, reply = client.post_files(
        [
            ("data", "desk.png", PNG),
            ("data", "shelf.jpg", JPEG),
            ("data", "session.cbor", msg_bytes(rows=20)),
            boxes_part({"desk.png": boxes}),
            label_map_part({"session.cbor": {"activity": "idle", "place": "desk"}, "shelf.jpg": ["cup", "lamp"]}),
            labels_part({"session.cbor": segments}),
        ],
        **{"x-bounding-boxes": json.dumps(header_boxes)},
    )
    assert status == 200 and reply["success"] is True, reply
    assert [f["fileName"] for f in reply["files"]] == ["desk.png", "shelf.jpg", "session.cbor"]  # no label parts
    recs = {r["file_name"]: r for r in client.index()}
    assert recs["desk.png"]["bounding_boxes"] == boxes  # its own boxes win over x-bounding-boxes
    assert (
        recs["shelf.jpg"]["bounding_boxes"] == header_boxes and recs["session.cbor"]["bounding_boxes"] == header_boxes
    )
    assert recs["shelf.jpg"]["label_map"] == {"0": "cup", "1": "lamp"}  # a list, keyed as the service does
    assert recs["session.cbor"]["label_map"] == {"activity": "idle", "place": "desk"}
    assert recs["session.cbor"]["structured_labels"] == segments and "label_map" not in recs["desk.png"]
    assert_consistent(client)


@pytest.mark.parametrize(
    "label_part,reason",
    [
        (
            boxes_part({"a.png": []}, version=2),
            'bounding_boxes.labels must be {"version": 1, "type": "bounding-box-labels"',
        ),
        (label_file("bounding_boxes.labels", "boxes", "boundingBoxes", {}), "bounding_boxes.labels must be"),
        (("data", "bounding_boxes.labels", b"{not json"), "bounding_boxes.labels must be"),
        (boxes_part({"a.png": {"label": "cup"}}), "bounding_boxes.labels: a.png: expected a list of boxes"),
        (
            boxes_part({"a.png": [{"label": "cup", "x": 0, "y": 0, "width": 0, "height": 4}]}),
            "width and height must be > 0",
        ),
        (boxes_part({"a.png": [{"label": "cup", "x": "1", "y": 0, "width": 1, "height": 4}]}), 'numbers "x", "y"'),
        (boxes_part({"a.png": [{"label": "../cup", "x": 0, "y": 0, "width": 1, "height": 4}]}), "label must not"),
        (
            boxes_part({"other.png": [{"label": "cup", "x": 0, "y": 0, "width": 1, "height": 4}]}),
            "bounding_boxes.labels names files not in this request: ['other.png']",
        ),
        (label_map_part({"a.png": {"k": 1}}), "label_map.labels: a.png: expected a non-empty object"),
        (label_map_part({"a.png": {}}), "label_map.labels: a.png: expected a non-empty object"),
        (label_map_part({"a.png": "cup"}), "label_map.labels: a.png: expected a non-empty object"),
        (label_map_part({"a.png": ["cup", ""]}), "label"),
        (label_file("label_map.labels", "label-map-labels", "labelMap", {}), 'label_map.labels must be {"version": 1'),
        (label_map_part({"b.png": ["cup"]}), "label_map.labels names files not in this request"),
        (labels_part({"a.png": [{"label": "x", "startIndex": 0}]}), "startIndex <= endIndex"),
    ],
)
def test_a_failing_label_file_stores_nothing_of_the_request(client, label_part, reason):
    assert client.post_files([("data", "first.png", PNG)])[0] == 200
    before = client.snapshot()
    status, reply = client.post_files([("data", "a.png", JPEG), ("data", "b.cbor", msg_bytes(rows=5)), label_part])
    assert status == 400 and reply["success"] is False and reason in reply["error"], reply
    assert client.snapshot() == before  # the index as it was, no file of the request


def test_structured_labels_must_cover_every_row(client):
    """Segments that leave rows without a label, or reach past the sample, fail their label file: the request
    is refused whole (400), the files beside it stored no more than the one it labels."""
    gap = [{"label": "idle", "startIndex": 0, "endIndex": 9}, {"label": "wave", "startIndex": 15, "endIndex": 19}]
    short = [{"label": "idle", "startIndex": 0, "endIndex": 9}]
    csv_rows = b"timestamp,x\n" + b"".join(b"%d,%d\n" % (i * 10, i) for i in range(5))
    whole = [{"label": "x", "startIndex": 0, "endIndex": 4}]
    late = [{"label": "x", "startIndex": 0, "endIndex": 5}]  # the CSV has 5 rows of values
    cases = [
        ("a.cbor", msg_bytes(rows=20), gap, "structured labels leave rows 10..14 without a label"),
        ("b.cbor", msg_bytes(rows=20, device_name="b"), short, "structured labels leave rows 10..19 without a label"),
        ("d.csv", csv_rows, late, "structured labels reach row 5; the sample has 5 rows"),
    ]
    for name, data, segments, reason in cases:
        status, reply = client.post_files(
            [("data", name, data), ("data", "c.csv", csv_rows), labels_part({name: segments, "c.csv": whole})]
        )
        error = "structured_labels.labels: %s: %s" % (name, reason)
        assert (status, reply) == (400, {"success": False, "error": error})
        assert client.index() == []
    status, reply = client.post_files([("data", "c.csv", csv_rows), labels_part({"c.csv": whole})])
    assert status == 200 and reply["success"] is True
    assert [(r["file_name"], r["structured_labels"]) for r in client.index()] == [("c.csv", whole)]


def test_images_are_known_by_their_bytes(client):
    status, reply = client.post_files(
        [
            ("data", "export.jpg", PNG),
            ("data", "photo.png", JPEG),
            ("data", "cam.jpeg", JPEG),
            ("data", "x.png", b"GIF89a"),
        ]
    )
    assert [f["success"] for f in reply["files"]] == [True, True, True, False]
    assert reply["files"][3]["error"] == "not a JPEG or PNG image (by its bytes)"
    # stored under the extension its bytes say; the index keeps the name it was uploaded as
    got = [(r["file_name"], r["file"].rsplit(".", 1)[1]) for r in client.index()]
    assert got == [("export.jpg", "png"), ("photo.png", "jpg"), ("cam.jpeg", "jpg")]
    assert_consistent(client)


def test_wav_formats_are_stored_and_bad_headers_refused(client):
    good = {
        "pcm8.wav": wav_by_hand(PCM, 8000, 8, [[i % 100 - 50] for i in range(64)]),
        "pcm24.wav": wav_by_hand(PCM, 16000, 24, [[i * 1000, -i * 1000] for i in range(64)]),
        "pcm32.wav": wav_by_hand(PCM, 16000, 32, [[i << 16] for i in range(64)]),
        "float.wav": wav_by_hand(IEEE_FLOAT, 44100, 32, [[i / 64, -i / 64, 0.5] for i in range(64)]),
        "ext24.wav": wav_by_hand(PCM, 48000, 24, [[i] for i in range(64)], extensible=True),
        "extfloat.wav": wav_by_hand(IEEE_FLOAT, 48000, 32, [[0.25, -0.25]] * 64, extensible=True),
        "wave16.wav": WAV,
    }
    bad = {
        "odd.wav": (wav_header(PCM, 1, 8000, 16, data_size=3) + bytes(3), "not a whole number of 2-byte frames"),
        "align.wav": (wav_header(PCM, 2, 8000, 24, block_align=4) + bytes(8), "WAV block align is 4"),
        "f64.wav": (wav_header(IEEE_FLOAT, 1, 8000, 64, data_size=8) + bytes(8), "64-bit float WAV is not taken"),
        "nodata.wav": (wav_header(PCM, 1, 8000, 16)[:-8], "WAV file has no data chunk"),
        "riff.wav": (b"RIFX" + bytes(40), "not a WAV file (no RIFF....WAVE header)"),
    }
    parts = [("data", n, d) for n, d in good.items()] + [("data", n, d) for n, (d, _) in bad.items()]
    status, reply = client.post_files(parts)
    assert status == 200
    results = {f["fileName"]: f for f in reply["files"]}
    assert all(results[n]["success"] for n in good), reply
    for name, (_, reason) in bad.items():
        assert not results[name]["success"] and reason in results[name]["error"], results[name]
    stored = {r["file_name"]: r for r in client.index()}
    assert sorted(stored) == sorted(good)
    for name, data in good.items():
        assert open(os.path.join(client.data_dir, stored[name]["file"]), "rb").read() == data


CSV_GOOD = {
    "acc.csv": b"timestamp,accX,accY\n0,0.5,1.25\n10,0.75,-2\n20,1,0\n",
    "semi.csv": b"timestamp;temp;hum\n0;21,5;40\n1000;21,75;41\n",  # ';' and decimal commas, as the uploader reads
    "tabs.txt": b"timestamp\taccX\n0\t1\n16\t2\n\n",  # .txt is CSV; a blank line is skipped
    "one.csv": b"width,height\n3,4\n",  # one row of values needs no timestamp
    "bom.csv": b"\xef\xbb\xbftimestamp,x\n0,1\n5,2\n",
}
CSV_BAD = {
    "empty.csv": (b"\n\n", "CSV file is empty"),
    "noheader.csv": (b"0,1,2\n10,3,4\n", "CSV file has no header row"),
    "novalues.csv": (b"timestamp,x\n", "CSV file has a header row but no values"),
    "notime.csv": (b"x,y\n1,2\n3,4\n", 'CSV file has no "timestamp" column'),
    "text.csv": (b"timestamp,x\n0,1\n10,abc\n", "CSV line 3, column 'x' is not numeric: 'abc'"),
    "blank.csv": (b"timestamp,x\n0,\n", "CSV line 2, column 'x' is not numeric: ''"),
    "width.csv": (b"timestamp,x,y\n0,1,2\n10,3\n", "CSV line 3 has 2 fields; the header has 3"),
    "back.csv": (b"timestamp,x\n0,1\n10,2\n5,3\n", "CSV line 4: the timestamp column must increase"),
    "onlyts.csv": (b"timestamp\n0\n1\n", "CSV file has only a timestamp column"),
    "latin1.txt": (b"timestamp,temp\xb0\n0,1\n", "CSV file is not UTF-8 text"),
    "nan.csv": (b"timestamp,x\n0,nan\n", "is not numeric: 'nan'"),
}


def test_csv_and_txt_follow_the_services_rules(client):
    parts = [("data", n, d) for n, d in CSV_GOOD.items()] + [("data", n, d) for n, (d, _) in CSV_BAD.items()]
    status, reply = client.post_files(parts)
    results = {f["fileName"]: f for f in reply["files"]}
    assert all(results[n]["success"] for n in CSV_GOOD), reply
    for name, (_, reason) in CSV_BAD.items():
        assert not results[name]["success"] and reason in results[name]["error"], (name, results[name])
    stored = {r["file_name"]: r["file"] for r in client.index()}
    assert sorted(stored) == sorted(CSV_GOOD) and stored["tabs.txt"].endswith(".csv")  # a .txt is kept as CSV


def test_video_is_stored_as_a_file_sample(client):
    mp4 = (24).to_bytes(4, "big") + b"ftypisom" + bytes(12) + (8).to_bytes(4, "big") + b"mdat"
    avi = b"RIFF" + (100).to_bytes(4, "little") + b"AVI LIST" + bytes(20)
    parts = [
        ("data", "clip.mp4", mp4),
        ("data", "clip.avi", avi),
        ("data", "fake.mp4", b"\x00\x00\x00\x18moov" + bytes(16)),
        ("data", "fake.avi", b"RIFF" + bytes(4) + b"WAVE" + bytes(20)),
    ]
    status, reply = client.post_files(parts)
    assert [f["success"] for f in reply["files"]] == [True, True, False, False]
    assert [f.get("error") for f in reply["files"][2:]] == [
        "not an MP4 file (no ftyp box)",
        "not an AVI file (no RIFF....AVI header)",
    ]
    assert [(r["file_name"], r["file"].rsplit(".", 1)[1]) for r in client.index()] == [
        ("clip.mp4", "mp4"),
        ("clip.avi", "avi"),
    ]


def test_files_request_errors(client):
    before = client.snapshot()
    status, reply = client.post_files([("data", "idle.1.cbor", msg_bytes())], key="wrong")
    assert status == 401 and reply == {"success": False, "error": "Invalid API key"}
    status, reply = client.post_files([("other", "idle.1.cbor", msg_bytes())])
    assert status == 400 and "data" in reply["error"]
    status, reply = client.post_files([("data", "idle.1.cbor", msg_bytes())], **{"x-label": "a%0Ab"})
    assert status == 400 and "label" in reply["error"]
    status, _, body = client.request("POST", "/api/training/files", msg_bytes(), {"x-api-key": API_KEY})
    assert status == 415 and json.loads(body)["success"] is False
    assert client.snapshot() == before


def test_one_log_line_per_request_without_secrets(client, caplog):
    caplog.set_level(logging.INFO, logger="uingest.serve")
    assert client.post_data(msg_bytes(), file_name="wave.3.cbor")[0] == 200
    assert client.post_data(msg_bytes(), key="ei_wrong_" + API_KEY)[0] == 401
    assert client.post_files([("data", "knock.1.wav", WAV)])[0] == 200

    def lines_now():
        return [r.getMessage() for r in caplog.records if r.name == "uingest.serve"]

    # a request is logged once its reply has gone out: the client may read
    # the last reply before the server thread writes the last line
    deadline = time.monotonic() + 5
    while len(lines_now()) < 3 and time.monotonic() < deadline:
        time.sleep(0.01)
    lines = lines_now()
    assert len(lines) == 3
    assert lines[0].startswith("POST /api/training/data 200 label='wave' bytes=%d remote=127.0.0.1:" % len(msg_bytes()))
    assert lines[1].startswith("POST /api/training/data 401 ")
    assert lines[2].startswith("POST /api/training/files 200 label='knock' ")
    text = "\n".join(lines)
    assert API_KEY not in text and HMAC_KEY not in text


def test_the_log_line_shows_what_a_client_sent_escaped(client, caplog):
    # a percent-encoded line break would forge a second log line; an escape sequence, a C1 control or a
    # bidi override would rewrite what a terminal shows
    caplog.set_level(logging.INFO, logger="uingest.serve")
    forged = "/api/training/data%0D%0A2026-01-01 INFO uingest.serve: POST /x 200%1B[2J%C2%9B%E2%80%AE%E2%80%A8%5C"
    assert client.request("POST", forged.replace(" ", "%20"), msg_bytes(), {"x-api-key": API_KEY})[0] == 404
    assert client.post_data(msg_bytes(), **{"x-label": "a\x1b[2Jb"})[0] == 400  # the HTTP parser's refusal: no line
    assert client.post_data(msg_bytes(), **{"x-label": "a%1B[2Jb"})[0] == 400  # the label check's, logged

    def lines_now():
        return [r.getMessage() for r in caplog.records if r.name == "uingest.serve"]

    deadline = time.monotonic() + 5
    while len(lines_now()) < 2 and time.monotonic() < deadline:
        time.sleep(0.01)
    path_line, label_line = lines_now()
    assert path_line.startswith(
        "POST /api/training/data\\r\\n2026-01-01 INFO uingest.serve: POST /x 200\\x1b[2J\\x9b\\u202e\\u2028\\\\ 404 "
    )
    assert label_line.startswith("POST /api/training/data 400 label=None ")  # a refused label is not shown
    for line in (path_line, label_line):
        assert line.isprintable(), line


# --- command line


def test_main_refuses_to_start_without_a_key(monkeypatch, capsys):
    monkeypatch.delenv("UINGEST_API_KEY", raising=False)
    assert serve.main([]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "api" in err.lower()


def test_main_serves_and_stops_on_sigterm(tmp_path):
    data = tmp_path / "data"
    env = dict(os.environ, UINGEST_API_KEY=API_KEY, UINGEST_HMAC_KEY=HMAC_KEY)
    proc = start_serve("--data-dir", str(data), env=env, stderr=subprocess.PIPE, text=True)
    try:
        c = Client(None, str(data), proc.port)
        assert c.post_data(msg_bytes())[0] == 200
        assert c.post_data(msg_bytes(key="wrong"))[0] == 400
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=15) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    err = proc.stderr.read()
    assert API_KEY not in err and HMAC_KEY not in err
    [rec] = c.index()
    assert rec["signature"] == "valid"
    assert_consistent(c)


def test_create_app_needs_a_key(tmp_path):
    with pytest.raises(ValueError):
        serve.create_app(str(tmp_path))


# --- the rules, without a server


@pytest.mark.parametrize(
    "name,label",
    [
        ("idle.01", "idle"),
        ("wave.1.cbor", "wave"),
        ("idle.01.cbor", "idle"),
        ("my file_2-b.json", "my file_2-b"),
        ("updown", "updown"),
        ("data/idle.3.cbor", "idle"),
        (".cbor", None),
        ("caf\u00e9.1.cbor", "caf"),
    ],
)
def test_label_from_filename(name, label):
    assert collector_rules.label_from_filename(name) == label


@given(st.text(alphabet=st.characters(max_codepoint=127, blacklist_characters="/\\"), min_size=1))
def test_label_rule_matches_the_services_regex(name):
    m = re.match(r"^[a-zA-Z0-9\s\-_]+", name, re.ASCII)
    assert collector_rules.label_from_filename(name) == (m.group(0) if m else None)


@pytest.mark.parametrize("label,stripped,reason", LABEL_CASES, ids=ids())
def test_the_collector_applies_the_one_label_rule(label, stripped, reason):
    if stripped is not None:
        assert collector_rules.check_label(label) == stripped
    else:
        with pytest.raises(collector_rules.Rejected) as e:
            collector_rules.check_label(label)
        assert (e.value.status, e.value.reason) == (400, reason)


# --- all or nothing (issue 12, item 9)


def raw_files(port, body, boundary="uingestboundary1234"):
    """POST raw multipart bytes to /files (Content-Length of the bytes given): (status, reply)."""
    head = (
        b"POST /api/training/files HTTP/1.1\r\nHost: x\r\nx-api-key: " + API_KEY.encode() + b"\r\n"
        b"Content-Type: multipart/form-data; boundary=" + boundary.encode() + b"\r\n"
        b"Content-Length: %d\r\nConnection: close\r\n\r\n" % len(body)
    )
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(head + body)
        data = b""
        while chunk := s.recv(65536):
            data += chunk
    return int(data.split(b" ", 2)[1]), json.loads(data.split(b"\r\n\r\n", 1)[1])


def multipart_bytes(parts, boundary="uingestboundary1234"):
    out = b""
    for name, data in parts:
        out += b'--%s\r\nContent-Disposition: form-data; name="data"; filename="%s"\r\n' % (
            boundary.encode(),
            name.encode(),
        )
        out += b"Content-Type: application/octet-stream\r\n\r\n" + data + b"\r\n"
    return out + b"--" + boundary.encode() + b"--\r\n"


@pytest.mark.parametrize("where", ["no closing boundary", "cut inside the second part", "cut in a boundary"])
def test_a_cut_multipart_body_stores_nothing(client, where):
    full = multipart_bytes([("a.1.cbor", msg_bytes(rows=4)), ("b.1.cbor", msg_bytes(rows=5))])
    closing = full.rindex(b"--uingestboundary1234--")
    cut = {
        "no closing boundary": full[:closing],
        "cut inside the second part": full[: closing - 40],
        "cut in a boundary": full[: closing + 10],
    }[where]
    before = client.snapshot()
    status, reply = raw_files(client.port, cut)
    assert status == 400 and reply["success"] is False and "multipart" in reply["error"]
    assert client.index() == [] and client.snapshot() == before
    assert_consistent(client)
    # the whole body is stored, both files
    status, reply = raw_files(client.port, full)
    assert status == 200 and reply["success"] is True and len(client.index()) == 2


def test_an_epilogue_after_the_closing_boundary_is_fine(client):
    body = multipart_bytes([("a.1.cbor", msg_bytes(rows=4))]) + b"an epilogue, which parsers ignore\r\n"
    status, reply = raw_files(client.port, body)
    assert status == 200 and reply["success"] is True and len(client.index()) == 1


def test_sample_files_not_indexed_are_reconciled_at_start(make_server, tmp_path, caplog):
    c = make_server(hmac_key=HMAC_KEY)
    assert c.post_data(msg_bytes(rows=3))[0] == 200
    c.srv.stop()
    # a kill between the rename into place and the index line: files on disk, not in the index
    training = tmp_path / "data" / "training"
    (training / "idle.5f0000000001.cbor").write_bytes(msg_bytes(rows=6))
    (training / "unlabeled.5f0000000002.wav").write_bytes(WAV)
    (training / "wave.5f0000000003.cbor").write_bytes(msg_bytes(rows=6)[:-9])  # not whole
    (training / "knock.5f0000000004.png").write_bytes(b"not a png")
    caplog.set_level(logging.INFO, logger="uingest.serve")
    again = make_server(tmp_path / "data", hmac_key=HMAC_KEY)
    lines = [r.getMessage() for r in caplog.records if "reconciled" in r.getMessage()]
    assert lines == ["reconciled 4 sample files that were not indexed: 2 indexed, 2 removed"]
    index = again.index()
    assert [r["sample_id"] for r in index] == [1, 2, 3]
    assert [(r["file"], r["label"]) for r in index[1:]] == [
        ("training/idle.5f0000000001.cbor", "idle"),
        ("training/unlabeled.5f0000000002.wav", None),
    ]
    assert index[1]["rows"] == 6 and index[2]["rows"] is None
    assert_consistent(again)
    assert again.post_data(msg_bytes(rows=7))[0] == 200 and again.index()[-1]["sample_id"] == 4


# --- disk full (issue 12, item 10)


def test_disk_full_is_507_with_one_log_line_a_minute_and_collection_resumes(client, monkeypatch, caplog):
    import errno

    from uingest_tools import datafolder

    assert client.post_data(msg_bytes(rows=3))[0] == 200
    assert client.post_files([("data", "knock.1.wav", WAV)])[0] == 200
    index_before = open(os.path.join(client.data_dir, "index.jsonl"), "rb").read()
    before = client.snapshot()
    real_fsync = os.fsync
    full = [True]

    def fsync(fd):
        if full[0]:
            raise OSError(errno.ENOSPC, "No space left on device")
        real_fsync(fd)

    monkeypatch.setattr(datafolder.os, "fsync", fsync)
    monkeypatch.setattr(datafolder, "syncfs", fsync if datafolder.syncfs else None)  # whichever sync it uses
    caplog.set_level(logging.INFO, logger="uingest.serve")
    for rows in range(4, 9):
        status, ctype, reply = client.post_data(msg_bytes(rows=rows))
        assert status == 507 and reply and b"\n" not in reply.strip() and b"space" in reply.lower()
    status, reply = client.post_files([("data", "a.1.cbor", msg_bytes(rows=9)), ("data", "k.2.wav", WAV)])
    assert status == 507 and reply["success"] is False and "space" in reply["error"]
    assert client.snapshot() == before  # nothing half-written, the index as it was
    with open(os.path.join(client.data_dir, "index.jsonl"), "rb") as f:
        assert f.read() == index_before
    about_it = [r for r in caplog.records if "space" in r.getMessage().lower() and " 507 " not in r.getMessage()]
    assert len(about_it) == 1, [r.getMessage() for r in about_it]
    assert not any(r.exc_info for r in caplog.records)
    full[0] = False  # space returns
    assert client.post_data(msg_bytes(rows=10))[0] == 200
    assert client.post_files([("data", "a.1.cbor", msg_bytes(rows=9))])[0] == 200
    assert [r["rows"] for r in client.index()] == [3, None, 10, 9]
    assert_consistent(client)


def test_disk_full_while_appending_the_index_leaves_no_cut_line(client, monkeypatch):
    import errno

    from uingest_tools import datafolder

    assert client.post_data(msg_bytes(rows=3))[0] == 200
    before = client.snapshot()
    real_open = open

    class CutWriter:
        def __init__(self, f):
            self.f = f

        def write(self, b):
            self.f.write(b[: len(b) // 2])
            self.f.flush()
            raise OSError(errno.ENOSPC, "No space left on device")

        def __getattr__(self, name):
            return getattr(self.f, name)

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.f.close()

    def cut_open(path, mode="r", *a, **kw):
        f = real_open(path, mode, *a, **kw)
        return CutWriter(f) if str(path).endswith("index.jsonl") and "a" in mode else f

    monkeypatch.setattr(datafolder, "open", cut_open, raising=False)
    assert client.post_data(msg_bytes(rows=4))[0] == 507
    assert client.snapshot() == before
    monkeypatch.undo()
    assert client.post_data(msg_bytes(rows=5))[0] == 200
    assert [r["rows"] for r in client.index()] == [3, 5]  # every line reads
    assert_consistent(client)


@pytest.mark.parametrize(
    "sync, good_calls",
    [
        ("fsync", 2),  # the first file's fsyncs (file, folder) go through, then the disk is full
        ("syncfs", 0),  # the flush of both files' bytes fails
        ("syncfs", 1),  # the bytes are on disk, the flush of their names and index lines fails
    ],
)
def test_disk_full_on_the_second_file_of_a_request_stores_neither(make_server, monkeypatch, sync, good_calls):
    import errno

    from uingest_tools import datafolder

    if sync == "fsync":
        monkeypatch.setattr(datafolder, "syncfs", None)  # the folder fsyncs each file, as where there is no syncfs
    elif datafolder.syncfs is None:
        pytest.skip("no syncfs here")
    client = make_server(hmac_key=HMAC_KEY)
    before = client.snapshot()
    real_sync = getattr(datafolder, sync) if sync == "syncfs" else os.fsync
    calls = [0]

    def failing_sync(fd):
        calls[0] += 1
        if calls[0] > good_calls:
            raise OSError(errno.ENOSPC, "No space left on device")
        real_sync(fd)

    monkeypatch.setattr(*((datafolder.os, "fsync") if sync == "fsync" else (datafolder, "syncfs")), failing_sync)
    status, reply = client.post_files([("data", "a.1.cbor", msg_bytes(rows=4)), ("data", "k.2.wav", WAV)])
    assert status == 507 and reply["success"] is False
    assert calls[0] > good_calls and client.snapshot() == before
    monkeypatch.undo()
    assert client.post_files([("data", "a.1.cbor", msg_bytes(rows=4)), ("data", "k.2.wav", WAV)])[0] == 200
    assert [r["file_name"] for r in client.index()] == ["a.1.cbor", "k.2.wav"]
    assert_consistent(client)


def test_no_200_before_the_flush_that_puts_the_window_on_disk(client, monkeypatch):
    from uingest_tools import datafolder

    if datafolder.syncfs is None:
        pytest.skip("no syncfs here")
    real_syncfs = datafolder.syncfs
    flushed = threading.Event()  # the second flush (the name and the index line) returns only once it is set
    calls = []

    def slow_disk(fd):
        calls.append(fd)
        if len(calls) > 1:
            flushed.wait(10)
        real_syncfs(fd)

    monkeypatch.setattr(datafolder, "syncfs", slow_disk)
    replies = []
    post = threading.Thread(target=lambda: replies.append(client.post_data(msg_bytes(rows=3))))
    post.start()
    deadline = time.monotonic() + 10
    while len(calls) < 2 and time.monotonic() < deadline:
        time.sleep(0.01)
    post.join(0.3)
    # the window's file is in place and its index line written, but not yet on disk: no reply yet
    assert len(calls) == 2 and not replies
    assert [r["rows"] for r in read_index(client.data_dir)] == [3]
    flushed.set()
    post.join(10)
    assert replies[0][0] == 200 and len(calls) == 2
    assert [r["rows"] for r in client.index()] == [3]


def test_the_disk_full_line_comes_back_after_a_minute(tmp_path, monkeypatch, caplog):
    from uingest_tools import datafolder

    folder = datafolder.DataFolder(str(tmp_path / "data"))
    now = [1000.0]
    monkeypatch.setattr(datafolder.time, "monotonic", lambda: now[0])
    caplog.set_level(logging.INFO, logger="uingest.serve")
    for step in (0, 10, 59.9, 60.0, 119.9, 120.1):
        now[0] = 1000.0 + step
        assert folder.disk_full().status == 507
    assert len([r for r in caplog.records if "no space left" in r.getMessage()]) == 3  # at 0, 60 and 120.1 s


def test_a_label_file_over_its_limit_is_413_and_stores_nothing(client):
    from uingest_tools.ingestion import LABEL_FILE_MAX

    segments = [{"label": "a", "startIndex": 0, "endIndex": 19}] * (LABEL_FILE_MAX // 40)
    labels = json.dumps({"version": 1, "type": "structured-labels", "structuredLabels": {"s.cbor": segments}})
    assert len(labels) > LABEL_FILE_MAX
    before = client.snapshot()
    parts = [("data", "s.cbor", msg_bytes()), ("data", "structured_labels.labels", labels.encode())]
    status, reply = client.post_files(parts)
    assert status == 413 and str(LABEL_FILE_MAX) in reply["error"] and reply["success"] is False
    assert client.snapshot() == before


def test_the_hot_route_skips_starlettes_stack_and_every_other_request_goes_through_it(make_server, monkeypatch):
    """POST /api/{category}/data, the route every window takes, goes to its handler straight (serve._Collector);
    a path or method next to it still goes through Starlette's router and answers as it does."""
    from starlette.routing import Router

    routed = []
    through_router = Router.__call__

    async def recording_router(self, scope, receive, send):
        routed.append((scope["method"], scope["path"]))
        await through_router(self, scope, receive, send)

    monkeypatch.setattr(Router, "__call__", recording_router)
    c = make_server(hmac_key=HMAC_KEY)
    assert c.post_data(msg_bytes())[0] == 200
    status, _, body = c.post_data(msg_bytes(), category="bogus")
    assert (status, body) == (404, b"unknown category 'bogus'")
    assert routed == []  # both straight to the handler
    key = {"x-api-key": API_KEY, "x-file-name": "a.cbor", "Content-Type": "application/cbor"}
    for method, path, expected in [
        ("GET", "/api/training/data", 405),
        ("POST", "/api/a%2Fb/data", 404),  # the category holds a '/' once decoded
        ("POST", "/api//data", 404),
        ("POST", "/api/data", 404),
        ("POST", "/api/training/data/", 307),  # Starlette's redirect to the path without the slash
        ("POST", "/api/training/files", 415),
    ]:
        assert c.request(method, path, msg_bytes(), key)[0] == expected, path
    assert [p for _, p in routed] == ["/api/training/data", "/api/a/b/data", "/api//data", "/api/data",
                                      "/api/training/data/", "/api/training/files"]  # fmt: skip
    assert len(c.index()) == 1


def test_windows_that_arrive_while_the_committer_stores_go_in_one_group_each_with_its_own_reply(
    make_server, monkeypatch
):
    from uingest_tools import datafolder, ingestion

    if datafolder.syncfs is None:
        pytest.skip("no syncfs here: each window goes to a worker thread of its own")
    c = make_server(hmac_key=HMAC_KEY)
    stored = msg_bytes(device_name="stored-before")
    assert c.post_data(stored)[0] == 200
    gate, holding = threading.Event(), threading.Event()
    real_syncfs = datafolder.syncfs

    def held(fd):  # the disk holds the next group's first flush until the test lets it go
        holding.set()
        assert gate.wait(10)
        real_syncfs(fd)

    monkeypatch.setattr(datafolder, "syncfs", held)
    committer = ingestion._committer
    batches = committer.batches
    replies = {}

    def post(name, body, **headers):
        replies[name] = c.post_data(body, file_name=name + ".cbor", **headers)

    first = threading.Thread(target=post, args=("first", msg_bytes(device_name="first")))
    first.start()
    assert holding.wait(10)  # the committer is storing it
    tampered = bytearray(msg_bytes(device_name="tampered"))
    tampered[-1] ^= 1  # a value's last byte: still CBOR, no longer what was signed
    posts = [("good%d" % i, msg_bytes(device_name="good%d" % i), {}) for i in range(4)]
    posts += [("tampered", bytes(tampered), {}), ("again", stored, {"x-disallow-duplicates": "1"})]
    threads = [threading.Thread(target=post, args=(n, b), kwargs=h) for n, b, h in posts]
    for t in threads:
        t.start()
    deadline = time.monotonic() + 10
    while committer._jobs.qsize() < len(posts) and time.monotonic() < deadline:
        time.sleep(0.005)  # all of them waiting while the first is stored
    gate.set()
    for t in [first, *threads]:
        t.join(10)
    statuses = {name: reply[0] for name, reply in replies.items()}
    assert statuses == {"first": 200, "good0": 200, "good1": 200, "good2": 200, "good3": 200, "tampered": 400,
                        "again": 409}  # fmt: skip
    assert b"signature" in replies["tampered"][2]
    assert committer.batches - batches == 2  # the first alone, then the six together
    assert sorted(r["file_name"] for r in c.index()) == sorted(["idle.01.cbor", "first.cbor"] +
                                                               ["good%d.cbor" % i for i in range(4)])  # fmt: skip
    assert_consistent(c)


@pytest.mark.parametrize("error", [RuntimeError("a bug in a check"), KeyboardInterrupt()], ids=["Exception", "Base"])
def test_a_window_whose_check_fails_unexpectedly_gets_a_500_and_the_next_is_stored(make_server, monkeypatch, error):
    from uingest_tools import datafolder, ingestion

    if datafolder.syncfs is None:
        pytest.skip("no syncfs here: no committer")
    c = make_server(hmac_key=HMAC_KEY)
    batches = ingestion._committer.batches
    real_validate = ingestion.validate_message
    calls = [0]

    def validate(*args):
        calls[0] += 1
        if calls[0] == 1:
            raise error
        return real_validate(*args)

    monkeypatch.setattr(ingestion, "validate_message", validate)
    assert c.post_data(msg_bytes())[::2] == (500, b"internal server error")
    assert c.post_data(msg_bytes(device_name="next"))[0] == 200  # the server, its loop and its committer go on
    assert len(c.index()) == 1
    assert ingestion._committer.batches - batches == 2  # both went through the committer


def test_small_windows_go_to_the_committer_and_the_rest_to_worker_threads(make_server, monkeypatch, tmp_path):
    """The committer takes /data bodies up to COMMITTER_BODY_MAX where the folder flushes its filesystem; a
    larger body, and every body where the folder fsyncs each file, goes to a worker thread of its own."""
    from uingest_tools import datafolder, ingestion

    if datafolder.syncfs is None:
        pytest.skip("no syncfs here: every window goes to a worker thread")
    committer = ingestion._committer
    c = make_server(hmac_key=HMAC_KEY)
    small, large = msg_bytes(rows=4000), msg_bytes(rows=4500)
    assert len(small) <= ingestion.COMMITTER_BODY_MAX < len(large)
    for body, name, by_committer in [(small, "small.cbor", 1), (large, "large.cbor", 0)]:
        batches = committer.batches
        assert c.post_data(body, file_name=name)[0] == 200
        assert committer.batches - batches == by_committer, name
    monkeypatch.setattr(datafolder, "syncfs", None)  # a folder opened now fsyncs each file
    fsyncing = make_server(tmp_path / "fsyncing", hmac_key=HMAC_KEY)
    batches = committer.batches
    assert fsyncing.post_data(small)[0] == 200
    assert committer.batches == batches
    assert len(c.index()) == 2 and len(fsyncing.index()) == 1


def test_a_stalled_log_output_drops_lines_and_says_how_many_once_it_takes_them_again():
    """serve.log_off_the_event_loop: the writer thread blocks on the output, the logging thread goes on; over the
    queue's room the lines are dropped and counted, and the count is written once the output takes lines again."""
    import io

    writing, release = threading.Event(), threading.Event()

    class StalledOutput(io.StringIO):
        def write(self, text):
            writing.set()
            assert release.wait(10)
            return super().write(text)

    out = StalledOutput()
    logger = logging.getLogger("test.stalled_output")
    logger.propagate = False
    logger.setLevel(logging.INFO)
    logger.addHandler(logging.StreamHandler(out))
    writer = serve.log_off_the_event_loop(logger, queue_records=5)
    try:
        logger.info("line 0")
        assert writing.wait(10)  # the writer holds line 0, stalled in the output
        started = time.monotonic()
        for i in range(1, 20):
            logger.info("line %d", i)
        assert time.monotonic() - started < 1  # the logging thread did not wait for the output
        release.set()
    finally:
        writer.stop()
    lines = out.getvalue().splitlines()
    assert lines == ["line 0", "14 log lines dropped: the log's output did not take them (paused or not read)"] + [
        "line %d" % i for i in range(1, 6)
    ]
    assert [type(h) for h in logger.handlers] == [logging.StreamHandler]  # given back


def test_a_log_output_nobody_reads_does_not_stop_the_collector(tmp_path):
    """`uingest serve` with its stderr a pipe nobody reads (its buffer fills after some 600 request lines): before,
    the event loop blocked in the write and every device waited; now requests go on and the server stops when
    asked."""
    env = dict(os.environ, UINGEST_API_KEY=API_KEY)
    proc = start_serve("--data-dir", str(tmp_path / "data"), env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        c = Client(None, str(tmp_path / "data"), proc.port)
        conn = http.client.HTTPConnection("127.0.0.1", proc.port, timeout=5)
        for _ in range(3000):
            conn.request("GET", "/api/health")
            assert conn.getresponse().read() == b"ok"
        conn.close()
        assert c.post_data(msg_bytes(key=None))[0] == 200
        proc.terminate()
        proc.wait(20)  # the log writer gives up on the stalled output after 5 s
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        proc.stderr.close()
