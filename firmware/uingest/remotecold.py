# The cold path of a remote management session (uingest.remote): the hello,
# made once when the session is set up, a refused hello, a sample request's
# checks and its last reply. Loaded
# when needed, and unloaded right after: held, it would cost the heap of every
# board in remote mode for as long as the app runs.
import json

from . import http
from .ingest import DATA_CATEGORIES, check_label


def hello(r, arg):
    """(the hello as JSON text, the name of the board's one sensor entry, the
    longest recording in rows: the RAM window's rows, or with to_flash what
    the queue's budget holds) for r (a remote.Remote); arg: (cfg, rows,
    to_flash)."""
    cfg, rows, to_flash = arg
    app = r.app
    s = app.hw.sensor
    if to_flash:
        if cfg["format"] == "cbor":
            from .cbor import max_row_bytes
        else:
            from .jsonw import max_row_bytes
        rows = (cfg["queue_budget_bytes"] - 2048) // max_row_bytes(len(s.sensors), getattr(s, "typecode", "f"))
    # named by the axes' kinds as Edge Impulse names them ("Accelerometer +
    # gyroscope"), else by the axes
    names = [n for n, _ in s.sensors]
    kinds = []
    for n in names:
        k = (
            "Accelerometer"
            if n[:3] == "acc"
            else "gyroscope"
            if n[:3] == "gyr"
            else "Microphone"
            if n == "audio"
            else None
        )
        if k is None:
            kinds = names
            break
        if k not in kinds:
            kinds.append(k)
    name = " + ".join(kinds)
    rate = cfg["sample_rate_hz"]
    d = json.dumps
    text = (
        '{"hello":{"version":3,"apiKey":%s,"deviceId":%s,"deviceType":%s,"connection":"ip","sensors":[{"name":%s,'
        '"maxSampleLengthS":%s,"frequencies":[%s]}],"supportsSnapshotStreaming":false}}'
        % (d(cfg["api_key"]), d(app.device_name or _unique_id()), d(app.device_type), d(name), d(rows / rate), d(rate))
    )
    return text, name, rows


def request(r, req):
    """Check a sample request for r (a remote.Remote) and reply: refused
    with a reason (None), or accepted: (label, category, hmac key, rows), to
    wait in r.pending until the app records it."""
    length = req.get("length")
    interval = req.get("interval")
    label = req.get("label")
    cfg = r.app.cfg
    rate = cfg["sample_rate_hz"]
    path = req.get("path") or "/api/%s/data" % cfg["category"]
    category = path[5:-5] if path[:5] == "/api/" and path[-5:] == "/data" else None
    key = req.get("hmacKey") or cfg["hmac_key"]
    rows = 0
    why = "length, interval: expected numbers of ms"
    try:
        check_label(label)
        rows = int(length * rate / 1000 + 0.5)
        interval = 1000 / interval
        if rows > 0 and interval > 0:
            why = None
    except ValueError as e:  # the label's
        why = str(e)
    except (TypeError, ZeroDivisionError):
        pass
    if req.get("sensor", r.sensor) != r.sensor:
        why = "unknown sensor: this board has %r" % r.sensor
    elif why:
        pass
    elif rows > r.max_rows:
        why = "too long: at most %d ms here" % (r.max_rows * 1000 // rate)
    elif category not in DATA_CATEGORIES:
        why = "path: expected /api/<%s>/data" % "|".join(DATA_CATEGORIES)
    elif key is not None and not isinstance(key, str):
        why = "hmacKey: expected a string"
    if why:
        r.app.log("remote: sample refused: %s" % why)
        r.ws.send('{"sample":false,"error":%s}' % json.dumps(why))
        return None
    r.ws.send('{"sample":true}')
    # the sensor samples at its configured rate only: the nearest one to any asked
    r.app.log("remote: sample %r of %s ms for %s, at %s Hz (%g Hz asked)" % (label, length, category, rate, interval))
    return label, category, key, rows


def refused(r, msg):
    """A refused hello: one line; the server closes, and each next try waits
    longer (uingest.ws's backoff)."""
    r._why = "hello refused"  # said here, not again by serve()
    r.ws.close(r._why)
    why = "".join(c if " " <= c <= "~" else "?" for c in str(msg.get("err"))[:80])
    r.app.log("remote: hello refused: %s; again in ~%d s" % (why, r.ws.backoff_ms // 2000))


def finished(r, arg):
    """The last reply to a request recorded by app.record; arg: (label, what
    app.record returned: an http.Outcome, None when queued, or why it was
    not sent)."""
    label, out = arg
    if isinstance(out, str):
        why = "not sent: " + out
    elif out is None and len(r.app.outbox.store):
        why = "queued on the board, sent when the service is back"
    elif out is None or out.kind == http.ACCEPTED:  # None: queued behind older windows, all sent now
        r.ws.send('{"sampleFinished":true}')
        r.app.log("remote: sample %r finished" % label)
        return
    else:
        why = "upload: %d %s%s" % (out.status, out.detail, " (queued)" if out.kind == http.RETRY else "")
    r.app.log("remote: sample %r: %s" % (label, why))
    r.ws.send('{"sample":false,"error":%s}' % json.dumps(why))


def _unique_id():
    # the deviceId when there is neither a configured device_name nor a MAC
    try:
        from binascii import hexlify

        import machine

        return hexlify(machine.unique_id(), ":").decode()
    except (ImportError, AttributeError, TypeError, OSError):
        return "uingest-board"
