"""uingest.config: the committed template is valid; each broken config stops
the app with one line that names the problem, and secrets never show."""

import json
import os
import subprocess

import pytest

from conftest import FIRMWARE, ROOT
from label_cases import LABEL_CASES, ids
from uingest import app, config
from uingest_tools.mpytools import unix_port_env

TEMPLATE = os.path.join(FIRMWARE, "config.example.json")
API_KEY = "ei_secret_api_key_987"
HMAC_KEY = "secret_hmac_key_654"
WIFI_PASSWORD = "secret_wifi_pw_321"

GOOD = {
    "board": "unix-sim",
    "api_key": API_KEY,
    "hmac_key": HMAC_KEY,
    "wifi_password": WIFI_PASSWORD,
    "labels": ["idle", "wave"],
    "ca_file": "ca.der",  # the default url is https
}


def test_template_is_valid_and_commented():
    with open(TEMPLATE) as f:
        text = f.read()
    assert "//" in text
    cfg = config.loads(text)
    assert cfg["labels"] == ["idle", "wave"] and cfg["label"] == "idle" and cfg["format"] == "cbor"


def test_defaults():
    cfg = config.loads(json.dumps(GOOD))
    assert cfg["url"] == "https://ingestion.edgeimpulse.com" and cfg["category"] == "training"
    assert cfg["label"] == "idle" and cfg["window_ms"] == 2000 and cfg["sample_rate_hz"] == 100
    assert API_KEY not in config.describe(cfg) and HMAC_KEY not in config.describe(cfg)


def broken(**changes):
    c = dict(GOOD)
    for k, v in changes.items():
        if v is DELETE:
            c.pop(k)
        else:
            c[k] = v
    return json.dumps(c)


DELETE = object()

BROKEN = [
    ("not json", '{"board": ', "not valid JSON"),
    ("top level list", "[1, 2]", "JSON object"),
    ("no board", broken(board=DELETE), "missing board"),
    ("board not a name", broken(board=5), "board: expected"),
    ("board path", broken(board="../x"), "board: expected"),
    ("no api key", broken(api_key=DELETE), "missing api_key"),
    ("api key not ei_", broken(api_key="abc123"), "api_key: expected"),
    ("hmac key empty", broken(hmac_key=""), "hmac_key: expected"),
    ("url scheme", broken(url="ftp://example.com"), "url: expected"),
    ("url empty port", broken(url="http://192.168.1.20:"), "url: expected"),
    ("url port not a number", broken(url="http://192.168.1.20:48l0"), "url: expected"),
    ("url port with a sign", broken(url="http://192.168.1.20:+4810"), "url: expected"),
    ("url port too big", broken(url="http://192.168.1.20:70000"), "url: expected"),
    ("url no host", broken(url="http://:4810"), "url: expected"),
    ("api key with a newline", broken(api_key="ei_abc\n"), "api_key: expected"),
    ("api key not ASCII", broken(api_key="ei_abc\u00e9"), "api_key: expected"),
    ("hmac key with a control character", broken(hmac_key="k\x1b[2J"), "hmac_key: expected"),
    ("category", broken(category="train"), "category: expected one of training, testing, anomaly"),
    ("no labels", broken(labels=DELETE), "missing labels"),
    ("labels empty", broken(labels=[]), "labels: expected"),
    ("label with newline", broken(labels=["idle\n"]), "labels: 'idle\\n' is refused: label must not contain control"),
    ("label not a string", broken(labels=["idle", 5]), "labels: 5 is not a string"),
    ("label not listed", broken(label="run"), "label: expected one of the labels"),
    ("format", broken(format="xml"), "format: expected 'cbor' or 'json'"),
    ("window_ms negative", broken(window_ms=-5), "window_ms: expected"),
    ("window_ms float", broken(window_ms=2.5), "window_ms: expected"),
    ("rate zero", broken(sample_rate_hz=0), "sample_rate_hz: expected"),
    ("rate string", broken(sample_rate_hz="100"), "sample_rate_hz: expected"),
    ("fractional rows", broken(window_ms=15, sample_rate_hz=100), "whole number of samples"),
    ("insecure string", broken(insecure="yes"), "insecure: expected true"),
    ("budget zero", broken(queue_budget_bytes=0), "queue_budget_bytes: expected"),
    ("record_to_flash word", broken(record_to_flash="sometimes"), "record_to_flash: expected true to record"),
    ("watchdog negative", broken(wdt_timeout_ms=-1), "wdt_timeout_ms: expected watchdog timeout in milliseconds"),
    ("https without a CA file", broken(ca_file=DELETE), "ca_file: an https url needs the server's CA certificate"),
    ("CA file not on the device", json.dumps(GOOD), "ca_file: ca.der is not on the device"),
    ("typo field", broken(sample_rate=100), "unknown field sample_rate"),
    ("wifi password not string", broken(wifi_password=12345678), "wifi_password: expected"),
    ("accel range", broken(accel_range_g=3), "accel_range_g: expected the accelerometer range: 2, 4, 8 or 16"),
    ("i2c address", broken(imu_addr=300), "imu_addr: expected"),
    ("csv sensors", broken(sensors=[["a"]]), "sensors: expected"),
]


def test_no_ca_file_is_fine_over_http_or_when_told_to_skip_checks():
    assert config.loads(broken(ca_file=DELETE, url="http://192.168.1.20:4810"))["ca_file"] is None
    assert config.loads(broken(ca_file=DELETE, insecure=True))["insecure"] is True


def test_the_ca_file_must_be_on_the_device(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "config.json").write_text(json.dumps(GOOD))
    with pytest.raises(config.ConfigError) as e:
        config.load()
    assert e.value.problems == [
        "config: ca_file: ca.der is not on the device (uingest deploy copies it from next to the config)"
    ]
    (tmp_path / "ca.der").write_bytes(b"0")
    assert config.load()["ca_file"] == "ca.der"


def test_an_http_url_never_reads_the_named_ca_file(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "config.json").write_text(broken(url="http://192.168.1.20:4810"))  # names ca.der, not there
    assert config.load()["ca_file"] == "ca.der"


def test_a_watchdog_timeout_of_0_means_none():
    assert config.loads(broken(wdt_timeout_ms=0))["wdt_timeout_ms"] == 0


def test_board_options_are_kept_only_when_given():
    cfg = config.loads(broken(gyro=True, accel_range_g=8))
    assert cfg["gyro"] is True and cfg["accel_range_g"] == 8 and "imu_addr" not in cfg and "csv" not in cfg


@pytest.mark.parametrize("name,text,problem", BROKEN, ids=[b[0] for b in BROKEN])
def test_broken_config_one_line_cpython(tmp_path, name, text, problem):
    path = tmp_path / "config.json"
    path.write_text(text)
    lines = []
    assert app.main(str(path), max_windows=1, log=lines.append) == 2
    assert len(lines) == 1, lines
    assert problem in lines[0] and lines[0].startswith("config: ")
    for secret in (API_KEY, HMAC_KEY, WIFI_PASSWORD, "12345678", "abc123"):
        assert secret not in lines[0]


def test_broken_configs_on_micropython(mpy, tmp_path):
    """The same configs through firmware/main.py on the real unix port: exit 2,
    one line, nothing sampled."""
    for i, (name, text, problem) in enumerate(BROKEN):
        d = tmp_path / str(i)
        d.mkdir()
        (d / "config.json").write_text(text)
        env = unix_port_env(FIRMWARE)
        proc = subprocess.run(
            [mpy.exe, os.path.join(FIRMWARE, "main.py"), "config.json", "1"],
            cwd=d,
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        out = proc.stdout.strip().split("\n")
        assert proc.returncode == 2, (name, proc.stdout, proc.stderr)
        assert len(out) == 1 and problem in out[0], (name, out)
        for secret in (API_KEY, HMAC_KEY, WIFI_PASSWORD, "12345678", "abc123"):
            assert secret not in proc.stdout + proc.stderr
        assert not (d / "queue").exists()  # stopped before setting anything up


def test_missing_config_file(tmp_path):
    lines = []
    assert app.main(str(tmp_path / "nope.json"), log=lines.append) == 2
    assert len(lines) == 1 and "config.example.json" in lines[0]


def test_real_config_is_git_ignored():
    with open(os.path.join(ROOT, ".gitignore")) as f:
        assert "firmware/config.json" in f.read().split()


@pytest.mark.parametrize("label,stripped,reason", LABEL_CASES, ids=ids())
def test_labels_follow_the_services_rule(label, stripped, reason):
    # the rule the collector and the headers apply (a label that is not plain ASCII goes percent-encoded): a
    # config the app can start with posts every window
    if stripped is not None:
        assert config.loads(broken(labels=[label, "wave"]))["labels"] == [label, "wave"]
    else:
        with pytest.raises(config.ConfigError) as e:
            config.loads(broken(labels=[label, "wave"]))
        # the reason: the service's rule, else the header's printable ASCII
        why = "%r is refused: %s" % (label, reason or "x-label: only printable ASCII is allowed in a header")
        assert [p for p in e.value.problems if "labels: " + why in p], e.value.problems


# --- where a problem is, and what was meant


def template_with(old, new):
    """The commented template with one line changed; (its text, the 1-based line number changed)."""
    with open(TEMPLATE) as f:
        lines = f.read().split("\n")
    (n,) = [i for i, line in enumerate(lines) if old in line]
    lines[n] = lines[n].replace(old, new)
    return "\n".join(lines), n + 1


def problems_of(text):
    with pytest.raises(config.ConfigError) as e:
        config.loads(text)
    return e.value.problems


def test_a_field_problem_names_its_line_in_the_commented_file():
    text, n = template_with('"sample_rate_hz": 100', '"sample_rate_hz": 0')
    assert n > 20 and text.split("\n")[n - 1].strip() == '"sample_rate_hz": 0,'  # below many comment lines
    assert problems_of(text)[0].startswith("config: line %d: sample_rate_hz: expected" % n)


def test_a_json_syntax_error_names_its_line_in_the_commented_file():
    # CPython's json gives the position (MicroPython's gives none): comments count as lines
    text, n = template_with('"format": "cbor",', '"format": "cbor"')  # the missing comma shows on the next key
    next_key = next(i for i, line in enumerate(text.split("\n")[n:], n + 1) if line.strip().startswith('"'))
    (problem,) = problems_of(text)
    assert problem.startswith("config: not valid JSON (") and ": line %d column " % next_key in problem, problem


@pytest.mark.parametrize(
    "typo, meant",
    [
        ("sample_rate", "sample_rate_hz"),  # a prefix
        ("sample_rate_Hz", "sample_rate_hz"),
        ("lables", "labels"),
        ("wifi_pasword", "wifi_password"),
        ("windows_ms", "window_ms"),
        ("ca_fil", "ca_file"),
        ("gyro_range", "gyro_range_dps"),  # not gyro, which it also starts with
    ],
)
def test_a_typo_names_the_closest_field(typo, meant):
    text, n = template_with('"window_ms": 2000,', '"window_ms": 2000, "%s": 1,' % typo)
    assert problems_of(text) == ["config: line %d: unknown field %s (did you mean %s?)" % (n, typo, meant)]


def test_a_field_like_no_other_lists_them_all():
    (problem,) = problems_of(broken(colour="blue"))
    assert problem.startswith("config: line 1: unknown field colour (known: accel_range_g, api_key, ")


def test_line_typo_and_label_reason_on_micropython(mpy, tmp_path):
    """The same messages from firmware/main.py on the real unix port."""
    cases = [
        (template_with('"sample_rate_hz": 100', '"sample_rate": 100'), "unknown field sample_rate (did you mean "),
        (template_with('"labels": ["idle", "wave"]', '"labels": ["idle", "a/b"]'), "labels: 'a/b' is refused: "),
    ]
    for i, ((text, n), problem) in enumerate(cases):
        d = tmp_path / str(i)
        d.mkdir()
        (d / "config.json").write_text(text.replace('"board": "esp32-devkitc-mpu6050"', '"board": "unix-sim"'))
        proc = subprocess.run(
            [mpy.exe, os.path.join(FIRMWARE, "main.py"), "config.json", "1"],
            cwd=d,
            env=unix_port_env(FIRMWARE),
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert proc.returncode == 2, proc.stdout + proc.stderr
        assert proc.stdout.startswith("config: line %d: %s" % (n, problem)), proc.stdout
