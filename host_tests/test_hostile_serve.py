"""uingest serve against what a hostile-input run found: each refused with a status and one reason, the server
going on, the log one line."""

import http.client
import json
import logging
import socket
import time

import pytest
from test_serve_connections import API_KEY, BODY  # its key and small signed window

from helpers import read_index
from label_cases import LABEL_CASES
from uingest_tools import serve
from uingest_tools.connections import HEAD_BYTES


@pytest.fixture
def srv(tmp_path):
    data = str(tmp_path / "data")
    server = serve.ServerThread(serve.create_app(data, api_key=API_KEY)).start()
    server.data_dir = data
    yield server
    server.stop()


def head(extra=b"", target=b"/api/training/data", length=None):
    length = len(BODY) if length is None else length
    return (
        b"POST %s HTTP/1.1\r\nHost: x\r\nContent-Type: application/cbor\r\nx-api-key: %s\r\n"
        b"x-file-name: idle.cbor\r\n%sContent-Length: %d\r\n\r\n" % (target, API_KEY.encode(), extra, length)
    )


def send_all_then_read(port, data):
    """Send data as a client does (all of it, then read the reply): the reply, or the error sending or
    reading it (a reset: the server closed with the request unread)."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        try:
            s.sendall(data)
            got = b""
            while True:
                part = s.recv(65536)
                if not part:
                    return got
                got += part
        except OSError as e:
            return e


def post(port, label="after"):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    headers = {"Content-Type": "application/cbor", "x-api-key": API_KEY, "x-file-name": label + ".cbor"}
    c.request("POST", "/api/training/data", BODY, headers)
    r = c.getresponse()
    r.read()
    c.close()
    return r.status


def status_and_body(reply):
    assert isinstance(reply, bytes), "no reply but %r" % reply
    top, _, body = reply.partition(b"\r\n\r\n")
    return int(top.split(b" ")[1]), top.lower(), body


@pytest.mark.parametrize(
    "request_bytes, status",
    [
        (head(b"x-junk: " + b"j" * (1 << 20) + b"\r\n") + BODY, 431),  # a header of 1 MB
        (head(b"".join(b"x-h%d: %s\r\n" % (i, b"v" * 100) for i in range(2000))) + BODY, 431),  # 2000 headers
        (head(target=b"/api/training/data?" + b"q" * (1 << 20)) + BODY, 414),  # a request line of 1 MB
    ],
    ids=["header-1MB", "2000-headers", "request-line-1MB"],
)
def test_a_head_too_large_gets_431_or_414_not_a_reset(srv, caplog, request_bytes, status):
    caplog.set_level(logging.INFO)
    reply = send_all_then_read(srv.port, request_bytes)
    got, top, body = status_and_body(reply)
    assert got == status, reply[:300]
    assert b"connection: close" in top
    assert len(body) < 200 and b"%d" % HEAD_BYTES in body  # short, and names the limit
    assert read_index(srv.data_dir) == []
    assert post(srv.port) == 200  # nothing else affected
    lines = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(lines) == 1 and "%d" % HEAD_BYTES in lines[0], lines


def test_a_head_under_the_limit_and_a_large_body_in_one_write_are_served(srv):
    """The limit is on the request line and headers only: the body that follows them in the same write is
    not counted."""
    near = head(b"x-pad: " + b"p" * (HEAD_BYTES - 400) + b"\r\n")
    assert len(near) < HEAD_BYTES
    got, _, _ = status_and_body(send_all_then_read(srv.port, near[:-2] + b"Connection: close\r\n\r\n" + BODY))
    assert got == 200
    big = b"x" * (1 << 20)
    request = head(b"Connection: close\r\nContent-Type: application/octet-stream\r\n", length=len(big)) + big
    got, _, _ = status_and_body(send_all_then_read(srv.port, request))
    assert got != 431 and got != 414


def test_a_head_too_large_on_a_kept_alive_connection_after_a_request(srv):
    with socket.create_connection(("127.0.0.1", srv.port), timeout=10) as s:
        s.sendall(head() + BODY)
        first = s.makefile("rb")
        assert first.readline().startswith(b"HTTP/1.1 200 ")
        length = 0
        while (line := first.readline()) != b"\r\n":
            if line.lower().startswith(b"content-length:"):
                length = int(line.split(b":")[1])
        first.read(length)
        s.sendall(head(b"x-junk: " + b"j" * (200 * 1024) + b"\r\n") + BODY)
        got = b""
        t0 = time.monotonic()
        while time.monotonic() - t0 < 10:
            part = s.recv(65536)
            if not part:
                break
            got += part
    assert got.startswith(b"HTTP/1.1 431 "), got[:200]


# --- percent escapes in x-label and x-file-name


def post_data(port, label=None, file_name="idle.cbor", **extra):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    headers = {"Content-Type": "application/cbor", "x-api-key": API_KEY, "x-file-name": file_name}
    if label is not None:
        headers["x-label"] = label
    headers.update(extra)
    try:
        c.request("POST", "/api/training/data", BODY, headers)
        r = c.getresponse()
        return r.status, r.read().decode()
    finally:
        c.close()


@pytest.mark.parametrize("label", ["%ZZ", "idle%ZZ", "idle%", "idle%2", "50%off", "%%41", "%G1"])
def test_an_invalid_percent_escape_in_x_label_is_400_with_one_reason(srv, label):
    status, reply = post_data(srv.port, label)
    assert status == 400, reply
    assert "x-label" in reply and "%25" in reply and "\n" not in reply.strip(), reply
    assert read_index(srv.data_dir) == []


@pytest.mark.parametrize("name", ["idle%ZZ.cbor", "idle%.cbor", "idle.cbor%2"])
def test_an_invalid_percent_escape_in_x_file_name_is_400_with_one_reason(srv, name):
    status, reply = post_data(srv.port, "idle", file_name=name)
    assert status == 400, reply
    assert "x-file-name" in reply and "%25" in reply, reply
    assert read_index(srv.data_dir) == []


def test_valid_escapes_still_decode(srv):
    assert post_data(srv.port, "50%25 caf%C3%A9", file_name="a%20b.cbor")[0] == 200
    (record,) = read_index(srv.data_dir)
    assert record["label"] == "50% caf\u00e9"


def post_files(port, parts, **headers):
    """POST parts [(file name, bytes)] to /api/training/files, as the uploader does: (status, JSON reply)."""
    boundary = b"uingestboundary1234"
    body = b""
    for name, data in parts:
        body += b'--%s\r\nContent-Disposition: form-data; name="data"; filename="%s"\r\n' % (boundary, name.encode())
        body += b"Content-Type: multipart/form-data\r\n\r\n%s\r\n" % data
    body += b"--%s--\r\n" % boundary
    headers = dict(
        {"Content-Type": "multipart/form-data; boundary=" + boundary.decode(), "x-api-key": API_KEY}, **headers
    )
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        c.request("POST", "/api/training/files", body, headers)
        r = c.getresponse()
        return r.status, json.loads(r.read())
    finally:
        c.close()


def test_an_invalid_escape_in_x_label_of_a_files_upload_is_refused(srv):
    status, reply = post_files(srv.port, [("idle.cbor", BODY)], **{"x-label": "a%ZZ"})
    assert status == 400 and "x-label" in reply["error"] and "%25" in reply["error"], reply
    assert read_index(srv.data_dir) == []


# --- the label files' labels and label-map keys follow the one label rule


PNG = b"\x89PNG\r\n\x1a\n" + bytes(24)


def label_file(name, doc_type, key, per_file):
    return (name, json.dumps({"version": 1, "type": doc_type, key: per_file}).encode())


def label_map(per_file):
    return label_file("label_map.labels", "label-map-labels", "labels", per_file)


def boxes(label):
    box = {"label": label, "x": 0, "y": 0, "width": 1, "height": 1}
    return label_file("bounding_boxes.labels", "bounding-box-labels", "boundingBoxes", {"a.png": [box]})


def segments(label):
    seg = {"label": label, "startIndex": 0, "endIndex": 3}
    return label_file("structured_labels.labels", "structured-labels", "structuredLabels", {"w.cbor": [seg]})


BAD_LABELS = [  # (label, what the rule says), from the rule's own table
    (label, reason) for label, stripped, reason in LABEL_CASES if stripped is None
]


@pytest.mark.parametrize("key, reason", BAD_LABELS, ids=[repr(k[:12]) for k, _ in BAD_LABELS])
def test_a_label_map_key_that_breaks_the_label_rule_refuses_the_request(srv, key, reason):
    status, reply = post_files(srv.port, [("a.png", PNG), ("w.cbor", BODY), label_map({"a.png": {key: "cup"}})])
    assert status == 400 and reply["success"] is False, reply
    assert reply["error"].startswith("label_map.labels: a.png: key: ") and reason in reply["error"], reply
    assert read_index(srv.data_dir) == []


def test_label_map_keys_are_stripped_as_labels_are_and_must_stay_distinct(srv):
    status, reply = post_files(srv.port, [("a.png", PNG), label_map({"a.png": {"k": "cup", " k ": "mug"}})])
    assert status == 400 and "label_map.labels: a.png: key 'k' given twice" in reply["error"], reply
    status, reply = post_files(srv.port, [("a.png", PNG), label_map({"a.png": {" place ": "desk"}})])
    assert status == 200, reply
    assert read_index(srv.data_dir)[0]["label_map"] == {"place": "desk"}


@pytest.mark.parametrize(
    "part, where",
    [
        (label_map({"a.png": {"k": "../cup"}}), "label_map.labels: a.png: "),
        (label_map({"a.png": ["cup", ".hidden"]}), "label_map.labels: a.png: "),
        (boxes("a/b"), "bounding_boxes.labels: a.png: "),
        (segments("x" * 129), "structured_labels.labels: w.cbor: "),
    ],
    ids=["label-map-value", "label-map-list", "box", "segment"],
)
def test_a_label_files_label_that_breaks_the_rule_names_the_file_and_sample(srv, part, where):
    status, reply = post_files(srv.port, [("a.png", PNG), ("w.cbor", BODY), part])
    assert status == 400 and reply["error"].startswith(where) and "label" in reply["error"][len(where) :], reply
    assert read_index(srv.data_dir) == []


def test_a_box_label_in_x_bounding_boxes_that_breaks_the_rule_names_the_header(srv):
    box = {"label": "a\u202eb", "x": 0, "y": 0, "width": 1, "height": 1}
    status, reply = post_files(srv.port, [("a.png", PNG)], **{"x-bounding-boxes": json.dumps([box])})
    assert status == 400 and reply["error"].startswith("x-bounding-boxes: label must not contain control"), reply
    assert read_index(srv.data_dir) == []


def test_a_head_too_large_over_tls_gets_its_431(tmp_path):
    """TLS cannot half-close: the reply goes, what follows is dropped until the client closes."""
    import ssl

    import trustme

    ca = trustme.CA()
    pem = str(tmp_path / "server.pem")
    ca.issue_cert("127.0.0.1").private_key_and_cert_chain_pem.write_to_path(pem)
    context = ssl.create_default_context()
    ca.configure_trust(context)
    with serve.ServerThread(serve.create_app(str(tmp_path / "data"), api_key=API_KEY), ssl_certfile=pem) as srv:
        with socket.create_connection(("127.0.0.1", srv.port), timeout=10) as raw:
            with context.wrap_socket(raw, server_hostname="127.0.0.1") as s:
                s.sendall(head(b"x-junk: " + b"j" * (1 << 20) + b"\r\n") + BODY)
                t0 = time.monotonic()
                got = b""
                while part := s.recv(65536):  # to the end, as a client of a connection: close does
                    got += part
                took = time.monotonic() - t0
        assert got.startswith(b"HTTP/1.1 431 "), got[:200]
        assert took < 5, took  # closed once the client stopped sending, not at the header deadline (10 s)
