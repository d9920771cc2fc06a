"""Large messages: checked without decoding their values (uingest_tools.large_messages), with
check_structure's verdicts, in memory about the body's size, and refused with 413 when too large to check."""

import json
import math
import os
import struct
import subprocess
import sys
import tempfile
import tracemalloc

import cbor2
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from uingest import message
from uingest.window import Window
from uingest_tools import collector_rules
from uingest_tools.acquisition import InvalidMessage, check_structure, decode
from uingest_tools.bench import large_window_body
from uingest_tools.large_messages import FIELDS_LIMIT, TooLargeToCheck, check_large
from uingest_tools.loopback import start_serve

HMAC_KEY = "hmac-test-key"


def verdict_whole(body, fmt):
    try:
        return ("ok", len(check_structure(decode(body, fmt))["values"]))
    except InvalidMessage as e:
        return ("refused", str(e))


def verdict_streamed(body, fmt):
    try:
        return ("ok", check_large(body, fmt)[1])
    except InvalidMessage as e:
        return ("refused", str(e))


def message_with(values, sensors=3, sensors_first=True, **payload_extra):
    sensor_list = [{"name": "a%d" % i, "units": "g"} for i in range(sensors)] if isinstance(sensors, int) else sensors
    payload = {"device_type": "T", "interval_ms": 10}
    order = [("sensors", sensor_list), ("values", values)]
    for k, v in order if sensors_first else order[::-1]:
        payload[k] = v
    payload.update(payload_extra)
    return {"protected": {"ver": "v1", "alg": "none"}, "signature": "0" * 64, "payload": payload}


def bodies(msg):
    yield "cbor", cbor2.dumps(msg)
    yield "cbor", cbor2.dumps(msg, canonical=True)  # the smallest float that holds each value
    yield "json", json.dumps(msg).encode()
    yield "json", json.dumps(msg, indent=1).encode()  # with whitespace everywhere


def assert_same_verdicts(msg):
    for fmt, body in bodies(msg):
        assert verdict_streamed(body, fmt) == verdict_whole(body, fmt), (fmt, body[:200])


cells = st.one_of(
    st.floats(width=32),
    st.floats(allow_nan=True, allow_infinity=True),
    st.integers(-(2**70), 2**70),  # CBOR bignums beyond 64 bits
    st.booleans(),
    st.none(),
    st.text(max_size=3),
)
rows = st.one_of(st.lists(cells, min_size=0, max_size=4), cells, st.lists(st.lists(cells, max_size=2), max_size=2))


@settings(max_examples=400, deadline=None)
@given(
    st.lists(rows, max_size=12),
    st.integers(1, 4),
    st.booleans(),
)
def test_streamed_verdicts_are_check_structures(values, sensors, sensors_first):
    assert_same_verdicts(message_with(values, sensors, sensors_first))


@settings(max_examples=150, deadline=None)
@given(st.lists(st.lists(st.floats(width=32, allow_nan=False, allow_infinity=False), min_size=3, max_size=3)))
def test_valid_windows_are_taken_the_fast_way_and_counted(values):
    assert_same_verdicts(message_with(values))


@pytest.mark.parametrize(
    "values,sensors",
    [
        ([[1, 2, 3]] * 20000 + [[1, 2, float("nan")]], 3),  # a bad row after many fast blocks
        ([[1, 2, 3]] * 20000 + [[1, 2]], 3),
        ([[1.5, 2, 3]] * 9000 + [[1.5, 2, 3, 4]] + [[1, 2, 3]] * 10, 3),
        ([1.5] * 20000 + [[2.5]] + [True], 1),  # one sensor: bare numbers and one-element lists
        ([[10**300, 1e300, -1e-300]] * 3, 3),
        ([[1e308 * 10, 0, 0]], 3),  # inf
        ("values", 3),
        ({"a": 1}, 3),
        ([], 3),
        ([[1, 2, 3]], []),
        ([[1, 2, 3]], [{"name": "x"}]),
    ],
)
def test_edge_shapes(values, sensors):
    for first in (True, False):
        assert_same_verdicts(message_with(values, sensors, first))


@pytest.mark.parametrize(
    "text",
    [
        '[[1e999,0,0]]',  # a double's overflow: infinite, refused
        '[[1E+2,-0,0.5e-3]]',
        '[[NaN,0,0]]',
        '[[Infinity,0,0]]',
        '[[1%s,0,0]]' % ("0" * 250),  # an integer too large for a double
        '[[1%s,0,0]]' % ("0" * 150),
        '[ [ 1 , 2 , 3 ] , [4,5,6] ]',
    ],
)
def test_json_numbers_the_regular_expression_must_not_misjudge(text):
    for prefix in ("", ' "pad": "' + "x" * 10 + '",'):
        body = (
            '{"protected":{"ver":"v1","alg":"none"},"signature":"%s","payload":{%s"device_type":"T","interval_ms":10,'
            '"sensors":[{"name":"a","units":"g"},{"name":"b","units":"g"},{"name":"c","units":"g"}],"values":%s}}'
            % ("0" * 64, prefix, text)
        ).encode()
        assert verdict_streamed(body, "json") == verdict_whole(body, "json")


@pytest.mark.parametrize(
    "number",
    [
        "f97c00", "f9fc00", "f97e00", "f97fff",  # half: inf, -inf, NaN, NaN with payload
        "f97bff", "f9fbff", "f90001",  # half: largest finite, its negative, smallest subnormal
        "fa7f800000", "faff800000", "fa7fc00000", "faffffffff",  # single: inf, -inf, NaN, NaN
        "fa7f7fffff", "faff7fffff", "fa00000001", "fa80000000",  # single: largest, -largest, subnormal, -0
        "fb7ff0000000000000", "fbfff0000000000000", "fb7ff8000000000000",  # double: inf, -inf, NaN
        "fb7fefffffffffffff", "fb0000000000000001",  # double: largest finite, smallest subnormal
        "1bffffffffffffffff", "3bffffffffffffffff", "c249010000000000000000",  # 64-bit ints, a bignum
    ],
)
def test_every_cbor_float_width_nan_and_infinity(number):
    row = b"\x83" + bytes.fromhex(number) + b"\x00\x01"
    msg = cbor2.dumps(message_with([]))
    for n in (1, 20000):  # a row alone; the same row after many fast blocks
        values = b"\x99" + (n + 1).to_bytes(2, "big") + b"\x83\x00\x00\x00" * n + row if n > 1 else b"\x81" + row
        body = msg.replace(b"\x66values\x80", b"\x66values" + values)
        assert verdict_streamed(body, "cbor") == verdict_whole(body, "cbor"), number


def test_indefinite_length_cbor_and_float_widths():
    row = b"\x83\xf9\x3c\x00\xfa" + struct.pack(">f", 2.5) + b"\xfb" + struct.pack(">d", -1.25)
    rows = row * 5
    nan_row = b"\x83\xf9\x7e\x00\x00\x00"
    msg = cbor2.dumps(message_with([]))
    for values in (b"\x9f" + rows + b"\xff", b"\x85" + rows, b"\x9f" + rows + nan_row + b"\xff"):
        body = msg.replace(b"\x66values\x80", b"\x66values" + values)
        assert verdict_streamed(body, "cbor") == verdict_whole(body, "cbor")
    indefinite_map = b"\xbf" + msg[1:] + b"\xff"
    assert verdict_streamed(indefinite_map, "cbor") == verdict_whole(indefinite_map, "cbor")


@pytest.mark.parametrize(
    "body,fmt",
    [
        (b"", "cbor"),
        (b"\xa3\x69protected", "cbor"),  # cut
        (b"\x83\x01\x02\x03", "cbor"),
        (b"", "json"),
        (b"{", "json"),
        (b'{"a":1} x', "json"),
        (b"[1,2]", "json"),
        (b'{"payload":{"values":[[1,2', "json"),
        (b"\xff\xfe", "json"),
    ],
)
def test_broken_bodies_are_refused_either_way(body, fmt):
    assert verdict_whole(body, fmt)[0] == verdict_streamed(body, fmt)[0] == "refused"


def test_fields_over_the_limit_are_too_large_to_check():
    msg = message_with([[1, 2, 3]] * 10, device_name="x" * (FIELDS_LIMIT + 1))
    for fmt, body in bodies(msg):
        with pytest.raises(TooLargeToCheck, match=str(FIELDS_LIMIT)):
            check_large(body, fmt)
    with pytest.raises(collector_rules.Rejected) as e:
        collector_rules.validate_message(cbor2.dumps(msg), "cbor")
    assert e.value.status == 413 and str(FIELDS_LIMIT) in e.value.reason


def firmware_message(fmt, rows, key=HMAC_KEY):
    w = Window([("accX", "m/s2"), ("accY", "m/s2"), ("accZ", "m/s2")], 10, rows)
    for i in range(rows):
        w.append(math.sin(i / 7) * 9.81, i * 0.01 - 1, 9.81)
    return message.encode(w, fmt, hmac_key=key, device_type="ESP32_DEVKITC", device_name="ac:87")


@pytest.mark.parametrize("fmt", ["cbor", "json"])
def test_validate_message_gives_the_same_fields_both_ways_with_signatures(fmt):
    body = firmware_message(fmt, 300)
    whole = collector_rules.validate_message(body, fmt, HMAC_KEY)
    streamed = collector_rules.validate_message(body, fmt, HMAC_KEY, decode_whole_up_to=0)
    assert whole == streamed and streamed["signature"] == "valid" and streamed["rows"] == 300
    tampered = body.replace(b"ac:87", b"ac:88")
    for limit in (len(body), 0):
        with pytest.raises(collector_rules.Rejected, match="signature does not match"):
            collector_rules.validate_message(tampered, fmt, HMAC_KEY, decode_whole_up_to=limit)


def f32_window_body(rows):
    """A firmware-shaped CBOR message (every value a float32), built fast (the bench's large window)."""
    return large_window_body(rows, firmware_message("cbor", 10))


def test_checking_a_large_message_takes_memory_about_its_size():
    body = f32_window_body(600_000)  # 9.6 MB; decoded whole it takes over 10 times that
    assert verdict_whole(body, "cbor") == ("ok", 600_000)
    tracemalloc.start()
    try:
        fields = collector_rules.validate_message(body, "cbor")
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert fields["rows"] == 600_000
    assert peak < len(body), "peak %d for a body of %d" % (peak, len(body))


@pytest.mark.parametrize("fmt", ["cbor", "json"])
def test_serve_stores_a_40_mb_window_in_under_4x_its_size(tmp_path, fmt):
    if fmt == "cbor":
        body = f32_window_body(2_500_000)  # 40 MB
    else:  # 39 MB of JSON text (its check is a scan of the text, in about the body's size)
        body = json.dumps(message_with([[1.2345678, -0.25, 9.81]] * 1_500_000)).encode()
    env = dict(os.environ, UINGEST_API_KEY="k")
    with tempfile.TemporaryFile() as log:
        srv = start_serve("--data-dir", str(tmp_path / "d"), env=env, stdout=log, stderr=subprocess.STDOUT)
        try:
            before = _rss_kb(srv.pid, "VmRSS")
            code = (
                "import http.client, sys; c = http.client.HTTPConnection('127.0.0.1', %d, timeout=120); "
                "c.request('POST', '/api/training/data', sys.stdin.buffer.read(), {'Content-Type': "
                "'application/%s', 'x-api-key': 'k', 'x-file-name': 'big.%s'}); r = c.getresponse(); "
                "print(r.status, r.read().decode())" % (srv.port, fmt, fmt)
            )
            out = subprocess.run([sys.executable, "-c", code], input=body, capture_output=True, timeout=180)
            peak = _rss_kb(srv.pid, "VmHWM")
        finally:
            srv.terminate()
            srv.wait()
    assert out.stdout.startswith(b"200 "), out
    grew = (peak - before) * 1024
    assert grew < 4 * len(body), "the server grew by %d bytes for a body of %d" % (grew, len(body))


def test_other_devices_keep_their_latency_while_a_large_window_is_checked(tmp_path):
    """A device posting small windows on its kept-alive connection while a 40 MB one is received, checked and
    stored: its posts wait a few milliseconds, not the large window's check (about 0.5 s, timed here on the same
    body; checked on the event loop, the device's post waited all of it)."""
    import http.client
    import threading
    import time

    big, small = f32_window_body(2_500_000), f32_window_body(10)
    t0 = time.perf_counter()
    collector_rules.validate_message(big, "cbor")
    check_s = time.perf_counter() - t0
    env = dict(os.environ, UINGEST_API_KEY="k")
    headers = {"Content-Type": "application/cbor", "x-api-key": "k"}
    srv = start_serve("--data-dir", str(tmp_path / "d"), env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    posts, stop = [], threading.Event()  # (start, seconds, status) of each small post

    def device():
        c = http.client.HTTPConnection("127.0.0.1", srv.port, timeout=30)
        i = 0
        while not stop.is_set():
            t = time.perf_counter()
            c.request("POST", "/api/training/data", small, dict(headers, **{"x-file-name": "dev%d.cbor" % i}))
            r = c.getresponse()
            r.read()
            posts.append((t, time.perf_counter() - t, r.status))
            i += 1
            time.sleep(0.01)
        c.close()

    th = threading.Thread(target=device)
    try:
        th.start()
        time.sleep(0.5)
        c = http.client.HTTPConnection("127.0.0.1", srv.port, timeout=120)
        start = time.perf_counter()
        c.request("POST", "/api/training/data", big, dict(headers, **{"x-file-name": "big.cbor"}))
        r = c.getresponse()
        r.read()
        end = time.perf_counter()
        c.close()
        time.sleep(0.2)
    finally:
        stop.set()
        th.join(30)
        srv.terminate()
        srv.wait()
    assert r.status == 200
    during = sorted(s for t, s, _ in posts if start <= t <= end)
    assert all(status == 200 for _, _, status in posts)
    assert len(during) >= 5, (len(during), end - start)
    assert during[-1] < check_s / 2 and during[len(during) // 2] < 0.1, (during, check_s, end - start)


def _rss_kb(pid, field):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise AssertionError(field)


@pytest.mark.parametrize("big", [False, True])
def test_what_the_hostile_run_found_gets_the_same_verdict_at_every_size(big):
    """Lone surrogates in the kept strings, bytes after a CBOR message, a JSON byte-order mark: refused, with the
    same reason, whether the body is decoded whole or checked in place."""
    pad = [[1.0, 2.0, 3.0]] * (30000 if big else 3)
    limit = 0 if big else 10**9
    cases = [
        (json.dumps(message_with(pad, device_name="d\ud800")).encode(), "json", "lone surrogate"),
        (json.dumps(message_with(pad, sensors=[{"name": "x\udfff", "units": "g"}] * 3)).encode(), "json", "surrogate"),
        (cbor2.dumps(message_with(pad)) + b"\xff\xff", "cbor", "2 bytes follow the CBOR message"),
        (b"\xef\xbb\xbf" + json.dumps(message_with(pad)).encode(), "json", "byte-order mark"),
        (json.dumps(message_with(pad)).encode("utf-16"), "json", "not UTF-8"),
    ]
    for body, fmt, reason in cases:
        with pytest.raises(collector_rules.Rejected) as e:
            collector_rules.validate_message(body, fmt, decode_whole_up_to=limit)
        assert e.value.status == 400 and reason in e.value.reason, (fmt, e.value.reason)


def test_a_huge_json_string_costs_memory_about_its_size():
    """A 20 MB device_name: 413, and the check's memory about the body's size (the string's scan kept state per
    character: 120 times the body)."""
    body = json.dumps(message_with([[1, 2, 3]], device_name="A" * 20_000_000)).encode()
    tracemalloc.start()
    try:
        with pytest.raises(collector_rules.Rejected) as e:
            collector_rules.validate_message(body, "json")
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert e.value.status == 413
    assert peak < 2 * len(body), "peak %d for a body of %d" % (peak, len(body))
