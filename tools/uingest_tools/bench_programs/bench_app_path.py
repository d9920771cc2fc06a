# Encode+sign+send where the app runs it, run ON MicroPython (unix port) by `uingest bench`:
#   micropython -X heapsize=384K bench_app_path.py URL QUEUE_DIR WINDOWS REPEATS [requests|urequests]
# (API key on stdin)
# with MICROPYPATH=<bundle>:<baselines>:.frozen. In ONE process, with the same
# live objects in the heap (the app's modules, its validated config, the
# window's array, the outbox with its client and queue, the baselines'
# modules and a running application's other objects), it times WINDOWS signed
# 200x3 float32 windows through
#   app     the app's own per-window path (App.record after sampling: Message,
#           prepare() = the sign pass, Outbox.send = upload.send's headers, the
#           send pass and the socket writes over one kept-alive connection,
#           then Outbox.drain's look at the empty queue);
#   mplib   the micropython-lib way: the message as a dict of lists, cbor2.dumps
#           with a signature placeholder, hmac.new(...).hexdigest(), dumps
#           again, requests.post (a new connection each post, as it does).
# and both without the network (app_local: the send pass into a null sink;
# mplib_local: the signed body made). Prints "lib NAME FILE", "heap_live
# ALLOC FREE", then for each of REPEATS rounds "round APP MPLIB APP_LOCAL
# MPLIB_LOCAL" (us for WINDOWS windows, the paths taking turns) and "part NAME
# median_us" for each part of one window, timed on its own (the port has no
# profiler).
import gc
import hashlib
import json
import sys
import time

url, queue_dir, windows, repeats = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
api_key = sys.stdin.readline().strip()

# -- the app's heap: its modules, its config as it validates it, its objects --
from uingest import app, config, http, ingest  # noqa: E402
from uingest.message import Message  # noqa: E402
from uingest.sampler import Sampler  # noqa: E402
from uingest.store import Store  # noqa: E402
from uingest.window import Window  # noqa: E402

cfg = config.loads(
    json.dumps(
        {
            "board": "unix-sim",
            "url": url,
            "api_key": api_key,
            "hmac_key": "bench-hmac-key",
            "labels": ["idle", "walk", "run"],
            "window_ms": 2000,
            "sample_rate_hz": 100,
            "queue_dir": queue_dir,
        }
    )
)
cfg["_summary"] = config.describe(cfg)
del sys.modules["uingest.config"]  # as app._load_config: the validator is unloaded after boot
config = None
DEVICE_TYPE = "UINGEST_UNIX_SIM"
DEVICE_NAME = "aa:bb:cc:dd:ee:ff"
LABEL, CATEGORY, KEY = cfg["label"], cfg["category"], cfg["hmac_key"]

window = Window((("accX", "m/s2"), ("accY", "m/s2"), ("accZ", "m/s2")), 10, 200)
for i in range(200):  # realistic sensor noise: values that need all float32 digits
    window.append((i * 37 % 1000) / 97.3 - 5.0, (i * 53 % 1000) / 123.7 - 4.0, 9.80665 + (i % 7) / 311.0)
sampler = Sampler(cfg["sample_rate_hz"])
client = http.Client(cfg["url"], cfg["timeout_ms"], cfg["ca_file"], cfg["insecure"])
store = Store(cfg["queue_dir"], cfg["queue_budget_bytes"], print)
outbox = app.Outbox(client, store, cfg, print, lambda on: None, lambda: None)

# -- the baselines, in the same heap ------------------------------------------
import hmac  # noqa: E402

import cbor2  # noqa: E402

# requests: micropython-lib's (from the baseline folder, else frozen into the port) or its ancestor urequests
# (pfalcon's micropython-urequests: the same post()); `uingest bench` says which, by this argument
LIB = sys.argv[5] if len(sys.argv) > 5 else "requests"
requests = __import__(LIB)
print("lib", LIB, getattr(requests, "__file__", "?"))
TARGET = ingest.endpoint(url, CATEGORY)


# -- a running application's other objects: readings, a log, names, state -----
def ballast():
    recent = [{"t": i, "label": "idle", "values": (i * 0.5, i * 0.25, 9.8)} for i in range(120)]
    names = ["sensor-%d" % i for i in range(150)]
    log = [bytearray(64) for _ in range(32)]
    state = {"k%d" % i: [i, str(i), i / 3] for i in range(100)}
    return recent, names, log, state


live = ballast()


def app_path(n, iat):
    """App.record after sampling, without its gc.collect() calls (see the README)."""
    msg = Message(window, cfg["format"], KEY, DEVICE_TYPE, DEVICE_NAME, iat)
    msg.prepare()
    if outbox.send(msg, LABEL, CATEGORY, True, n):
        outbox.drain(n)
    return outbox.last.kind == http.ACCEPTED  # pyright: ignore[reportOptionalMemberAccess]


def as_dict(iat):
    s = window.samples
    return {
        "protected": {"ver": "v1", "alg": "HS256", "iat": iat},
        "signature": "0" * 64,
        "payload": {
            "device_name": DEVICE_NAME,
            "device_type": DEVICE_TYPE,
            "interval_ms": window.interval_ms,
            "sensors": [{"name": n, "units": u} for n, u in window.sensors],
            "values": [[s[i], s[i + 1], s[i + 2]] for i in range(0, window.rows * 3, 3)],
        },
    }


HEADERS = {
    "x-api-key": api_key,
    "Content-Type": "application/cbor",
    "x-label": LABEL,
    "x-file-name": LABEL + ".cbor",
    "x-disallow-duplicates": "1",
}
HMAC_KEY = KEY.encode()


def mplib_sign(doc):
    body = cbor2.dumps(doc)
    doc["signature"] = hmac.new(HMAC_KEY, body, hashlib.sha256).hexdigest()
    return cbor2.dumps(doc)


def mplib_path(n, iat):
    r = requests.post(TARGET, data=mplib_sign(as_dict(iat)), headers=HEADERS)
    ok = r.status_code == 200
    r.close()
    return ok


class Null:
    """A sink that takes the bytes and does nothing: the paths without the network."""

    def write(self, b):
        return len(b)


NULL = Null()


def app_local(n, iat):
    msg = Message(window, cfg["format"], KEY, DEVICE_TYPE, DEVICE_NAME, iat)
    msg.prepare()
    return msg.write(NULL) > 0


def mplib_local(n, iat):
    return len(mplib_sign(as_dict(iat))) > 0


def median(times):
    times = sorted(times)
    return times[len(times) // 2]


def run(path, iat0):
    """us for windows windows through path, each window's iat its own (the server would refuse a duplicate)."""
    ok = 0
    t0 = time.ticks_us()
    for i in range(windows):
        ok += path(i, iat0 + i)
    us = time.ticks_diff(time.ticks_us(), t0)
    if ok != windows:
        raise SystemExit("%d of %d windows went through" % (ok, windows))
    return us


def parts(steps, rounds):
    """Each step's median time over rounds windows: steps is [(name, fn(state) -> state)], run in order."""
    times = [[] for _ in steps]
    for r in range(rounds):
        state = 1700000000 + r
        for i, (_, fn) in enumerate(steps):
            t0 = time.ticks_us()
            state = fn(state)
            times[i].append(time.ticks_diff(time.ticks_us(), t0))
    for (name, _), t in zip(steps, times):
        print("part", name, median(t))


def app_send(msg):
    outbox.send(msg, LABEL, CATEGORY, True, 0)
    return msg


def mplib_hmac(doc_body):
    doc, body = doc_body
    doc["signature"] = hmac.new(HMAC_KEY, body, hashlib.sha256).hexdigest()
    return doc


def mplib_post(body):
    r = requests.post(TARGET, data=body, headers=HEADERS)
    r.close()
    return body


app_path(0, 1)  # connect once: the app's connection is kept alive from its first window on
mplib_path(0, 2)
gc.collect()
print("heap_live", gc.mem_alloc(), gc.mem_free())
# The paths take turns, round by round: a load that comes and goes on the machine falls on both. Each round
# starts from a collected heap: a path pays for its own garbage (the collections its allocations trigger), not
# for the one before it.
PATHS = (app_path, mplib_path, app_local, mplib_local)
iat = 1000
for _ in range(repeats):
    us = []
    for path in PATHS:
        gc.collect()
        us.append(run(path, iat))
        iat += windows
    print("round", *us)
rounds = max(9, min(windows, 50))
parts(
    (
        ("app_message", lambda iat: Message(window, cfg["format"], KEY, DEVICE_TYPE, DEVICE_NAME, iat)),
        ("app_sign_pass", lambda msg: msg.prepare() or msg),
        ("app_send_pass_null", lambda msg: msg.write(NULL) and msg),
        ("app_headers", lambda msg: ingest.headers(api_key, label=LABEL, fmt="cbor") and msg),
        ("app_send", app_send),
        ("app_drain", lambda msg: outbox.drain(0)),
        ("app_gc_collect", lambda _: gc.collect()),  # App.record collects twice a window: not in the app path
    ),
    rounds,
)
parts(
    (
        ("mplib_dict", as_dict),
        ("mplib_dumps_placeholder", lambda doc: (doc, cbor2.dumps(doc))),
        ("mplib_hmac", mplib_hmac),
        ("mplib_dumps_signed", cbor2.dumps),
        ("mplib_post", mplib_post),
    ),
    rounds,
)
client.close()
live = None
