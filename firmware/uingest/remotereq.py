# A sample request's checks and its reply (uingest.remote), loaded for each
# request (ws.cold) and unloaded right after: the one cold path that runs
# while the heap holds a window, so it is apart from remotecold's and small.
import json

from .ingest import DATA_CATEGORIES, check_label


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
    # a path, a label of another type (a number, CBOR bytes): refused below, never raised
    category = path[5:-5] if isinstance(path, str) and path[:5] == "/api/" and path[-5:] == "/data" else None
    key = req.get("hmacKey") or cfg["hmac_key"]
    rows = 0
    why = "length, interval: expected numbers of ms"
    try:
        if not isinstance(label, str):
            raise ValueError("label: expected a string")
        check_label(label)
        rows = int(length * rate / 1000 + 0.5)
        interval = 1000 / interval
        if rows > 0 and interval > 0:
            why = None
    except ValueError as e:  # the label's
        why = str(e)
    except (TypeError, ZeroDivisionError, OverflowError):  # OverflowError: an infinite length (CBOR)
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
        r.send('{"sample":false,"error":%s}' % json.dumps(why))
        return None
    r.send('{"sample":true}')
    # the sensor samples at its configured rate only: the nearest one to any asked
    r.app.log("remote: sample %r of %s ms for %s, at %s Hz (%g Hz asked)" % (label, length, category, rate, interval))
    return label, category, key, rows
