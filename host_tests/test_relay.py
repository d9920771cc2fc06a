"""uingest relay: what one `uingest serve` collected, uploaded to a second one over real HTTP on loopback.

The second server is wrapped in an ASGI middleware (Gate) that counts the POSTs per file name and can
answer 500, hang, or store a sample and then cut the reply, to play a flaky ingestion service.
"""

import asyncio
import hashlib
import http.client
import io
import json
import math
import os
import re
import signal
import subprocess
import sys
import threading
import time
import urllib.parse

import pytest

from helpers import read_index, wav_bytes
from uingest import ingest, message
from uingest.window import Window
from uingest_tools import relay
from uingest_tools.progress import Progress
from uingest_tools.serve import ServerThread, create_app

SRC_KEY = "ei_collector_key_0001"
DST_KEY = "ei_0123456789abcdef0123456789abcdef"
HMAC_KEY = "relay-hmac-key"
IMU = [("accX", "m/s2"), ("accY", "m/s2"), ("accZ", "m/s2")]
HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)


def window(rows, phase):
    w = Window(IMU, 10, rows)
    for i in range(rows):
        w.append(math.sin(i / 7 + phase) * 9.81, i * 0.01 - 1, 9.81)
    return w


def post(url, path, body, headers):
    u = urllib.parse.urlsplit(url)
    conn = http.client.HTTPConnection(u.hostname, u.port, timeout=10)
    try:
        conn.request("POST", path, body=body, headers=headers)
        r = conn.getresponse()
        return r.status, r.read()
    finally:
        conn.close()


def post_files(url, name, data, **headers):
    boundary = "testboundary42"
    body = b'--%s\r\nContent-Disposition: form-data; name="data"; filename="%s"\r\n\r\n%s\r\n--%s--\r\n' % (
        boundary.encode(),
        name.encode(),
        data,
        boundary.encode(),
    )
    h = {"Content-Type": "multipart/form-data; boundary=" + boundary, "x-api-key": SRC_KEY}
    h.update(headers)
    return post(url, "/api/training/files", body, h)


# (category, x-label or None for x-no-label, format, device_name, hmac key)
SAMPLES = [
    ("training", "idle", "cbor", "ac:87:a3:0a:2d:1b", HMAC_KEY),
    ("training", "idle", "cbor", "ac:87:a3:0a:2d:1b", HMAC_KEY),
    ("training", "idle", "json", None, HMAC_KEY),
    ("testing", "wave", "json", "dev-2", HMAC_KEY),
    ("testing", "wave", "cbor", "dev-2", HMAC_KEY),
    ("anomaly", "left wave", "cbor", "dev-3", HMAC_KEY),
    ("training", "café", "cbor", "dev-3", HMAC_KEY),
    ("training", None, "json", "dev-4", HMAC_KEY),
]


def collect(data_dir, samples=SAMPLES, wav=True):
    """Post samples to a first `uingest serve` (no HMAC key: it stores what it gets); return its index."""
    srv = ServerThread(create_app(str(data_dir), api_key=SRC_KEY)).start()
    try:
        for n, (category, label, fmt, device_name, key) in enumerate(samples):
            body = message.encode(
                window(10 + n, n), fmt, hmac_key=key, device_type="ESP32_DEVKITC", device_name=device_name
            )
            h = {
                "x-api-key": SRC_KEY,
                "Content-Type": ingest.CONTENT_TYPES[fmt],
                "x-file-name": "sample.%02d.%s" % (n, fmt),
            }
            if label is None:
                h["x-no-label"] = "1"
            else:
                h["x-label"] = urllib.parse.quote(label)
            status, reply = post(srv.url, "/api/%s/data" % category, body, h)
            assert status == 200, reply
        if wav:
            status, reply = post_files(srv.url, "noise.01.wav", wav_bytes(800), **{"x-metadata": '{"site":"lab"}'})
            assert status == 200 and json.loads(reply)["success"], reply
    finally:
        srv.stop()
    return read_index(data_dir)


class Gate:
    """ASGI middleware in front of the target app: counts POSTs per file name; policy decides each one.

    policy(attempt_of_this_file, total_posts, file_name) returns None (pass through), "500", "hang" (answer
    500 after 1.5 s, long after the client's timeout), or "store-then-cut" (the app stores the sample, then the
    reply is cut: headers promise 100 bytes, none come).
    """

    def __init__(self, app):
        self.app = app
        self.policy = None
        self.posts = []
        self.lock = threading.Lock()

    def attempts(self, name):
        return self.posts.count(name)

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or scope["method"] != "POST":
            await self.app(scope, receive, send)
            return
        chunks = []
        while True:
            m = await receive()
            if m["type"] != "http.request":
                return  # client gone
            chunks.append(m.get("body", b""))
            if not m.get("more_body"):
                break
        body = b"".join(chunks)
        found = re.search(rb'filename="([^"]*)"', body)
        name = found.group(1).decode() if found else None
        with self.lock:
            self.posts.append(name)
            action = self.policy(self.posts.count(name), len(self.posts), name) if self.policy else None
        replayed = False

        async def replay():
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        if action is None:
            await self.app(scope, replay, send)
        elif action == "500":
            await respond(send, 500, {"success": False, "error": "internal server error (test)"})
        elif action == "503-retry-after-soon":  # a Retry-After that is neither seconds nor a date
            await respond(send, 503, {"success": False, "error": "busy (test)"}, [(b"retry-after", b"soon")])
        elif action == "413-retry-after":
            await respond(send, 413, {"success": False, "error": "too large (test)"}, [(b"retry-after", b"1")])
        elif action == "hang":
            await asyncio.sleep(1.5)
            await respond(send, 500, {"success": False, "error": "too late"})
        elif action == "slow":
            await asyncio.sleep(0.25)
            await self.app(scope, replay, send)
        elif action == "store-then-cut":

            async def swallow(message):
                pass

            await self.app(scope, replay, swallow)
            await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"100")]})
            await send({"type": "http.response.body", "body": b'{"succ', "more_body": True})
            raise RuntimeError("reply cut on purpose (test)")
        else:
            raise AssertionError(action)


async def respond(send, status, obj, extra=()):
    body = json.dumps(obj).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()), *extra]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


@pytest.fixture
def target(tmp_path):
    """The second `uingest serve` (checks signatures), behind a Gate."""
    data_dir = tmp_path / "target"
    gate = Gate(create_app(str(data_dir), api_key=DST_KEY, hmac_key=HMAC_KEY))
    srv = ServerThread(gate).start()
    try:
        yield srv, gate, data_dir
    finally:
        srv.stop()


@pytest.fixture(scope="module")
def collected(tmp_path_factory):
    """A data dir filled once by a first server; each test relays from its own copy."""
    src = tmp_path_factory.mktemp("collected") / "data"
    collect(src)
    return src


@pytest.fixture
def source(collected, tmp_path):
    import shutil

    dst = tmp_path / "source"
    shutil.copytree(collected, dst)
    return dst


def run(source, url, capsys, *extra, key=DST_KEY):
    argv = ["--data-dir", str(source), "--url", url, "--api-key", key, "--retry-delay", "0.001", *extra]
    rc = relay.main(argv)
    out, err = capsys.readouterr()
    assert key not in out and key not in err
    return rc, out, err


def summary(out):
    m = re.fullmatch(r"relay: uploaded (\d+), already there (\d+), failed (\d+)(; .*)?\n", out)
    assert m, out
    return int(m.group(1)), int(m.group(2)), int(m.group(3))


def expected_metadata(rec):
    meta = dict(rec["metadata"] or {})
    for k in ("device_name", "device_type"):
        if rec[k] is not None:
            meta[k] = rec[k]
    return meta


def assert_arrived_once(src_dir, dst_dir):
    src = read_index(src_dir)
    dst = read_index(dst_dir)
    by_sha = {}
    for rec in dst:
        assert rec["sha256"] not in by_sha, "uploaded twice: %s" % rec["file"]
        by_sha[rec["sha256"]] = rec
    assert sorted(by_sha) == sorted(r["sha256"] for r in src)
    for s in src:
        d = by_sha[s["sha256"]]
        assert (d["category"], d["label"]) == (s["category"], s["label"]), (d, s)
        assert d["metadata"] == expected_metadata(s)
        assert d["file_name"] == os.path.basename(s["file"])
        assert (dst_dir / d["file"]).read_bytes() == (src_dir / s["file"]).read_bytes()
        if s["file"].endswith((".cbor", ".json")):
            assert d["signature"] == "valid"  # the target checked it with its HMAC key
    return by_sha


def state_lines(source):
    [name] = [n for n in os.listdir(source) if n.startswith(".relay-")]
    with open(source / name) as f:
        return name, [json.loads(line) for line in f]


# --- the happy path


def test_every_sample_arrives_once_with_label_category_and_metadata(source, target, capsys):
    srv, gate, dst = target
    src = read_index(source)
    assert len(src) == len(SAMPLES) + 1
    assert {r["label"] for r in src} == {"idle", "wave", "left wave", "café", None, "noise"}

    rc, out, err = run(source, srv.url, capsys)
    assert (rc, err) == (0, "")
    assert summary(out) == (len(src), 0, 0)
    assert len(gate.posts) == len(src)
    assert_arrived_once(source, dst)
    wav = next(r for r in read_index(dst) if r["file"].endswith(".wav"))
    assert wav["metadata"] == {"site": "lab"} and wav["label"] == "noise"
    imu = next(r for r in read_index(dst) if r["label"] == "left wave")
    assert imu["metadata"] == {"device_name": "dev-3", "device_type": "ESP32_DEVKITC"}

    name, lines = state_lines(source)
    assert name == ".relay-127.0.0.1-%d.jsonl" % srv.port
    assert sorted(r["sha256"] for r in lines) == sorted(r["sha256"] for r in src)
    assert {r["url"] for r in lines} == {srv.url} and {r["result"] for r in lines} == {"uploaded"}
    assert DST_KEY not in (source / name).read_text()

    # again: nothing is sent
    rc, out, err = run(source, srv.url, capsys)
    assert (rc, err) == (0, "")
    assert summary(out) == (0, len(src), 0)
    assert len(gate.posts) == len(src)
    assert_arrived_once(source, dst)


def test_state_is_per_url(source, target, tmp_path, capsys):
    srv, gate, dst = target
    assert run(source, srv.url, capsys)[0] == 0
    other_dir = tmp_path / "other"
    other = ServerThread(create_app(str(other_dir), api_key=DST_KEY, hmac_key=HMAC_KEY)).start()
    try:
        rc, out, _ = run(source, other.url + "/", capsys)
    finally:
        other.stop()
    assert rc == 0 and summary(out) == (len(read_index(source)), 0, 0)
    assert_arrived_once(source, other_dir)


# --- interruptions


def test_target_dies_after_k_uploads_then_resume(source, target, capsys):
    srv, gate, dst = target
    n, k = len(read_index(source)), 3
    gate.policy = lambda attempt, total, name: "500" if total > k else None
    rc, out, err = run(source, srv.url, capsys, "--attempts", "3")
    assert rc == 1
    assert (
        out == "relay: uploaded %d, already there 0, failed 1; %d not tried (stopped: the service is not answering; "
        "run again later to resume)\n" % (k, n - k - 1)
    )
    [line] = err.splitlines()
    assert line.startswith("relay: ") and "gave up after 3 attempts: HTTP 500: internal server error (test)" in line
    assert len(gate.posts) == k + 3 and len(read_index(dst)) == k

    gate.policy = None
    before = len(gate.posts)
    rc, out, err = run(source, srv.url, capsys)
    assert (rc, err) == (0, "")
    assert summary(out) == (n - k, k, 0)
    assert len(gate.posts) - before == n - k  # nothing sent twice
    assert_arrived_once(source, dst)


def test_killed_mid_run_then_resumed(source, target, capsys):
    srv, gate, dst = target
    n = len(read_index(source))
    gate.policy = lambda attempt, total, name: "slow"
    env = dict(os.environ, UINGEST_API_KEY=DST_KEY, PYTHONPATH=os.path.join(ROOT, "tools"))
    env.pop("EI_API_KEY", None)
    proc = subprocess.Popen(
        [sys.executable, "-m", "uingest_tools.relay", "--data-dir", str(source), "--url", srv.url],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            names = [x for x in os.listdir(source) if x.startswith(".relay-")]
            if names and len((source / names[0]).read_bytes().splitlines()) >= 2:
                break
            time.sleep(0.02)
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.wait(10)
        proc.stdout.close()
        proc.stderr.close()
    time.sleep(0.5)  # a request the relay had sent completes on the server, its reply unread
    _, lines = state_lines(source)
    done = len(lines)
    assert 2 <= done < n
    posts_before = len(gate.posts)
    assert len(read_index(dst)) in (posts_before - 1, posts_before)

    gate.policy = None
    rc, out, err = run(source, srv.url, capsys)
    assert (rc, err) == (0, "")
    uploaded, already, failed = summary(out)
    assert failed == 0 and uploaded + already == n
    assert already in (done, done + 1)  # + the one stored whose answer the killed relay never read
    assert len(gate.posts) - posts_before == n - done
    assert_arrived_once(source, dst)
    assert len(state_lines(source)[1]) == n


# --- answers of the service


def test_refused_api_key_stops_at_once(source, target, capsys):
    srv, gate, dst = target
    rc, out, err = run(source, srv.url, capsys, key="ei_wrong_key_1234")
    assert rc == 2
    assert out == "" and err == "relay: the server refused the API key (401)\n"
    assert len(gate.posts) == 1 and read_index(dst) == []
    assert [x for x in os.listdir(source) if x.startswith(".relay-")] == [".relay-127.0.0.1-%d.jsonl" % srv.port]
    assert state_lines(source)[1] == []


def test_5xx_retried_then_succeed(source, target, capsys, monkeypatch):
    srv, gate, dst = target
    n = len(read_index(source))
    gate.policy = lambda attempt, total, name: "500" if attempt <= 2 else None
    delays = []
    real_sleep = time.sleep
    monkeypatch.setattr(time, "sleep", lambda s: (delays.append(s), real_sleep(s)))  # urllib3's Retry sleeps
    t0 = time.monotonic()
    rc, out, err = run(source, srv.url, capsys, "--retry-delay", "0.01")
    assert (rc, err) == (0, "")
    assert summary(out) == (n, 0, 0)
    assert len(gate.posts) == 3 * n and all(gate.attempts(name) == 3 for name in set(gate.posts))
    assert delays == [0.01, 0.02] * n  # exponential backoff from --retry-delay
    assert time.monotonic() - t0 < 10
    assert_arrived_once(source, dst)


def test_a_retry_after_that_is_no_number_falls_back_to_the_backoff(source, target, capsys, monkeypatch):
    srv, gate, dst = target
    n = len(read_index(source))
    gate.policy = lambda attempt, total, name: "503-retry-after-soon" if attempt == 1 else None
    delays = []
    real_sleep = time.sleep
    monkeypatch.setattr(time, "sleep", lambda s: (delays.append(s), real_sleep(s)))
    rc, out, err = run(source, srv.url, capsys, "--retry-delay", "0.01")
    assert (rc, err) == (0, "")
    assert summary(out) == (n, 0, 0)
    assert delays == [0.01] * n and len(gate.posts) == 2 * n
    assert_arrived_once(source, dst)


def test_a_413_is_not_retried_even_with_a_retry_after(tmp_path, target, capsys):
    srv, gate, dst = target
    src = tmp_path / "one"
    collect(src, SAMPLES[:1], wav=False)
    gate.policy = lambda attempt, total, name: "413-retry-after"
    t0 = time.monotonic()
    rc, out, err = run(src, srv.url, capsys)
    assert summary(out) == (0, 0, 1) and len(gate.posts) == 1 and time.monotonic() - t0 < 5
    assert "too large (test)" in err


def test_reply_lost_after_storing_counts_as_already_there(source, target, capsys):
    srv, gate, dst = target
    n = len(read_index(source))
    gate.policy = lambda attempt, total, name: "store-then-cut" if attempt == 1 else None
    rc, out, err = run(source, srv.url, capsys)
    assert (rc, err) == (0, "")
    assert summary(out) == (0, n, 0)  # the retry was answered "duplicate": already there
    assert len(gate.posts) == 2 * n
    assert_arrived_once(source, dst)
    assert {r["result"] for r in state_lines(source)[1]} == {"already there"}


def test_timeout_is_retried(tmp_path, target, capsys):
    srv, gate, dst = target
    src = tmp_path / "one"
    collect(src, SAMPLES[:1], wav=False)
    gate.policy = lambda attempt, total, name: "hang" if attempt == 1 else None
    t0 = time.monotonic()
    rc, out, err = run(src, srv.url, capsys, "--timeout", "0.3")
    assert (rc, err) == (0, "")
    assert summary(out) == (1, 0, 0)
    assert len(gate.posts) == 2 and time.monotonic() - t0 < 5
    assert_arrived_once(src, dst)


def test_rejected_files_are_reported_and_the_rest_goes_on(tmp_path, target, capsys):
    srv, gate, dst = target
    src = tmp_path / "mixed"
    samples = [
        ("training", "idle", "cbor", "d1", HMAC_KEY),
        ("training", "idle", "cbor", "d1", None),  # unsigned: the target requires HS256
        ("testing", "wave", "json", "d1", "another-key"),  # signed with the wrong key
        ("testing", "wave", "cbor", "d2", HMAC_KEY),
        ("training", "gone", "cbor", "d2", HMAC_KEY),
        ("training", "edited", "cbor", "d2", HMAC_KEY),
    ]
    recs = collect(src, samples, wav=False)
    os.unlink(src / recs[4]["file"])
    edited = src / recs[5]["file"]
    edited.write_bytes(edited.read_bytes()[:-1] + b"\x00")

    rc, out, err = run(src, srv.url, capsys)
    assert rc == 1
    assert summary(out) == (2, 0, 4)
    lines = err.splitlines()
    assert len(lines) == 4, err
    assert (
        lines[0]
        == "relay: %s: failed: signature missing: alg is 'none' but this server requires HS256" % (recs[1]["file"])
    )
    assert lines[1] == "relay: %s: failed: signature does not match the server's HMAC key" % recs[2]["file"]
    assert lines[2].startswith("relay: %s: failed: cannot read the file: " % recs[4]["file"])
    assert (
        lines[3]
        == "relay: %s: failed: the file changed since it was stored (sha256 differs from index.jsonl)"
        % (recs[5]["file"])
    )
    assert sorted(r["sha256"] for r in read_index(dst)) == sorted([recs[0]["sha256"], recs[3]["sha256"]])

    # failed samples are not marked: tried again next time, the good ones are not
    before = len(gate.posts)
    rc, out, err = run(src, srv.url, capsys)
    assert rc == 1 and summary(out) == (0, 2, 4)
    assert len(gate.posts) - before == 2  # the two the server refused; missing and edited files are not sent


def test_multi_label_samples_and_bounding_boxes_are_relayed_with_them(tmp_path, target, capsys):
    srv, gate, dst = target
    src = tmp_path / "src"
    first = ServerThread(create_app(str(src), api_key=SRC_KEY, hmac_key=HMAC_KEY)).start()
    segments = [{"label": "idle", "startIndex": 0, "endIndex": 9}, {"label": "wave", "startIndex": 10, "endIndex": 29}]
    boxes = [{"label": "cup", "x": 1, "y": 2, "width": 3, "height": 4}]
    try:
        body = message.encode(window(30, 0.5), "cbor", hmac_key=HMAC_KEY)
        doc = {"version": 1, "type": "structured-labels", "structuredLabels": {"session.cbor": segments}}
        boundary = "b0undary"
        multipart = b""
        for name, data in (("session.cbor", body), ("structured_labels.labels", json.dumps(doc).encode())):
            multipart += b'--%s\r\nContent-Disposition: form-data; name="data"; filename="%s"\r\n\r\n%s\r\n' % (
                boundary.encode(),
                name.encode(),
                data,
            )
        multipart += b"--%s--\r\n" % boundary.encode()
        h = {"Content-Type": "multipart/form-data; boundary=" + boundary, "x-api-key": SRC_KEY}
        assert post(first.url, "/api/training/files", multipart, h)[0] == 200
        png = b"\x89PNG\r\n\x1a\n" + bytes(16)
        assert post_files(first.url, "desk.png", png, **{"x-bounding-boxes": json.dumps(boxes)})[0] == 200
    finally:
        first.stop()
    rc, out, err = run(src, srv.url, capsys)
    assert rc == 0 and summary(out) == (2, 0, 0), err
    got = {r["sha256"]: r for r in read_index(dst)}
    for rec in read_index(src):
        d = got[rec["sha256"]]
        assert d.get("structured_labels") == rec.get("structured_labels")
        assert d.get("bounding_boxes") == rec.get("bounding_boxes")
    assert sorted(str(r.get("structured_labels") or r.get("bounding_boxes")) for r in got.values()) == sorted(
        [str(segments), str(boxes)]
    )


def test_label_files_video_and_csv_are_relayed_as_the_uploader_sends_them(tmp_path, target, capsys):
    """Boxes and key/value labels go on as bounding_boxes.labels and label_map.labels parts (relay sends no
    x-bounding-boxes): the target applies them to the file it names, as Edge Impulse's service does."""
    srv, gate, dst = target
    src = tmp_path / "src"
    first = ServerThread(create_app(str(src), api_key=SRC_KEY, hmac_key=HMAC_KEY)).start()
    boxes = [{"label": "cup", "x": 1.5, "y": 2, "width": 3, "height": 4}]
    labels = {"object": "cup", "place": "desk"}
    png = b"\x89PNG\r\n\x1a\n" + bytes(20)
    mp4 = (24).to_bytes(4, "big") + b"ftypisom" + bytes(12) + (8).to_bytes(4, "big") + b"mdat"
    parts = [
        ("desk.jpg", png),  # PNG bytes under a .jpg name: stored (and relayed) as .png
        ("clip.mp4", mp4),
        ("acc.txt", b"timestamp,x\n0,1\n10,2\n"),
        (
            "bounding_boxes.labels",
            json.dumps({"version": 1, "type": "bounding-box-labels", "boundingBoxes": {"desk.jpg": boxes}}).encode(),
        ),
        (
            "label_map.labels",
            json.dumps({"version": 1, "type": "label-map-labels", "labels": {"clip.mp4": labels}}).encode(),
        ),
    ]
    try:
        boundary = "b0undary"
        body = b""
        for name, data in parts:
            body += b'--%s\r\nContent-Disposition: form-data; name="data"; filename="%s"\r\n\r\n%s\r\n' % (
                boundary.encode(),
                name.encode(),
                data,
            )
        body += b"--%s--\r\n" % boundary.encode()
        h = {"Content-Type": "multipart/form-data; boundary=" + boundary, "x-api-key": SRC_KEY}
        assert post(first.url, "/api/training/files", body, h)[0] == 200
    finally:
        first.stop()
    rc, out, err = run(src, srv.url, capsys)
    assert rc == 0 and summary(out) == (3, 0, 0), err
    sent = {r["sha256"]: r for r in read_index(dst)}
    for rec in read_index(src):
        d = sent[rec["sha256"]]
        assert (d.get("bounding_boxes"), d.get("label_map")) == (rec.get("bounding_boxes"), rec.get("label_map"))
        assert d["file"].rsplit(".", 1)[1] == rec["file"].rsplit(".", 1)[1]  # png, mp4, csv
    assert sorted(str(r.get("bounding_boxes") or r.get("label_map")) for r in sent.values()) == sorted(
        ["None", str(boxes), str(labels)]
    )
    fields = relay.form_fields("desk.1.png", png, bounding_boxes=boxes, label_map=labels)
    assert [f[1][0] for f in fields] == ["desk.1.png", "bounding_boxes.labels", "label_map.labels"]
    assert json.loads(fields[1][1][1]) == {
        "version": 1,
        "type": "bounding-box-labels",
        "boundingBoxes": {"desk.1.png": boxes},
    }
    assert json.loads(fields[2][1][1]) == {"version": 1, "type": "label-map-labels", "labels": {"desk.1.png": labels}}


def test_a_plain_folder_is_relayed_with_category_and_label_from_its_path(tmp_path, target, capsys):
    """A folder not written by `uingest serve` (no index.jsonl), laid out <category>/<label>.<anything>.<ext> as
    Edge Impulse's uploader and the SDK's upload_directory read it: category and label come from the path (the
    label is the name up to its first '.', as the SDK's infer_from_filename takes it), and what was sent is
    remembered in the state file, so a second run sends nothing and a third only the file added."""
    srv, gate, dst = target
    plain = tmp_path / "plain"
    png = b"\x89PNG\r\n\x1a\n" + bytes(20)
    files = {
        "training/idle.01.cbor": message.encode(window(12, 0), "cbor", hmac_key=HMAC_KEY, device_type="ESP32_DEVKITC"),
        "training/idle.from-sdk.2.json": message.encode(window(9, 1), "json", hmac_key=HMAC_KEY, device_type="X"),
        "testing/wave.x.wav": wav_bytes(400),
        "anomaly/caf\u00e9 \u2615.1.csv": b"timestamp,x\n0,1\n10,2\n",
        "testing/desk.jpg": png,  # PNG bytes under .jpg, <label>.<ext>: the target keeps it as the PNG it is
        "training/clip.cam.avi": b"RIFF" + (100).to_bytes(4, "little") + b"AVI LIST" + bytes(20),
        "training/acc.2.txt": b"timestamp,x\n0,3\n10,4\n",  # .txt is CSV
    }
    ignored = {
        "training/info.labels": b"{}",  # not a sample
        "training/notes.md": b"# notes",
        "training/more/idle.3.cbor": files["training/idle.01.cbor"],  # not directly in a category folder
        "idle.9.cbor": files["training/idle.01.cbor"],  # no category
        "validation/idle.4.cbor": files["training/idle.01.cbor"],  # not a category
    }
    for rel, data in {**files, **ignored}.items():
        (plain / rel).parent.mkdir(parents=True, exist_ok=True)
        (plain / rel).write_bytes(data)

    rc, out, err = run(plain, srv.url, capsys)
    assert rc == 0 and summary(out) == (len(files), 0, 0), err
    assert err == (
        "relay: skipped 5 files of the folder that are not <category>/<label>.<anything>.<ext> with a category "
        "of training, testing or anomaly and a sample's extension\n"
    )
    got = {r["sha256"]: r for r in read_index(dst)}
    assert len(got) == len(files)
    for rel, data in files.items():
        d = got[hashlib.sha256(data).hexdigest()]
        category, name = rel.split("/")
        assert (d["category"], d["label"], d["file_name"]) == (category, name.split(".")[0], name)
        assert (dst / d["file"]).read_bytes() == data
    assert {r["signature"] for r in got.values() if r["file"].endswith((".cbor", ".json"))} == {"valid"}
    name, lines = state_lines(plain)
    assert sorted(r["file"] for r in lines) == sorted(files)

    posts = len(gate.posts)
    rc, out, err = run(plain, srv.url, capsys)
    assert rc == 0 and summary(out) == (0, len(files), 0) and len(gate.posts) == posts
    (plain / "testing" / "wave.y.wav").write_bytes(wav_bytes(600))
    rc, out, err = run(plain, srv.url, capsys)
    assert rc == 0 and summary(out) == (1, len(files), 0) and len(gate.posts) == posts + 1
    assert not (plain / "index.jsonl").exists()  # the folder is read, not made into a serve folder


def test_duplicate_in_the_target_already(source, target, capsys):
    """Samples the service already has (uploaded by someone else) are answered 'duplicate': already there."""
    srv, gate, dst = target
    src = read_index(source)
    first = src[0]
    data = (source / first["file"]).read_bytes()
    status, reply = post_files(srv.url, "x.cbor", data, **{"x-api-key": DST_KEY})
    assert status == 200 and json.loads(reply)["success"]
    rc, out, err = run(source, srv.url, capsys)
    assert (rc, err) == (0, "")
    assert summary(out) == (len(src) - 1, 1, 0)


# --- usage


def test_usage_errors(tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("UINGEST_API_KEY", raising=False)
    monkeypatch.delenv("EI_API_KEY", raising=False)
    assert relay.main(["--data-dir", str(tmp_path)]) == 2
    assert capsys.readouterr().err == "relay: no API key: pass --api-key or set UINGEST_API_KEY or EI_API_KEY\n"
    monkeypatch.setenv("EI_API_KEY", "ei_from_env")
    assert relay.main(["--data-dir", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("relay: no index.jsonl in ") and err.count("\n") == 1
    (tmp_path / "index.jsonl").write_text("")
    assert relay.main(["--data-dir", str(tmp_path), "--url", "ftp://x"]) == 2
    assert capsys.readouterr().err == "relay: invalid --url 'ftp://x': expected http(s)://host[:port]\n"
    assert relay.main(["--data-dir", str(tmp_path / "nope")]) == 2
    assert capsys.readouterr().err.startswith("relay: no such folder: ")
    with pytest.raises(SystemExit) as e:
        relay.main(["--help"])
    assert e.value.code == 0
    assert "uingest relay --data-dir ./dataset" in capsys.readouterr().out


def test_empty_index_with_cut_line(tmp_path, capsys):
    (tmp_path / "index.jsonl").write_text('{"file": "training/idle.1.cbor", "sha2')
    rc = relay.main(["--data-dir", str(tmp_path), "--url", "http://127.0.0.1:9", "--api-key", "k"])
    out, err = capsys.readouterr()
    assert rc == 0 and out == "relay: uploaded 0, already there 0, failed 0\n"
    assert err == "relay: skipped 1 unreadable line of index.jsonl\n"


def test_header_label_and_url():
    assert relay.header_label("idle") == "idle"
    assert relay.header_label("left wave") == "left wave"
    assert relay.header_label("café") == "caf%C3%A9"
    assert relay.header_label("100%") == "100%25"
    assert relay.base_url("https://ingestion.edgeimpulse.com/") == "https://ingestion.edgeimpulse.com"
    assert relay.base_url("http://127.0.0.1:4810/x/") == "http://127.0.0.1:4810/x"
    assert relay.base_url("https://ingestion.edgeimpulse.com:443") == "https://ingestion.edgeimpulse.com"
    assert (
        relay.state_path("/d", "https://ingestion.edgeimpulse.com") == "/d/.relay-ingestion.edgeimpulse.com.jsonl"
    )
    assert relay.state_path("/d", "http://127.0.0.1:4810") == "/d/.relay-127.0.0.1-4810.jsonl"


def test_progress_bar_only_on_a_terminal():
    class Tty(io.StringIO):
        def isatty(self):
            return True

    quiet = io.StringIO()
    bar = Progress(3, "relay", stream=quiet)
    bar.update()
    bar.close()
    assert quiet.getvalue() == ""
    tty = Tty()
    bar = Progress(2, "relay", stream=tty, min_interval=0)
    bar.update(note="a.cbor")
    bar.update()
    assert "\rrelay [" + "#" * 15 + "." * 15 + "] 1/2 a.cbor" in tty.getvalue()
    assert "] 2/2" in tty.getvalue()
    bar.close()
    assert tty.getvalue().endswith("\r")
    off = Tty()
    Progress(2, "relay", stream=off, enabled=False).update()
    assert off.getvalue() == ""


def test_stored_bytes_match_hashes(source):
    for rec in read_index(source):
        assert hashlib.sha256((source / rec["file"]).read_bytes()).hexdigest() == rec["sha256"]
