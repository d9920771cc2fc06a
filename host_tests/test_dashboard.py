"""uingest serve's dashboard: its JSON endpoints and event stream over real HTTP, and the page itself in a
real headless Chromium (Debian's, driven by Playwright) at 1280x800 that must update live, open with the newest
sample plotted one panel per axis, draw a clicked sample, and fit its width (checked on a screenshot too)."""

import contextlib
import http.client
import json
import logging
import math
import os
import shutil
import signal
import socket
import subprocess
import time

import pytest

from helpers import wav_bytes
from uingest import message
from uingest.window import Window
from uingest_tools import dashboard, serve
from uingest_tools.loopback import start_serve

API_KEY = "ei_dash_key_7f3a"
IMU = [("accX", "m/s2"), ("accY", "m/s2"), ("accZ", "m/s2")]
IMU6 = IMU + [("gyrX", "rad/s"), ("gyrY", "rad/s"), ("gyrZ", "rad/s")]
VIEWPORT = {"width": 1280, "height": 800}  # the window the dashboard must fit without sideways scrolling
WAV = wav_bytes(160)  # a real WAV: the server reads its header (a zeroed fmt chunk is refused)
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
INSTALL_HINT = "run the install step of .ci/run: command -v chromium || (apt-get update && apt-get install -y chromium)"


def window(rows=40, phase=0.0, scale=1.0):
    w = Window(IMU, 10, rows)
    for i in range(rows):
        w.append(math.sin(i / 5 + phase) * 9.81 * scale, math.cos(i / 9) * 4 - 1, 9.81)
    return w


def body_of(rows=40, device_name="ac:87:a3:0a:2d:1b", phase=0.0, scale=1.0, fmt="cbor"):
    return message.encode(
        window(rows, phase, scale), fmt, hmac_key=None, device_type="ESP32_DEVKITC", device_name=device_name
    )


def wobble_body(sensors, rows=60, device_name="dev-w"):
    """A message whose axes swing over very different ranges: gravity on accZ with a wobble of 0.04, the
    others a few tenths, a gyro in hundredths of a rad/s; on one shared y-range all but accX would look flat."""
    w = Window(sensors, 10, rows)
    for i in range(rows):
        swing = [math.sin(i / 6 + a) * (0.3 if a % 3 == 0 else 0.01 * (a + 1)) for a in range(len(sensors))]
        if len(sensors) > 2:
            swing[2] += 9.81
        w.append(*swing)
    return message.encode(w, "cbor", hmac_key=None, device_type="ESP32_DEVKITC", device_name=device_name)


class Client:
    def __init__(self, port):
        self.port = port

    def request(self, method, path, body=None, headers=None):
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        try:
            conn.request(method, path, body=body, headers=headers or {})
            r = conn.getresponse()
            return r.status, dict((k.lower(), v) for k, v in r.getheaders()), r.read()
        finally:
            conn.close()

    def get_json(self, path, key=API_KEY):
        status, _, body = self.request("GET", path, headers={"x-api-key": key} if key else {})
        return status, json.loads(body)

    def post(self, body, label, category="training", fmt="cbor"):
        headers = {
            "Content-Type": "application/" + fmt,
            "x-api-key": API_KEY,
            "x-file-name": "%s.1.%s" % (label, fmt),
            "x-label": label,
        }
        status, _, reply = self.request("POST", "/api/%s/data" % category, body, headers)
        assert status == 200, reply
        return reply.decode()

    def post_wav(self, label="knock"):
        boundary = "dashboardboundary"
        out = (
            b'--%s\r\nContent-Disposition: form-data; name="data"; filename="%s.1.wav"\r\n\r\n'
            % (boundary.encode(), label.encode())
            + WAV
            + b"\r\n--%s--\r\n" % boundary.encode()
        )
        headers = {"Content-Type": "multipart/form-data; boundary=" + boundary, "x-api-key": API_KEY}
        status, _, reply = self.request("POST", "/api/training/files", out, headers)
        assert status == 200 and json.loads(reply)["success"], reply


@pytest.fixture
def server(tmp_path):
    started = []

    def make(**kw):
        kw.setdefault("api_key", API_KEY)
        srv = serve.ServerThread(serve.create_app(str(tmp_path / "data"), **kw)).start()
        started.append(srv)
        return srv, Client(srv.port)

    yield make
    for srv in started:
        srv.stop()


class Events:
    """The summaries of an SSE response read from a socket."""

    def __init__(self, sock):
        self.sock = sock
        self.buf = b""

    def read(self, want, timeout=5.0):
        """Read until `want` summary events have arrived in all; return them all (decoded)."""
        self.sock.settimeout(timeout)
        deadline = time.monotonic() + timeout
        while self.buf.count(b"event: summary\n") < want:
            assert time.monotonic() < deadline, self.buf[-500:]
            chunk = self.sock.recv(65536)
            assert chunk, "event stream closed: %r" % self.buf[-500:]
            self.buf += chunk
        return [json.loads(part.split(b"\n\n")[0]) for part in self.buf.split(b"event: summary\ndata: ")[1:]]


def open_events(port, key=API_KEY):
    sock = socket.create_connection(("127.0.0.1", port), timeout=5)
    sock.sendall(
        b"GET /api/dashboard/events?key=%s HTTP/1.1\r\nHost: x\r\nAccept: text/event-stream\r\n\r\n" % key.encode()
    )
    return sock


# --- JSON endpoints


def test_page_is_public_and_data_needs_the_key(server):
    srv, c = server()
    status, headers, page = c.request("GET", "/")
    assert status == 200 and headers["content-type"].startswith("text/html")
    assert b"<canvas" in page and b"/dashboard/dashboard.js" in page and b"http" not in page.replace(b"http-", b"")
    assert "script-src 'self'" in headers["content-security-policy"] and headers["x-frame-options"] == "DENY"
    for name, media in (("dashboard.js", "text/javascript"), ("dashboard.css", "text/css")):
        status, headers, body = c.request("GET", "/dashboard/" + name)
        assert status == 200 and headers["content-type"].startswith(media) and len(body) > 500
    assert c.request("GET", "/dashboard/../serve.py")[0] == 404
    assert c.request("GET", "/dashboard/index.html")[0] == 404
    for path in ("/api/dashboard/summary", "/api/dashboard/samples", "/api/dashboard/samples/1"):
        missing = {"success": False, "error": "missing API key: send x-api-key or ?key="}
        assert c.get_json(path, key=None) == (401, missing)
        assert c.get_json(path, key="wrong")[0] == 401
        assert c.get_json(path + "?key=wrong", key=None)[0] == 401
    assert c.request("GET", "/api/dashboard/events")[0] == 401
    assert c.get_json("/api/dashboard/summary")[0] == 200
    assert c.get_json("/api/dashboard/summary?key=" + API_KEY, key=None)[0] == 200
    # without a key on the server, the dashboard is as open as ingestion
    srv2, c2 = server(api_key=None, no_auth=True)
    assert c2.get_json("/api/dashboard/summary", key=None)[0] == 200


def test_summary_samples_and_values(server, tmp_path):
    srv, c = server()
    c.post(body_of(device_name="dev-a"), "idle")
    c.post(body_of(device_name="dev-a", phase=1), "idle", category="testing")
    c.post(body_of(device_name="dev-b", fmt="json"), "wave", fmt="json")
    c.post_wav()
    status, s = c.get_json("/api/dashboard/summary")
    assert status == 200 and s["total"] == 4
    assert s["categories"] == [{"category": "testing", "count": 1}, {"category": "training", "count": 3}]
    assert [(x["label"], x["count"], x["categories"]) for x in s["labels"]] == [
        ("idle", 2, {"training": 1, "testing": 1}),
        ("knock", 1, {"training": 1}),
        ("wave", 1, {"training": 1}),
    ]
    assert [(d["device"], d["device_type"], d["count"]) for d in s["devices"]] == [
        ("dev-a", "ESP32_DEVKITC", 2),
        ("dev-b", "ESP32_DEVKITC", 1),
        (None, None, 1),
    ]
    assert [r["sample_id"] for r in s["recent"]] == [4, 3, 2, 1]
    assert s["recent"][1]["sensors"] == ["accX", "accY", "accZ"] and "sha256" not in s["recent"][1]

    def ids(query):
        status, body = c.get_json("/api/dashboard/samples" + query)
        assert status == 200
        return [r["sample_id"] for r in body["samples"]]

    assert ids("") == [4, 3, 2, 1]
    assert ids("?label=idle") == [2, 1] and ids("?category=testing") == [2] and ids("?device=dev-a&limit=1") == [2]
    assert ids("?device=") == [4] and ids("?label=nothing") == []
    assert c.get_json("/api/dashboard/samples?limit=x")[0] == 400

    status, v = c.get_json("/api/dashboard/samples/3")
    assert status == 200 and v["label"] == "wave" and v["file"].endswith(".json") and v["rows"] == 40
    assert v["sensors"] == [{"name": n, "units": u} for n, u in IMU] and v["downsampled"] is False
    assert v["t"] == [i * 10 for i in range(40)] and len(v["axes"]) == 3
    want = [[math.sin(i / 5) * 9.81, math.cos(i / 9) * 4 - 1, 9.81] for i in range(40)]  # stored as float32
    for a in range(3):
        assert v["axes"][a] == pytest.approx([row[a] for row in want], abs=1e-5)
    status, err = c.get_json("/api/dashboard/samples/4")
    assert status == 422 and "wav" in err["error"]
    assert c.get_json("/api/dashboard/samples/99")[0] == 404

    # a restarted server reads the same from index.jsonl
    srv.stop()
    srv2, c2 = server()
    status, s2 = c2.get_json("/api/dashboard/summary")
    assert {k: s2[k] for k in ("total", "categories", "labels", "devices")} == {
        k: s[k] for k in ("total", "categories", "labels", "devices")
    }


def test_long_samples_are_reduced_to_2000_points_keeping_peaks(server):
    srv, c = server()
    rows = 6000
    c.post(body_of(rows=rows), "long")
    status, v = c.get_json("/api/dashboard/samples/1")
    assert status == 200 and v["rows"] == rows and v["downsampled"] is True
    assert v["points"] == len(v["t"]) <= 2000 and all(len(a) == len(v["t"]) for a in v["axes"])
    assert v["t"] == sorted(v["t"]) and v["t"][0] == 0 and v["t"][-1] <= (rows - 1) * 10
    x = [math.sin(i / 5) * 9.81 for i in range(rows)]
    assert max(v["axes"][0]) == pytest.approx(max(x), rel=1e-6)
    assert min(v["axes"][0]) == pytest.approx(min(x), rel=1e-6)
    # unit: min/max per bucket, in the order they occur
    out = dashboard.sample_axes({"sensors": [{}], "interval_ms": 2, "values": [0, 5, -3, 1, 7, 2, -9, 4]}, max_points=4)
    assert out == {"t": [0, 2, 8, 10], "axes": [[5, -3, 7, -9]], "downsampled": True}


def test_the_key_in_a_query_string_is_not_logged(server, caplog):
    caplog.set_level(logging.DEBUG)
    srv, c = server()
    assert c.get_json("/api/dashboard/summary?key=" + API_KEY, key=None)[0] == 200
    assert c.request("GET", "/?key=" + API_KEY)[0] == 200
    deadline = time.monotonic() + 5
    while len([r for r in caplog.records if r.name == "uingest.serve"]) < 2 and time.monotonic() < deadline:
        time.sleep(0.01)
    lines = [r.getMessage() for r in caplog.records if r.name == "uingest.serve"]
    assert lines[0].startswith("GET /api/dashboard/summary 200 ") and lines[1].startswith("GET / 200 ")
    assert API_KEY not in "\n".join(r.getMessage() for r in caplog.records)


# --- live updates over Server-Sent Events, and shutdown with streams open


def test_event_stream_pushes_summaries_and_does_not_hold_up_stop(server):
    srv, c = server()
    sock = open_events(srv.port)
    try:
        stream = Events(sock)
        events = stream.read(1)
        assert stream.buf.startswith(b"HTTP/1.1 200 OK\r\n") and b"text/event-stream" in stream.buf
        assert b"retry: " in stream.buf and events[0]["total"] == 0
        c.post(body_of(), "idle")
        c.post(body_of(phase=2), "idle")
        while events[-1]["total"] < 2:
            events = stream.read(len(events) + 1)
        assert events[-1]["labels"][0]["count"] == 2
        sock2 = open_events(srv.port)
        Events(sock2).read(1)
        t0 = time.monotonic()
        srv.stop()
        assert time.monotonic() - t0 < 3, "an open event stream held up the shutdown"
        sock.settimeout(3)
        while sock.recv(65536):  # the server ended the stream and closed the connection
            pass
        sock2.close()
    finally:
        sock.close()


def test_sigterm_with_an_open_event_stream(tmp_path):
    env = dict(os.environ, UINGEST_API_KEY=API_KEY)
    proc = start_serve("--data-dir", str(tmp_path / "d"), env=env, stderr=subprocess.PIPE, text=True)
    port = proc.port
    sock = None
    try:
        sock = open_events(port)
        Events(sock).read(1)
        t0 = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 0
        assert time.monotonic() - t0 < 5
    finally:
        if sock is not None:
            sock.close()
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    err = proc.stderr.read()
    assert "dashboard: http://127.0.0.1:%d/" % port in err and API_KEY not in err


# --- the page in a real browser


def _browser(p):
    if not os.path.exists(CHROMIUM) and not shutil.which("chromium"):
        pytest.fail("Chromium is not installed (%s): %s" % (CHROMIUM, INSTALL_HINT))
    exe = CHROMIUM if os.path.exists(CHROMIUM) else shutil.which("chromium")
    return p.chromium.launch(executable_path=exe, args=CHROMIUM_ARGS, timeout=20000)


@contextlib.contextmanager
def dashboard_page(url, viewport=None, console_errors=True):
    """The dashboard at url (its key given in the address, as the server's log line prints it) in headless
    Chromium: (page, errors), errors collecting the page's uncaught errors and (console_errors) the console's,
    a refused request among them; closed after."""
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.fail("playwright is not installed: `make test` installs requirements-dev.txt into .venv")
    with sync_playwright() as p:
        browser = _browser(p)
        try:
            page = browser.new_page(viewport=viewport or VIEWPORT)
            errors = []
            page.on("pageerror", lambda e: errors.append(str(e)))
            if console_errors:
                page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
            page.goto(url)
            yield page, errors
        finally:
            browser.close()


def wait_until(page, js, timeout=10.0):
    """Poll a JS expression with page.evaluate (page.wait_for_function evaluates strings in the page, which
    the dashboard's Content-Security-Policy forbids, as it should)."""
    deadline = time.monotonic() + timeout
    while not page.evaluate(js):
        assert time.monotonic() < deadline, "timed out waiting for: " + js
        time.sleep(0.05)


# pixels of each of the first 3 axis colours in the plot's panels, anti-aliased over the white plot:
# p = white + a (colour - white)
PIXELS_JS = """() => {
  const cols = window.uingestDashboard.colors.slice(0, 3).map(
    (h) => [1, 3, 5].map((i) => parseInt(h.slice(i, i + 2), 16)));
  const counts = cols.map(() => 0);
  for (const c of document.querySelectorAll('#panels canvas')) {
    const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
    for (let i = 0; i < d.length; i += 4)
      cols.forEach((col, k) => {
        const a = [0, 1, 2].map((j) => (255 - d[i + j]) / (255 - col[j]));
        if (Math.min(...a) > 0.4 && Math.max(...a) - Math.min(...a) < 0.15) counts[k]++;
      });
  }
  return counts;
}"""

# each panel: its axis, its line's colour and where its plot area is in the page (CSS px, from the top of the
# document, as in a full-page screenshot at device scale 1), and the rows and columns of that area its colour
# covers in the canvas itself (getImageData, a check apart from the screenshot's)
PANELS_JS = """() => Array.from(document.querySelectorAll('#panels figure'), (fig, i) => {
  const c = fig.querySelector('canvas'), r = c.getBoundingClientRect(), ds = c.dataset;
  const box = {left: Number(ds.plotLeft), top: Number(ds.plotTop),
               width: Number(ds.plotWidth), height: Number(ds.plotHeight)};
  const color = window.uingestDashboard.colors[i % window.uingestDashboard.colors.length];
  const col = [1, 3, 5].map((k) => parseInt(color.slice(k, k + 2), 16));
  const scale = c.width / c.clientWidth;
  const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
  const rows = new Set(), cols = new Set();
  for (let y = Math.ceil((box.top + 2) * scale); y < (box.top + box.height - 2) * scale; y++)
    for (let x = Math.ceil((box.left + 2) * scale); x < (box.left + box.width - 2) * scale; x++) {
      const p = (y * c.width + x) * 4;
      if (Math.max(...[0, 1, 2].map((j) => Math.abs(d[p + j] - col[j]))) < 60) { rows.add(y); cols.add(x); }
    }
  return {
    axis: fig.dataset.axis, caption: fig.querySelector('figcaption').innerText, color: col, box: box,
    x: r.left + window.scrollX + c.clientLeft, y: r.top + window.scrollY + c.clientTop, panelWidth: r.width,
    canvasRows: rows.size ? (Math.max(...rows) - Math.min(...rows)) / scale / box.height : 0,
    canvasCols: cols.size ? (Math.max(...cols) - Math.min(...cols)) / scale / box.width : 0,
  };
})"""

LAYOUT_JS = """() => ({
  scrollWidth: document.scrollingElement.scrollWidth, clientWidth: document.scrollingElement.clientWidth,
  scrollHeight: document.scrollingElement.scrollHeight, clientHeight: document.scrollingElement.clientHeight,
  widest: Math.max(...Array.from(document.querySelectorAll('body *'), (e) => e.getBoundingClientRect().right)),
  sideways: Array.from(document.querySelectorAll('body *'), (e) => e).filter((e) =>
    e.scrollWidth > e.clientWidth + 1 && ['auto', 'scroll'].includes(getComputedStyle(e).overflowX)).map(
    (e) => e.id || e.className),
})"""


def line_span(img, panel):
    """The fraction of a panel's plot area (height, width) that pixels of its axis' colour span in a
    screenshot: a line drawn over the axis' own range covers most of its height, a flattened one a sliver."""
    b = panel["box"]
    x0, y0 = round(panel["x"] + b["left"]) + 2, round(panel["y"] + b["top"]) + 2
    crop = img.crop((x0, y0, x0 + int(b["width"]) - 4, y0 + int(b["height"]) - 4))
    w, h = crop.size
    px = crop.load()
    rows, cols = set(), set()
    for y in range(h):
        for x in range(w):
            if max(abs(c - k) for c, k in zip(px[x, y], panel["color"])) < 60:  # the line, not grid or white
                rows.add(y)
                cols.add(x)
    if not rows:
        return 0.0, 0.0
    return (max(rows) - min(rows)) / b["height"], (max(cols) - min(cols)) / b["width"]


def check_panels_and_layout(page, shot, axes):
    """The plot is one panel per axis, captioned with its name and unit, each line spanning most of its own
    panel (in a full-page screenshot and in the canvas); the page fits the 1280 px window without sideways
    scrolling (its screenshot is no wider)."""
    from PIL import Image

    layout = page.evaluate(LAYOUT_JS)
    assert layout["scrollWidth"] <= layout["clientWidth"] == VIEWPORT["width"], layout
    assert layout["widest"] <= VIEWPORT["width"] and layout["sideways"] == [], layout  # no card scrolls sideways
    panels = page.evaluate(PANELS_JS)
    assert [(p["axis"], p["caption"]) for p in panels] == [(n, "%s(%s)" % (n, u)) for n, u in axes]
    page.screenshot(path=str(shot), full_page=True)
    img = Image.open(shot).convert("RGB")
    assert img.size[0] == VIEWPORT["width"], "the page is wider than its window: %r" % (img.size,)
    for p in panels:
        assert p["box"]["height"] >= 60 and p["panelWidth"] >= 400, p
        rows, cols = line_span(img, p)
        assert rows > 0.8 and cols > 0.9, "panel %s: its line spans %.2f of the height, %.2f of the width" % (
            p["axis"], rows, cols)  # fmt: skip
        assert p["canvasRows"] > 0.8 and p["canvasCols"] > 0.9, p
    return layout


def test_dashboard_in_a_browser(server, tmp_path):
    srv, c = server()
    with dashboard_page(srv.url + "/?key=" + API_KEY) as (page, errors):
        wait_until(page, "document.getElementById('status').textContent === 'live'")
        assert page.url == srv.url + "/", "the key stays in the address bar"
        assert page.text_content("#total") == "0"
        assert "No samples yet" in page.text_content("#plotinfo") and page.locator("#panels figure").count() == 0
        page.evaluate("window.__notReloaded = true")

        # the first sample on an empty dashboard is plotted as it arrives, one panel per axis
        c.post(body_of(device_name="dev-a"), "idle")
        wait_until(page, "window.uingestDashboard.plotted === 1")
        assert page.text_content("#total") == "1"
        texts = lambda sel: page.locator(sel).all_inner_texts()  # noqa: E731
        assert texts("#panels figcaption") == ["accX(m/s2)", "accY(m/s2)", "accZ(m/s2)"]
        assert page.is_checked("#follow")

        # live: windows posted now show up without a reload, and the newest is plotted (nothing clicked yet)
        c.post(body_of(device_name="dev-a", phase=1), "idle")
        c.post(body_of(device_name="dev-b", phase=2, scale=0.5), "wave", category="testing")
        c.post(body_of(device_name="dev-b", phase=3), "wave")
        wait_until(page, "document.getElementById('total').textContent === '4'")
        assert page.evaluate("window.__notReloaded") is True
        wait_until(page, "document.querySelectorAll('#samples tbody tr').length === 4")
        assert texts('#labels tr[data-label="idle"] td') == ["idle", "2", "0", "0", "2"]
        assert texts('#labels tr[data-label="wave"] td') == ["wave", "1", "1", "0", "2"]
        assert texts('#devices tr[data-device="dev-b"] td')[:3] == ["dev-b", "ESP32_DEVKITC", "2"]
        assert texts('#categories tr[data-category="training"] td') == ["training", "3"]
        assert texts("#samples tbody tr td:first-child") == ["4", "3", "2", "1"]
        wait_until(page, "window.uingestDashboard.plotted === 4")
        assert "selected" in page.get_attribute('#samples tr[data-sample-id="4"]', "class").split()

        # a filter by label, then back
        page.click('#labels tr[data-label="wave"]')
        wait_until(page, "document.querySelectorAll('#samples tbody tr').length === 2")
        assert texts("#samples tbody tr td:nth-child(4)") == ["wave", "wave"]
        page.click("#filter")
        wait_until(page, "document.querySelectorAll('#samples tbody tr').length === 4")

        # click a sample: its axes are drawn, a panel per axis captioned with its name and unit
        page.click('#samples tr[data-sample-id="3"]')
        wait_until(page, "window.uingestDashboard.plotted === 3")
        assert texts("#panels figcaption") == ["accX(m/s2)", "accY(m/s2)", "accZ(m/s2)"]
        assert "wave" in page.text_content("#plottitle")
        assert not page.is_checked("#follow"), "a click picks a sample: new ones no longer take the plot"
        counts = page.evaluate(PIXELS_JS)
        assert all(n > 100 for n in counts), "axis lines not drawn: %r pixels per axis colour" % counts
        # a sample posted while one the user picked is plotted keeps the plot and the selection
        c.post(body_of(device_name="dev-c", phase=4), "idle")
        wait_until(page, "document.getElementById('total').textContent === '5'")
        assert page.get_attribute('#samples tr[data-sample-id="3"]', "class") == "selected"
        assert page.evaluate("[window.uingestDashboard.state.selected, window.uingestDashboard.plotted]") == [3, 3]

        # an accelerometer and a gyro (6 axes, two units, gravity on accZ): a new page opens with it
        # plotted, 6 panels each on its own range, and fits the window
        c.post(wobble_body(IMU6), "shake")
        wait_until(page, "document.getElementById('total').textContent === '6'")
        assert page.evaluate("window.uingestDashboard.plotted") == 3
        page.check("#follow")  # following again: the newest is plotted
        wait_until(page, "window.uingestDashboard.plotted === 6")
        check_panels_and_layout(page, tmp_path / "dashboard.png", IMU6)

        # without a key, the page asks for one; then it opens with the newest sample plotted
        page2 = page.context.browser.new_page(viewport=VIEWPORT)
        page2.on("pageerror", lambda e: errors.append(str(e)))
        page2.goto(srv.url + "/")
        page2.wait_for_selector("#keyform", state="visible", timeout=10000)
        page2.fill("#keyinput", API_KEY)
        page2.click("#keyform button")
        wait_until(page2, "document.getElementById('total').textContent === '6'")
        wait_until(page2, "window.uingestDashboard.plotted === 6")
        assert "shake" in page2.text_content("#plottitle")
        check_panels_and_layout(page2, tmp_path / "dashboard-open.png", IMU6)

        # many axes: a panel each still, taller page (it scrolls down), never wider
        many = [("ch%d" % i, "V") for i in range(12)]
        c.post(wobble_body(many, device_name="dev-12"), "many")
        wait_until(page2, "window.uingestDashboard.plotted === 7")
        layout = check_panels_and_layout(page2, tmp_path / "dashboard-12.png", many)
        assert layout["scrollHeight"] > layout["clientHeight"], layout
        # a one-axis sample: one panel
        c.post(wobble_body([("audio", "i16")], device_name="dev-mic"), "hum")
        wait_until(page2, "window.uingestDashboard.plotted === 8")
        check_panels_and_layout(page2, tmp_path / "dashboard-1.png", [("audio", "i16")])
        assert not errors, errors


def post_parts(c, parts):
    boundary = "dashboardboundary"
    out = b""
    for name, data in parts:
        out += b'--%s\r\nContent-Disposition: form-data; name="data"; filename="%s"\r\n\r\n%s\r\n' % (
            boundary.encode(),
            name.encode(),
            data,
        )
    out += b"--%s--\r\n" % boundary.encode()
    headers = {"Content-Type": "multipart/form-data; boundary=" + boundary, "x-api-key": API_KEY}
    status, _, reply = c.request("POST", "/api/training/files", out, headers)
    assert status == 200 and json.loads(reply)["success"], reply


def test_sample_view_shows_a_samples_label_files(server):
    """Boxes, key/value labels and structured labels (label files of the /files request) are in the sample
    records and shown as text in the sample view, for an image (not plotted) and for a message."""
    srv, c = server()
    boxes = [{"label": "cup", "x": 1, "y": 2, "width": 3, "height": 4}]
    segments = [{"label": "idle", "startIndex": 0, "endIndex": 19}, {"label": "wave", "startIndex": 20, "endIndex": 39}]
    doc = lambda t, k, v: json.dumps({"version": 1, "type": t, k: v}).encode()  # noqa: E731
    post_parts(
        c,
        [
            ("desk.png", b"\x89PNG\r\n\x1a\n" + bytes(20)),
            ("bounding_boxes.labels", doc("bounding-box-labels", "boundingBoxes", {"desk.png": boxes})),
        ],
    )
    post_parts(
        c,
        [
            ("session.cbor", body_of()),
            ("structured_labels.labels", doc("structured-labels", "structuredLabels", {"session.cbor": segments})),
            ("label_map.labels", doc("label-map-labels", "labels", {"session.cbor": {"place": "desk"}})),
        ],
    )
    status, body = c.get_json("/api/dashboard/samples")
    png, msg = body["samples"][1], body["samples"][0]
    assert (
        png["bounding_boxes"] == boxes
        and msg["structured_labels"] == segments
        and msg["label_map"] == {"place": "desk"}
    )
    assert c.get_json("/api/dashboard/samples/2")[1]["structured_labels"] == segments
    with dashboard_page(srv.url + "/?key=" + API_KEY, console_errors=False) as (page, errors):  # an image: 422
        wait_until(page, "document.querySelectorAll('#samples tbody tr').length === 2")
        page.click('#samples tr[data-sample-id="1"]')
        wait_until(page, "document.getElementById('plotinfo').textContent.includes('not a data acquisition')")
        assert page.locator("#labelinfo li").all_inner_texts() == ["bounding boxes: cup at (1, 2) 3x4"]
        page.click('#samples tr[data-sample-id="2"]')
        wait_until(page, "window.uingestDashboard.plotted === 2")
        assert page.locator("#labelinfo li").all_inner_texts() == [
            "label map: place = desk",
            "structured labels: rows 0-19 idle, rows 20-39 wave",
        ]
        assert not errors, errors


def test_an_index_line_holding_a_lone_surrogate_does_not_break_the_dashboard(tmp_path):
    """A sample stored before lone surrogates were refused ("d\\ud800" in its device name): the dashboard's JSON
    is ASCII, so every endpoint still answers (it answered 500 with a traceback for good)."""
    data = tmp_path / "data"
    (data / "training").mkdir(parents=True)
    (data / "training" / "idle.1.csv").write_text("timestamp,x\n0,1\n")
    line = (
        '{"sample_id":1,"file":"training/idle.1.csv","category":"training","label":"idle","device_name":"d\\ud800",'
        '"device_type":null,"sensors":null,"rows":null,"interval_ms":null,"signature":null,"sha256":"00",'
        '"file_name":"idle.1.csv","metadata":null,"received_at":"2026-12-01T00:00:00.000+00:00"}\n'
    )
    (data / "index.jsonl").write_text(line)
    srv = serve.ServerThread(serve.create_app(str(data), api_key=API_KEY)).start()
    try:
        for path in ("/api/dashboard/summary", "/api/dashboard/samples", "/api/dashboard/samples/1"):
            c = http.client.HTTPConnection("127.0.0.1", srv.port, timeout=10)
            c.request("GET", path, headers={"x-api-key": API_KEY})
            r = c.getresponse()
            body = r.read()
            assert r.status == (422 if path.endswith("/1") else 200), (path, r.status, body[:200])  # a CSV: 422
            json.loads(body)
            c.close()
    finally:
        srv.stop()


def test_a_unicode_label_is_shown_as_it_was_sent(server):
    """A label sent percent-encoded (as Edge Impulse's uploader and the board send one that is not plain ASCII)
    is shown in the page as the text it is: in the labels table, the samples table and the plot's title."""
    import urllib.parse

    srv, c = server()
    label = "caf\u00e9 \u2615 50%"
    headers = {
        "Content-Type": "application/cbor",
        "x-api-key": API_KEY,
        "x-file-name": urllib.parse.quote(label + ".1.cbor"),
        "x-label": urllib.parse.quote(label),
    }
    status, _, reply = c.request("POST", "/api/training/data", body_of(), headers)
    assert status == 200, reply
    with dashboard_page(srv.url + "/?key=" + API_KEY) as (page, errors):
        wait_until(page, "document.querySelectorAll('#samples tbody tr').length === 1")
        assert page.locator("#labels tbody tr td").all_inner_texts()[0] == label
        assert page.locator("#labels tbody tr").get_attribute("data-label") == label
        assert label in page.locator("#samples tbody tr").inner_text()
        page.click('#samples tr[data-sample-id="1"]')
        wait_until(page, "window.uingestDashboard.plotted === 1")
        assert page.text_content("#plottitle") == "Sample 1: %s (training)" % label
        assert not errors, errors


def test_axis_ticks_end_whatever_the_range():
    """A range of a few float steps (0.1 + 0.2 against 0.3, 1e20 and 16384 over it) made ticks() add a step that no
    longer moved its value, for ever: a sample like that froze every dashboard that followed the newest."""
    ranges = [[0.3, 0.1 + 0.2], [1.7e12, 1.7e12 + 0.000244], [1e20, 1e20 + 16384], [0, 10], [-5, 5]]
    script = os.path.join(os.path.dirname(__file__), "js", "dashboard_ticks.js")
    js = os.path.join(os.path.dirname(serve.__file__), "dashboard_assets", "dashboard.js")
    out = subprocess.run(
        ["node", script, js, json.dumps(ranges)], capture_output=True, text=True, timeout=10, check=True
    ).stdout.splitlines()
    found = [json.loads(line) for line in out]
    assert len(found) == len(ranges) and all(len(t) <= 51 for t in found), found
    assert found[3] == [0, 5, 10] and found[4] == [-5, 0, 5]
