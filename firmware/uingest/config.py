# The device's config.json: loaded, defaulted and validated at boot. Every
# problem is one line naming the field and what is expected; the app does not
# start sampling while any remain. Secrets are never echoed.
import json

from .ingest import CONTENT_TYPES, DATA_CATEGORIES, DEFAULT_URL, check_label

SECRETS = ("api_key", "hmac_key", "wifi_password")

# A default of REQUIRED means the field must be given; OPTIONAL, that the
# field is left out unless given (board options: the board has the default).
REQUIRED = object()
OPTIONAL = object()
# (name, default, kind, what is expected), in the order problems are reported
FIELDS = (
    ("board", REQUIRED, "name", "the board's folder name under boards/, e.g. 'esp32-devkitc-mpu6050'"),
    ("wifi_ssid", "", "str", "the Wi-Fi network name (a string; empty on boards without Wi-Fi)"),
    ("wifi_password", "", "str", "the Wi-Fi password (a string)"),
    ("api_key", REQUIRED, "secret", "the project's API key, printable ASCII starting with 'ei_'"),
    ("hmac_key", None, "secret?", "the project's HMAC key (printable ASCII), or null to send unsigned"),
    ("url", DEFAULT_URL, "url", "the ingestion service base URL, http://host[:port] or https://host[:port]"),
    ("category", "training", "category", "one of " + ", ".join(DATA_CATEGORIES)),
    (
        "labels",
        REQUIRED,
        "labels",
        'a non-empty list of labels (no control characters, / or \\, no leading ., <= 128 bytes), e.g. ["idle"]',
    ),
    ("label", None, "label?", "one of the labels (default: the first)"),
    ("format", "cbor", "format", "'cbor' or 'json'"),
    ("window_ms", 2000, "posint", "the window length in milliseconds, a positive integer"),
    ("sample_rate_hz", 100, "posnum", "samples per second, a positive number"),
    ("device_name", None, "str?", "a name unique to this device (default: its MAC address)"),
    ("ca_file", None, "str?", "a CA certificate file on the device for https, or null"),
    ("insecure", False, "bool", "true to skip TLS certificate checks (not recommended), else false"),
    ("timeout_ms", 10000, "posint", "network timeout in milliseconds, a positive integer"),
    ("queue_dir", "queue", "str", "folder on flash for windows waiting to be sent"),
    ("queue_budget_bytes", 262144, "posint", "the most bytes the queue may use on flash, a positive integer"),
    (
        "record_to_flash",
        "auto",
        "auto",
        "true to record each window to a file on flash (windows bigger than the heap), false to keep it in RAM, "
        'or "auto" (flash when a window needs more than a quarter of the free heap)',
    ),
    (
        "mode",
        "stream",
        "mode",
        "'stream' (sample and send windows), 'remote' (record only what Studio or uingest serve asks for) or 'both'",
    ),
    (
        "remote_url",
        "wss://remote-mgmt.edgeimpulse.com",
        "wsurl",
        "the remote management URL, ws://host[:port] or wss://...",
    ),
    # absent when not given (JSON): a key less in the config dict the app holds
    ("remote_format", OPTIONAL, "format", "'json' or 'cbor': the remote management session's encoding"),
    # board options, read by boards/<name>/board.py setup()
    ("gyro", OPTIONAL, "bool", "true to add the IMU's gyroscope axes, else false"),
    ("accel_range_g", OPTIONAL, "g", "the accelerometer range: 2, 4, 8 or 16 (g)"),
    ("gyro_range_dps", OPTIONAL, "dps", "the gyroscope range: 250, 500, 1000 or 2000 (degrees/s)"),
    ("imu_addr", OPTIONAL, "i2c", "the IMU's I2C address, 0..127 (0x68 = 104 by default)"),
    ("audio_shift", OPTIONAL, "shift", "bits to drop from the microphone's 32-bit samples, 8..16"),
    (
        "wdt_timeout_ms",
        OPTIONAL,
        "ms0",
        "watchdog timeout in milliseconds, a positive integer (0: no watchdog, while developing)",
    ),
    ("csv", OPTIONAL, "str", "unix-sim: a CSV file to replay instead of the synthetic sensor"),
    ("audio", OPTIONAL, "bool", "unix-sim: true for a synthetic int16 tone instead of the accelerometer"),
    ("sensors", OPTIONAL, "sensors", "unix-sim CSV: a list of [name, units] pairs"),
)


class ConfigError(ValueError):
    """str() is every problem, one per line."""

    def __init__(self, problems):
        super().__init__("\n".join(problems))
        self.problems = problems


def strip_comments(text):
    # config.json may carry // comment lines (the template does): JSON has
    # none. Each becomes an empty line, so that line numbers stay the file's.
    return "\n".join("" if line.lstrip().startswith("//") else line for line in text.split("\n"))


def _label_problem(v):
    # why v cannot be a label, or None: the service's label rule, any text it
    # takes (ingest.headers() percent-encodes what is not plain ASCII)
    if not isinstance(v, str):
        return "%r is not a string" % (v,)
    try:
        check_label(v)
    except ValueError as e:
        return "%r is refused: %s" % (v, e)
    return None


def _closest(name, known):
    # the known field a typo most likely meant (edit distance at most 2, or
    # one name the start of the other: the nearer of those), or None
    best, best_d = None, (3, 0)
    for k in known:
        prev = list(range(len(k) + 1))
        for i, a in enumerate(name):
            cur = [i + 1]
            for j, b in enumerate(k):
                cur.append(min(prev[j + 1] + 1, cur[j] + 1, prev[j] + (a != b)))
            prev = cur
        e = prev[-1]
        d = (1, e) if len(name) > 3 and (k.startswith(name) or name.startswith(k)) else (e, e)
        if d < best_d:
            best, best_d = k, d
    return best


def _line(text, name):
    # "line N: " where the field's key is in text (comments blanked), or ""
    i = text.find('"%s"' % name) if text else -1
    return "line %d: " % (text.count("\n", 0, i) + 1) if i >= 0 else ""


def _check(name, kind, v):
    """True when v is acceptable for kind, else False or why not (a label's reason)."""
    if kind.endswith("?"):
        if v is None:
            return True
        kind = kind[:-1]
    if kind in ("str", "name"):
        return isinstance(v, str) and (kind == "str" or (v and "/" not in v and ".." not in v))
    if kind == "secret":
        # printable ASCII: a key goes in a header, and the HMAC is over its bytes
        ok = isinstance(v, str) and len(v) > 0 and (name != "api_key" or v.startswith("ei_"))
        return ok and all(0x20 <= c <= 0x7E for c in v.encode())
    if kind == "url":
        from .http import parse_url

        try:
            return isinstance(v, str) and bool(parse_url(v))
        except ValueError:  # no scheme, no host, a port that is not 1..65535
            return False
    if kind == "mode":
        return v in ("stream", "remote", "both")
    if kind == "wsurl":
        return (
            isinstance(v, str)
            and (v.startswith("ws://") or v.startswith("wss://"))
            and _check(name, "url", "http" + v[2:])
        )
    if kind == "category":
        return v in DATA_CATEGORIES
    if kind == "format":
        return v in CONTENT_TYPES
    if kind == "labels":
        if not isinstance(v, list) or not v:
            return False
        for x in v:
            why = _label_problem(x)
            if why:
                return why
        return True
    if kind == "label":
        return _label_problem(v) or True
    if kind == "bool":
        return v is True or v is False
    if kind == "auto":
        return v is True or v is False or v == "auto"
    if kind in ("posint", "ms0"):
        return isinstance(v, int) and not isinstance(v, bool) and (v > 0 or (kind == "ms0" and v == 0))
    if kind in ("g", "dps", "i2c", "shift"):
        if not isinstance(v, int) or isinstance(v, bool):
            return False
        if kind == "g":
            return v in (2, 4, 8, 16)
        if kind == "dps":
            return v in (250, 500, 1000, 2000)
        return 0 <= v <= 127 if kind == "i2c" else 8 <= v <= 16
    if kind == "sensors":
        return (
            isinstance(v, list)
            and len(v) > 0
            and all(isinstance(p, list) and len(p) == 2 and isinstance(p[0], str) and isinstance(p[1], str) for p in v)
        )
    if kind == "posnum":
        return isinstance(v, (int, float)) and not isinstance(v, bool) and v > 0
    return False


def validate(raw, text=None):
    """(config dict with defaults filled in, list of problems); text: the
    JSON it came from (comments blanked), for the line of each field."""
    problems = []
    if not isinstance(raw, dict):
        return None, ["config: expected a JSON object {...} at the top level"]
    cfg = {}
    for name, default, kind, expected in FIELDS:
        if name not in raw or (raw[name] is None and default is not REQUIRED and not kind.endswith("?")):
            if default is OPTIONAL:
                continue
            if default is REQUIRED:
                problems.append("config: missing %s: %s" % (name, expected))
                continue
            cfg[name] = default
            continue
        v = raw[name]
        ok = _check(name, kind, v)
        if ok is not True:
            shown = "(hidden)" if name in SECRETS else repr(v)
            why = ok or "expected %s, got %s" % (expected, shown)
            problems.append("config: %s%s: %s" % (_line(text, name), name, why))
            continue
        cfg[name] = v
    known = [f[0] for f in FIELDS]
    for name in raw:
        if name not in known and not name.startswith("_"):
            near = _closest(name, known)
            hint = "did you mean %s?" % near if near else "known: " + ", ".join(sorted(known))
            problems.append("config: %sunknown field %s (%s)" % (_line(text, name), name, hint))
    if not problems:
        if cfg["label"] is None:
            cfg["label"] = cfg["labels"][0]
        elif cfg["label"] not in cfg["labels"]:
            problems.append(
                "config: %slabel: expected one of the labels %s, got %r"
                % (_line(text, "label"), cfg["labels"], cfg["label"])
            )
        if cfg["url"].startswith("https://") and not cfg["ca_file"] and not cfg["insecure"]:
            problems.append(
                "config: %sca_file: an https url needs the server's CA certificate in a file on the device "
                "(MicroPython has no built-in list): `uingest ca %s` gets it; name the file here"
                % (_line(text, "url"), cfg["url"])
            )
        if cfg["mode"] != "stream" and cfg["remote_url"].startswith("wss://") and not cfg["ca_file"]:
            if not cfg["insecure"]:
                problems.append("config: ca_file: a wss remote_url needs its CA certificate in ca_file too")
        rows = cfg["window_ms"] * cfg["sample_rate_hz"] / 1000
        if rows < 1 or rows != int(rows):
            problems.append(
                "config: %swindow_ms: window_ms x sample_rate_hz / 1000 must be a whole number of samples, got %s"
                % (_line(text, "window_ms"), rows)
            )
    return cfg, problems


def loads(text):
    """Parse and validate config text; raises ConfigError listing every problem."""
    text = strip_comments(text)
    try:
        raw = json.loads(text)
    except ValueError as e:
        raise ConfigError(["config: not valid JSON (%s)" % (str(e) or "syntax error")])
    cfg, problems = validate(raw, text)
    if problems or cfg is None:
        raise ConfigError(problems)
    return cfg


def load(path="config.json"):
    """loads() of the file, and the CA file it names must be on the device."""
    try:
        with open(path) as f:
            text = f.read()
    except OSError:
        raise ConfigError(["config: cannot read %s: copy config.example.json there and fill it in" % path])
    cfg = loads(text)
    if cfg["ca_file"] and cfg["url"].startswith("https://") and not cfg["insecure"]:
        import os

        try:
            os.stat(cfg["ca_file"])
        except OSError:
            raise ConfigError(
                [
                    "config: ca_file: %s is not on the device (uingest deploy copies it from next to the config)"
                    % cfg["ca_file"]
                ]
            )
    return cfg


def describe(cfg):
    """A one-line summary for the status output, secrets masked."""
    return "board=%s url=%s category=%s labels=%s label=%s format=%s window_ms=%d rate=%sHz signed=%s" % (
        cfg["board"],
        cfg["url"],
        cfg["category"],
        ",".join(cfg["labels"]),
        cfg["label"],
        cfg["format"],
        cfg["window_ms"],
        cfg["sample_rate_hz"],
        "yes" if cfg["hmac_key"] else "no",
    )
