"""No secret in any output: the suite's main scenarios run with distinctive API
keys, HMAC keys and a Wi-Fi password, and every log line, status line,
printed outcome, exception text and traceback they produce is searched for
them. The firmware runs on the MicroPython unix port; `uingest serve`,
`simulate`, `inspect` and `relay` run as the user runs them (subprocesses,
keys from the environment or the command line) or in-process with every log
record captured."""

import base64
import json
import logging
import os
import select
import signal
import socket
import subprocess
import sys
import time
import traceback

import pytest
import trustme

from conftest import ROOT
from uingest_tools import ingestion, simulate
from uingest_tools.loopback import free_port, start_serve
from uingest_tools.mpytools import unix_port_env
from uingest_tools.serve import ServerThread, create_app

MARK = "S3CR3T"  # in every secret: finds a secret cut short too
API_KEY = "ei_S3CR3T_api_7f1c9d2e4b"
HMAC_KEY = "hm4c-S3CR3T-5b8a0e61"
WIFI_PASSWORD = "w1f1-S3CR3T-pa55"
WRONG_API_KEY = "ei_S3CR3T_wrong_0b5e77"
WRONG_HMAC_KEY = "hm4c-S3CR3T-wrong-91c2"
SECRETS = (API_KEY, HMAC_KEY, WIFI_PASSWORD, WRONG_API_KEY, WRONG_HMAC_KEY)
BOARD = os.path.join(ROOT, "boards", "unix-sim")
PY = sys.executable


def encodings(secret):
    b = secret.encode()
    return [secret, b.hex(), base64.b64encode(b).decode(), repr(b)[2:-1]]


NEEDLES = [MARK, MARK.lower()] + [e for s in SECRETS for e in encodings(s)]


class Scan:
    """Collects (source, text) and finds secrets in them."""

    def __init__(self):
        self.texts = []

    def add(self, source, text):
        if isinstance(text, bytes):
            text = text.decode("utf-8", "replace")
        self.texts.append((source, text))
        return text

    def assert_clean(self, min_sources=1):
        assert len(self.texts) >= min_sources
        hits = [(src, n, text) for src, text in self.texts for n in NEEDLES if n in text]
        assert not hits, "secret found:\n" + "\n".join(
            "%s: %r in ...%s..." % (src, n, text[max(0, text.find(n) - 200) : text.find(n) + 100])
            for src, n, text in hits
        )


@pytest.fixture
def scan():
    return Scan()


def test_the_scan_finds_what_it_looks_for(scan):
    scan.add("control", "x-api-key: " + API_KEY[:10] + "...")
    scan.add("control", "key=" + HMAC_KEY.encode().hex())
    with pytest.raises(AssertionError, match="secret found"):
        scan.assert_clean()


@pytest.fixture
def logs(caplog):
    """Every log record of the in-process servers, tracebacks included, as caplog.text."""
    caplog.set_level(logging.DEBUG)
    return caplog


def run(args, scan, env_extra=None, stdin=None, timeout=60, cwd=None):
    """Run a command; its stdout and stderr go to the scan. Returns (rc, stdout, stderr)."""
    keys = ("UINGEST_API_KEY", "UINGEST_HMAC_KEY", "EI_API_KEY", "EI_HMAC_KEY")
    env = {k: v for k, v in os.environ.items() if k not in keys}
    env.update(env_extra or {})
    proc = subprocess.run(args, env=env, input=stdin, capture_output=True, text=True, timeout=timeout, cwd=cwd)
    name = " ".join(os.path.basename(a) for a in args[:4])
    scan.add(name + " (stdout)", proc.stdout)
    scan.add(name + " (stderr)", proc.stderr)
    return proc.returncode, proc.stdout, proc.stderr


def uingest(*args):
    return [PY, "-m", "uingest_tools.cli", *args]


def http_get(port, path, headers=None):
    import http.client

    c = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        c.request("GET", path, headers=headers or {})
        r = c.getresponse()
        body = r.read(2000) if not r.getheader("content-type", "").startswith("text/event-stream") else r.read(200)
        return r.status, body
    finally:
        c.close()


# --- the command-line tools against `uingest serve`, all as processes


def test_serve_simulate_inspect_relay_command_lines(scan, tmp_path, logs):
    data = tmp_path / "data"
    serve_log = tmp_path / "serve.log"
    keys = {"UINGEST_API_KEY": API_KEY, "UINGEST_HMAC_KEY": HMAC_KEY}
    with open(serve_log, "w") as log:
        srv = start_serve(
            "--data-dir",
            str(data),
            command=uingest("serve"),
            env=dict(os.environ, **keys),
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    port = srv.port
    try:
        url = "http://127.0.0.1:%d" % port
        sim = ["simulate", "--url", url, "--windows", "2", "--rows", "20"]
        # keys from the environment: accepted
        rc, out, _ = run(uingest(*sim, "--label", "idle", "--label", "wave"), scan, keys)
        assert rc == 0 and "4/4 windows accepted" in out, out
        # a wrong HMAC key on the command line: the server refuses the signature
        rc, out, _ = run(uingest(*sim, "--label", "idle", "--hmac-key", WRONG_HMAC_KEY), scan, keys)
        assert rc == 1 and "REJECTED 400 signature does not match" in out, out
        # a wrong API key: 401
        rc, out, _ = run(uingest(*sim, "--label", "idle", "--api-key", WRONG_API_KEY), scan, keys)
        assert rc == 1 and "REJECTED 401 Invalid API key" in out, out
        # no API key at all
        rc, _, err = run(uingest(*sim, "--label", "idle"), scan, {"UINGEST_HMAC_KEY": HMAC_KEY})
        assert rc == 2 and "API key is required" in err
        # the dashboard: the key in a header and in ?key= (the event stream), right and wrong
        assert http_get(port, "/api/dashboard/summary", {"x-api-key": API_KEY})[0] == 200
        assert http_get(port, "/api/dashboard/summary?key=" + WRONG_API_KEY)[0] == 401
        assert http_get(port, "/api/dashboard/events?key=" + API_KEY)[0] == 200
        assert http_get(port, "/api/dashboard/samples?key=%s&limit=x" % API_KEY)[0] == 400

        files = sorted(str(p) for p in data.rglob("*.cbor"))
        assert len(files) == 4
        rc, out, _ = run(uingest("inspect", "-q", *files), scan, {"UINGEST_HMAC_KEY": HMAC_KEY})
        assert rc == 0 and out.count("valid") >= 4, out
        rc, out, err = run(uingest("inspect", "-q", "--hmac-key", WRONG_HMAC_KEY, files[0]), scan)
        assert rc == 1 and "signature INVALID" in out + err
        rc, out, _ = run(uingest("inspect", "--json", "--hmac-key", HMAC_KEY, files[0]), scan)
        assert rc == 0 and json.loads(out)[0]
        not_a_message = tmp_path / "junk.cbor"
        not_a_message.write_bytes(API_KEY.encode())  # a file holding a key: its bytes are not echoed
        rc, _, err = run(uingest("inspect", str(not_a_message)), scan, {"UINGEST_HMAC_KEY": HMAC_KEY})
        assert rc == 1 and "not a data acquisition message" in err

        # relay what was collected to a second server (in-process, its logs captured)
        dest = ServerThread(create_app(str(tmp_path / "relayed"), api_key=API_KEY, hmac_key=HMAC_KEY)).start()
        try:
            relay = ["relay", "--data-dir", str(data), "--url", dest.url, "-v", "--retry-delay", "0.01"]
            rc, out, err = run(uingest(*relay), scan, {"UINGEST_API_KEY": API_KEY})
            assert rc == 0 and "uploaded 4" in out, out + err
            rc, out, err = run(uingest(*relay, "--api-key", WRONG_API_KEY), scan)
            assert rc in (0, 2), out + err  # all confirmed already, or refused before anything is sent
            (data / ".relay-wrong").mkdir()
            rc, out, err = run(uingest("relay", "--data-dir", str(data / ".relay-wrong"), "--url", dest.url), scan)
            assert rc == 2  # no key
            # a fresh state: every sample is sent with the wrong key: 401 stops the run
            for f in data.glob(".relay-*.jsonl"):
                f.unlink()
            rc, out, err = run(uingest(*relay, "--api-key", WRONG_API_KEY), scan)
            assert rc == 2 and "401" in err + out, out + err
        finally:
            dest.stop()
    finally:
        srv.send_signal(signal.SIGTERM)
        srv.wait(15)
    scan.add("uingest serve log", serve_log.read_text())
    scan.add("in-process server logs", logs.text)
    assert "POST /api/training/data 401" in serve_log.read_text()
    assert "GET /api/dashboard/summary 401" in serve_log.read_text()
    scan.assert_clean(min_sources=20)


# --- the whole app (firmware/main.py) on the unix port, with Wi-Fi


FAKE_NETWORK = """
# a WLAN for the unix port: up at each connect (the check right after it
# always sees it up), then dropped at every 4th check of a live link. So it
# drops and comes back however many checks the status lines add.
STA_IF = 0
class WLAN:
    def __init__(self, i):
        self.up = False
        self.fresh = False
        self.n = 0
    def active(self, on=None):
        return True
    def isconnected(self):
        if self.fresh:
            self.fresh = False
            return True
        if self.up:
            self.n += 1
            if self.n % 4 == 0:
                self.up = False
        return self.up
    def connect(self, ssid, password):
        self.up = True
        self.fresh = True
    def disconnect(self):
        self.up = False
    def status(self, what=None):
        return -58 if what == "rssi" else 1010
    def config(self, what):
        return b"\\x02\\x00\\x00\\x00\\x00\\x01"
"""


def app_config(d, url, **kw):
    cfg = {
        "board": "unix-sim",
        "wifi_ssid": "lab",
        "wifi_password": WIFI_PASSWORD,
        "api_key": API_KEY,
        "hmac_key": HMAC_KEY,
        "url": url,
        "labels": ["idle", "wave"],
        "window_ms": 100,
        "sample_rate_hz": 200,
        "timeout_ms": 2000,
    }
    cfg.update(kw)
    with open(os.path.join(d, "config.json"), "w") as f:
        json.dump(cfg, f)
    return cfg


def run_app(mpy, firmware, d, scan, windows=4, extra_path=(), stdin=b"", heap="128K"):
    env = unix_port_env(firmware, *extra_path, BOARD)
    args = [mpy.exe, "-X", "heapsize=" + heap, os.path.join(firmware, "main.py"), "config.json", str(windows)]
    proc = subprocess.run(args, cwd=d, env=env, input=stdin, capture_output=True, timeout=60)
    out = scan.add("app stdout", proc.stdout)
    err = scan.add("app stderr", proc.stderr)
    return proc.returncode, out, err


def test_app_with_wifi_labels_status_and_rejections(mpy, firmware, tmp_path, scan, logs):
    net = tmp_path / "net"
    net.mkdir()
    (net / "network.py").write_text(FAKE_NETWORK)
    srv = ServerThread(create_app(str(tmp_path / "data"), api_key=API_KEY, hmac_key=HMAC_KEY)).start()
    try:
        for i, (kw, needle) in enumerate(
            [
                ({}, "sent=4 "),  # Wi-Fi drops and comes back, windows go out
                ({"hmac_key": WRONG_HMAC_KEY}, "rejected (400): signature does not match"),
                ({"api_key": WRONG_API_KEY}, "rejected (401): Invalid API key"),
                ({"hmac_key": None}, "rejected (400): signature missing"),
            ]
        ):
            d = tmp_path / ("dev%d" % i)
            d.mkdir()
            app_config(str(d), srv.url, **kw)
            rc, out, err = run_app(mpy, firmware, str(d), scan, extra_path=[str(net)], stdin=b"status\nlabel wave\n")
            assert rc == 0, out + err
            assert needle in out and "wifi=up rssi=-58dBm" in out, out
            assert "label: now wave" in out
            for name in os.listdir(d / "queue" / "rejected"):
                scan.add("rejected/" + name, (d / "queue" / "rejected" / name).read_bytes())
    finally:
        srv.stop()
    scan.add("server logs", logs.text)
    scan.assert_clean(min_sources=8)


BROKEN_CONFIGS = [
    # (name, config text, a word the one-line problem holds)
    ("key without ei_", {"api_key": API_KEY[3:]}, "api_key"),
    ("hmac key a number", {"hmac_key": 12345678}, "hmac_key"),
    ("wifi password a list", {"wifi_password": [WIFI_PASSWORD]}, "wifi_password"),
    ("typo field holding a key", {"api-key": API_KEY}, "unknown field"),
    ("hmac key empty", {"hmac_key": ""}, "hmac_key"),
    ("wifi password a number", {"wifi_password": 31415926}, "wifi_password"),
]


def test_config_errors(mpy, firmware, tmp_path, scan):
    for i, (name, change, word) in enumerate(BROKEN_CONFIGS):
        d = tmp_path / ("c%d" % i)
        d.mkdir()
        app_config(str(d), "http://127.0.0.1:9", **change)
        rc, out, err = run_app(mpy, firmware, str(d), scan, windows=1)
        assert rc == 2 and word in out, (name, out, err)
    # not JSON at all, a key next to the syntax error
    d = tmp_path / "syntax"
    d.mkdir()
    (d / "config.json").write_text('{"board": "unix-sim", "api_key": "%s", "hmac_key": "%s"' % (API_KEY, HMAC_KEY))
    rc, out, err = run_app(mpy, firmware, str(d), scan, windows=1)
    assert rc == 2 and "not valid JSON" in out, out + err
    # the same on CPython (the firmware through the shim)
    from uingest import config as config_mod

    for _, change, _ in BROKEN_CONFIGS:
        cfg = {"board": "unix-sim", "api_key": API_KEY, "hmac_key": HMAC_KEY, "labels": ["a"]}
        cfg.update(change)
        with pytest.raises(config_mod.ConfigError) as e:
            config_mod.loads(json.dumps(cfg))
        scan.add(
            "ConfigError", str(e.value) + "\n" + repr(e.value) + "\n" + "".join(traceback.format_exception(e.value))
        )
    scan.assert_clean(min_sources=15)


CRASHING_BOARD = """
DEVICE_TYPE = "CRASHY"
def setup(config):
    raise RuntimeError("I2C bus stuck: no ACK from 0x68")
"""


def test_app_crashes_with_a_traceback(mpy, firmware, tmp_path, scan):
    # a board whose setup fails in a way the app does not expect: the traceback goes out as is
    crash = tmp_path / "crashboard"
    crash.mkdir()
    (crash / "board.py").write_text(CRASHING_BOARD)
    d = tmp_path / "dev"
    d.mkdir()
    app_config(str(d), "http://127.0.0.1:9")
    env = unix_port_env(firmware, str(crash))
    proc = subprocess.run(
        [mpy.exe, os.path.join(firmware, "main.py"), "config.json", "1"], cwd=d, env=env, capture_output=True
    )
    text = scan.add("board crash", proc.stdout + proc.stderr)
    assert proc.returncode == 1 and "Traceback" in text and "I2C bus stuck" in text, text

    # the queue folder cannot be made (a file is in the way): a traceback from the store
    d2 = tmp_path / "dev2"
    d2.mkdir()
    app_config(str(d2), "http://127.0.0.1:9", queue_dir="blocked")
    (d2 / "blocked").write_text("not a folder")
    rc, out, err = run_app(mpy, firmware, str(d2), scan, windows=1)
    assert rc == 1 and "Traceback" in out + err, out + err

    # a board setup error the app reports itself (OSError): one line
    d3 = tmp_path / "dev3"
    d3.mkdir()
    app_config(str(d3), "http://127.0.0.1:9", csv="missing.csv")
    rc, out, err = run_app(mpy, firmware, str(d3), scan, windows=1)
    assert rc == 3 and "board: " in out, out + err

    # the same crash on CPython, through the shim: the formatted traceback, with locals
    from uingest import app

    class Board:
        DEVICE_TYPE = "CRASHY"

        @staticmethod
        def setup(config):
            raise RuntimeError("I2C bus stuck: no ACK from 0x68")

    lines = []
    with pytest.raises(RuntimeError) as e:
        app.main(str(d / "config.json"), max_windows=1, board=Board, log=lines.append)
    scan.add("CPython traceback", "".join(traceback.format_exception(e.value)))
    tb = traceback.TracebackException.from_exception(e.value, capture_locals=True)
    # locals do hold the config (cfg): a traceback printed with locals would show the keys; the
    # app never prints one that way, and this checks the scan would catch it if it did
    assert any(API_KEY in line for line in tb.format())
    scan.add("app log", "\n".join(lines))
    scan.assert_clean(min_sources=5)


# --- the simulator's firmware crashing, and TLS failures


def test_simulator_crashes_and_tls_failures(firmware, tmp_path, scan, logs):
    # the firmware stops with a traceback: an API key it cannot send, a bad URL
    for settings in (
        {"url": "http://127.0.0.1:9", "api_key": API_KEY + "\u00e9", "hmac_key": HMAC_KEY, "labels": ["idle"]},
        {"url": "ftp://127.0.0.1/", "api_key": API_KEY, "hmac_key": HMAC_KEY, "labels": ["idle"]},
        {"url": "http://127.0.0.1:9", "api_key": API_KEY, "hmac_key": HMAC_KEY, "labels": ["bad\nlabel"]},
    ):
        rc, summary, lines = simulate.run(dict(settings, windows=1, rows=10), firmware_dir=firmware, timeout=60)
        text = scan.add("simulate crash", "\n".join(lines))
        assert rc == 1 and summary is None and "Traceback" in text, text

    # https with a CA that did not sign the server's certificate
    d = tmp_path / "pki"
    d.mkdir()
    ca, wrong = trustme.CA(), trustme.CA()
    ca.issue_cert("127.0.0.1").private_key_and_cert_chain_pem.write_to_path(str(d / "server.pem"))
    wrong.cert_pem.write_to_path(str(d / "wrong.pem"))
    srv = ServerThread(
        create_app(str(tmp_path / "data"), api_key=API_KEY, hmac_key=HMAC_KEY), ssl_certfile=str(d / "server.pem")
    ).start()
    try:
        settings = {
            "url": srv.url,
            "api_key": API_KEY,
            "hmac_key": HMAC_KEY,
            "labels": ["idle"],
            "windows": 1,
            "rows": 10,
            "ca_file": str(d / "wrong.pem"),
            "retries": 1,
            "retry_delay_ms": 10,
        }
        rc, summary, lines = simulate.run(settings, heap="256K", firmware_dir=firmware, timeout=60)
        text = scan.add("simulate TLS", "\n".join(lines))
        assert summary["failed"] == 1 and "TLS certificate verification failed" in text, text
    finally:
        srv.stop()
    scan.add("server logs", logs.text)
    scan.assert_clean(min_sources=5)


# --- the server: request logs, an internal error's traceback, start-up failures


def test_server_logs_and_internal_error_traceback(tmp_path, scan, logs, monkeypatch):
    import http.client

    def broken(*a, **kw):
        raise RuntimeError("disk on fire")

    srv = ServerThread(create_app(str(tmp_path / "data"), api_key=API_KEY, hmac_key=HMAC_KEY)).start()
    try:

        def post(body, key, path="/api/training/data", **h):
            c = http.client.HTTPConnection("127.0.0.1", srv.port, timeout=10)
            headers = {"x-api-key": key, "Content-Type": "application/cbor", "x-file-name": "a.cbor"}
            headers.update(h)
            c.request("POST", path, body=body, headers=headers)
            r = c.getresponse()
            reply = scan.add("reply %d" % r.status, r.read())
            c.close()
            return r.status, reply

        assert post(b"\x00", API_KEY)[0] == 400
        assert post(b"\x00", WRONG_API_KEY)[0] == 401
        assert post(b"\x00", API_KEY, **{"x-label": "a/b"})[0] == 400
        assert post(b"\x00", API_KEY, **{"x-metadata": "[" + WIFI_PASSWORD})[0] == 400
        assert post(b"\x00", API_KEY, **{"Content-Type": "text/plain"})[0] == 415
        assert post(b"\x00", API_KEY, path="/api/nope/data")[0] == 404
        monkeypatch.setattr(ingestion, "validate_message", broken)
        status, reply = post(b"\xa0", API_KEY, **{"x-label": "idle"})
        assert (status, reply) == (500, "internal server error")
        deadline = time.monotonic() + 5
        while "disk on fire" not in logs.text and time.monotonic() < deadline:
            time.sleep(0.01)
    finally:
        srv.stop()
    text = scan.add("server logs", logs.text)
    assert "Traceback" in text and "disk on fire" in text  # the traceback was logged
    scan.assert_clean(min_sources=6)


def test_serve_start_up_failures(tmp_path, scan):
    base = ["serve", "--data-dir", str(tmp_path / "data"), "--api-key", API_KEY, "--hmac-key", HMAC_KEY]
    # a certificate file that is not there: one line (it was uvicorn's traceback)
    rc, _, err = run(uingest(*base, "--port", str(free_port()), "--ssl-certfile", str(tmp_path / "none.pem")), scan)
    assert rc == 2 and "Traceback" not in err and err.count("\n") == 1 and "--ssl-certfile" in err, err
    # the port is taken
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen(1)
        rc, _, err = run(uingest(*base, "--port", str(s.getsockname()[1])), scan, timeout=30)
    assert rc != 0, err
    # usage errors
    rc, _, err = run(uingest(*base, "--max-body", "lots"), scan)
    assert rc == 2 and "max-body" in err
    rc, _, err = run(uingest(*base, "--ssl-keyfile", "k.pem"), scan)
    assert rc == 2
    scan.assert_clean(min_sources=8)


def test_status_lines_while_the_server_is_down(mpy, firmware, tmp_path, scan):
    """The app keeps windows on flash while nothing answers; its status and
    retry lines, read as they come."""
    d = tmp_path / "dev"
    d.mkdir()
    app_config(str(d), "http://127.0.0.1:%d" % free_port(), timeout_ms=300)
    env = unix_port_env(firmware, BOARD)
    proc = subprocess.Popen(
        [mpy.exe, "-X", "heapsize=128K", os.path.join(firmware, "main.py"), "config.json", "3"],
        cwd=d,
        env=env,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    proc.stdin.write(b"status\nlabel nope\nhelp\n")
    proc.stdin.flush()
    out = b""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if select.select([proc.stdout], [], [], 0.5)[0]:
            chunk = os.read(proc.stdout.fileno(), 65536)
            if not chunk:
                break
            out += chunk
    proc.wait(10)
    text = scan.add("app, server down", out)
    assert "will retry: connection refused" in text and "queued=3" in text, text
    assert "is not one of idle,wave" in text and "commands:" in text
    scan.assert_clean()
