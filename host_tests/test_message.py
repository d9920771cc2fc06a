"""uingest.message: structure checked with cbor2/json, signatures with hmac."""

import json
import math
import struct

import cbor2
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from helpers import ChunkSink
from uingest import ingest, message
from uingest.window import Window
from uingest_tools.acquisition import check_structure, decode, verify_signature

IMU = [("accX", "m/s2"), ("accY", "m/s2"), ("accZ", "m/s2")]
KEY = "hmac-test-key"


def f32(x):
    return struct.unpack("<f", struct.pack("<f", x))[0]


def imu_window(rows=200, interval_ms=10):
    w = Window(IMU, interval_ms, rows)
    for i in range(rows):
        w.append(math.sin(i / 7) * 9.81, i * 0.01 - 1, 9.81 + (i % 5) * 0.001)
    return w


def audio_window(n=1600):
    w = Window([("audio", "wav")], 0.0625, n, typecode="h")
    for i in range(n):
        w.append(int(32767 * math.sin(i / 3)) if i % 97 else (-32768 if i % 2 else 32767))
    return w


def test_the_encoder_and_the_headers_know_the_same_formats():
    # two copies on the board on purpose (see message.CONTENT_TYPES); one table for everything else
    assert message.CONTENT_TYPES == ingest.CONTENT_TYPES and message.FORMATS == tuple(ingest.CONTENT_TYPES)


@pytest.mark.parametrize("fmt", ["cbor", "json"])
def test_structure_exactly_as_the_protocol_doc(fmt):
    w = imu_window(5)
    body = message.encode(
        w, fmt, hmac_key=KEY, device_type="ESP32_DEVKITC", device_name="ac:87:a3:0a:2d:1b", iat=1564128599
    )
    msg = decode(body, fmt)
    assert list(msg) == ["protected", "signature", "payload"]
    assert msg["protected"] == {"ver": "v1", "alg": "HS256", "iat": 1564128599}
    assert list(msg["protected"]) == ["ver", "alg", "iat"]
    assert len(msg["signature"]) == 64 and msg["signature"] == msg["signature"].lower()
    p = msg["payload"]
    assert list(p) == ["device_name", "device_type", "interval_ms", "sensors", "values"]
    assert p["device_name"] == "ac:87:a3:0a:2d:1b" and p["device_type"] == "ESP32_DEVKITC"
    assert p["interval_ms"] == 10 and isinstance(p["interval_ms"], int)
    assert p["sensors"] == [{"name": n, "units": u} for n, u in IMU]
    assert len(p["values"]) == 5 and all(len(r) == 3 for r in p["values"])
    check_structure(msg)
    assert verify_signature(body, fmt, KEY)
    assert not verify_signature(body, fmt, KEY + "x")


@pytest.mark.parametrize("fmt", ["cbor", "json"])
def test_unsigned_message_says_alg_none(fmt):
    body = message.encode(imu_window(3), fmt)
    msg = decode(body, fmt)
    assert msg["protected"] == {"ver": "v1", "alg": "none"}
    assert list(msg["payload"]) == ["device_type", "interval_ms", "sensors", "values"]
    assert msg["payload"]["device_type"] == message.DEFAULT_DEVICE_TYPE
    check_structure(msg)


def test_cbor_samples_are_float32_and_exact():
    w = imu_window(50)
    body = message.encode(w, "cbor", hmac_key=KEY)
    values = cbor2.loads(body)["payload"]["values"]
    flat = [v for row in values for v in row]
    assert flat == list(w.samples)  # bit-exact: the array holds float32
    # every sample is 0xfa + 4 bytes, every row head one byte
    vstart = body.index(b"fvalues") + 7
    assert body[vstart : vstart + 2] == b"\x98\x32"  # array(50)
    assert len(body) - vstart - 2 == 50 * (1 + 3 * 5)


@pytest.mark.parametrize("key", [None, KEY])
def test_cbor_and_json_of_one_window_carry_the_same_values(key):
    w = imu_window(200)
    c = decode(message.encode(w, "cbor", hmac_key=key), "cbor")
    j = decode(message.encode(w, "json", hmac_key=key), "json")
    assert c["payload"]["sensors"] == j["payload"]["sensors"]
    assert c["payload"]["interval_ms"] == j["payload"]["interval_ms"]
    cv = c["payload"]["values"]
    jv = j["payload"]["values"]
    assert len(cv) == len(jv) == 200
    for crow, jrow in zip(cv, jv):
        assert [f32(x) for x in jrow] == crow


@given(st.lists(st.floats(width=32, allow_nan=False, allow_infinity=False), min_size=1, max_size=60))
@settings(max_examples=300)
def test_json_floats_read_back_as_the_same_float32(xs):
    w = Window([("v", "V")], 1, len(xs))
    for x in xs:
        w.append(x)
    j = json.loads(message.encode(w, "json"))
    c = cbor2.loads(message.encode(w, "cbor"))
    assert [f32(v) for v in j["payload"]["values"]] == c["payload"]["values"] == list(w.samples)


@pytest.mark.parametrize("fmt", ["cbor", "json"])
def test_audio_int16_flat_values(fmt):
    w = audio_window()
    body = message.encode(w, fmt, hmac_key=KEY, device_type="ESP32_INMP441")
    msg = decode(body, fmt)
    check_structure(msg)
    assert msg["payload"]["interval_ms"] == 0.0625
    assert msg["payload"]["sensors"] == [{"name": "audio", "units": "wav"}]
    assert msg["payload"]["values"] == list(w.samples)
    assert verify_signature(body, fmt, KEY)


def test_int16_cbor_uses_shortest_ints():
    w = Window([("a", "wav")], 1, 7, typecode="h")
    for v in (0, 23, 24, 255, 256, -1, -32768):
        w.append(v)
    body = message.encode(w, "cbor")
    assert body.endswith(bytes.fromhex("870017181818ff19010020397fff"))


@pytest.mark.parametrize("fmt", ["cbor", "json"])
@pytest.mark.parametrize("key", [None, KEY])
@pytest.mark.parametrize("kind", ["imu", "audio"])
def test_streamed_write_equals_encode_and_length(fmt, key, kind):
    w = imu_window(333) if kind == "imu" else audio_window(5000)
    body = message.encode(w, fmt, hmac_key=key, device_name="dev", iat=7)
    m = message.Message(w, fmt, hmac_key=key, device_name="dev", iat=7)
    n = m.length
    sink = ChunkSink()
    assert m.write(sink) == n == len(body)
    assert sink.value() == body
    assert max(len(p) for p in sink.parts) <= 1024  # streamed in chunks, never one big buffer
    assert message.write(w, ChunkSink(), fmt, hmac_key=key, device_name="dev", iat=7) == len(body)
    if key:
        assert m.signature == decode(body, fmt)["signature"]


@pytest.mark.parametrize("fmt", ["cbor", "json"])
@pytest.mark.parametrize("key", [None, KEY])
@pytest.mark.parametrize("kind", ["imu", "audio"])
def test_encode_into_a_reused_buffer_writes_the_same_bytes(fmt, key, kind):
    w = imu_window(333) if kind == "imu" else audio_window(5000)
    body = message.encode(w, fmt, hmac_key=key, device_name="dev", iat=7)
    buf = bytearray(len(body) + 7 * 5000 * 3)  # made once, bigger than any of these messages
    for _ in range(2):  # reused: the second message overwrites the first
        m = message.Message(w, fmt, hmac_key=key, device_name="dev", iat=7)
        assert m.max_length() >= len(body)
        n = m.encode_into(buf)
        assert n == len(body) and bytes(buf[:n]) == body
        assert m.encode_into(memoryview(buf)[3:]) == n and bytes(buf[3 : 3 + n]) == body  # and again, the same
    assert message.encode_into(w, buf, fmt, hmac_key=key, device_name="dev", iat=7) == len(body)
    if fmt == "cbor" and kind == "imu":  # fixed-size rows: the bound is exact
        assert message.Message(w, fmt, hmac_key=key).max_length() == len(message.encode(w, fmt, hmac_key=key))


def test_max_length_fits_any_samples_of_the_same_window_size():
    """One buffer for every window: float text varies from 1 to 15 characters
    a value, so the buffer made for a window of zeros must take the longest."""
    zeros = Window((("x", "u"), ("y", "u"), ("z", "u")), 10, 100)
    wide = Window((("x", "u"), ("y", "u"), ("z", "u")), 10, 100)
    for _ in range(100):
        zeros.append(0.0, 0.0, 0.0)
        wide.append(-1.2345678e-30, 3.4028235e38, -1.1754944e-38)
    for fmt in ("cbor", "json"):
        buf = bytearray(message.Message(zeros, fmt, hmac_key=KEY, iat=7).max_length())
        n = message.encode_into(wide, buf, fmt, hmac_key=KEY, iat=7)
        assert bytes(buf[:n]) == message.encode(wide, fmt, hmac_key=KEY, iat=7)
        m = message.encode_into(zeros, buf, fmt, hmac_key=KEY, iat=7)
        assert m == n if fmt == "cbor" else m < n  # float32 CBOR: every message the same size


def test_encode_into_a_buffer_too_small_says_so_and_writes_nothing():
    w = audio_window(100)
    m = message.Message(w, "cbor")
    buf = bytearray(m.max_length() - 1)
    with pytest.raises(ValueError, match=r"^buffer: %d bytes, the message needs up to %d$" % (len(buf), len(buf) + 1)):
        m.encode_into(buf)
    assert buf == bytearray(len(buf))


def test_wide_rows_and_float_interval():
    sensors = [("s%d" % i, "V") for i in range(30)]
    w = Window(sensors, 2.5, 3)
    for r in range(3):
        w.append(*[r + i / 4 for i in range(30)])
    for fmt in ("cbor", "json"):
        body = message.encode(w, fmt, hmac_key=KEY)
        msg = decode(body, fmt)
        check_structure(msg)
        assert msg["payload"]["interval_ms"] == 2.5
        assert msg["payload"]["values"][2] == [2 + i / 4 for i in range(30)]
        assert verify_signature(body, fmt, KEY)


def test_unicode_and_escapes_in_names():
    w = Window([('te"mp\\\n', "Cel"), ("hum\u00e9", "%RH")], 1000, 1)
    w.append(21.5, 40)
    for fmt in ("cbor", "json"):
        body = message.encode(w, fmt, hmac_key=KEY, device_name="caf\u00e9\t1")
        msg = decode(body, fmt)
        assert msg["payload"]["sensors"][0]["name"] == 'te"mp\\\n'
        assert msg["payload"]["sensors"][1]["name"] == "hum\u00e9"
        assert msg["payload"]["device_name"] == "caf\u00e9\t1"
        assert verify_signature(body, fmt, KEY)


def test_json_is_what_json_stringify_writes():
    # JSON.stringify: no spaces, raw UTF-8, integral numbers without ".0"
    w = Window([("accX", "m/s2"), ("accY", "m/s2")], 16.0, 2)
    w.append(1.0, -2.5)
    w.append(0.25, 3)
    body = message.encode(w, "json", device_type="T\u00e9", iat=5)
    assert (
        body
        == (
            '{"protected":{"ver":"v1","alg":"none","iat":5},"signature":"' + "0" * 64 + '",'
            '"payload":{"device_type":"T\u00e9","interval_ms":16,"sensors":[{"name":"accX","units":"m/s2"},'
            '{"name":"accY","units":"m/s2"}],"values":[[1,-2.5],[0.25,3]]}}'
        ).encode()
    )


@pytest.mark.parametrize(
    "kwargs,field",
    [
        (dict(device_type=""), "device_type"),
        (dict(device_type=None), "device_type"),
        (dict(fmt="xml"), "fmt"),
        (dict(hmac_key=""), "hmac_key"),
        (dict(hmac_key=5), "hmac_key"),
        (dict(iat=-1), "iat"),
        (dict(iat=1.5), "iat"),
        (dict(device_name=""), "device_name"),
    ],
)
def test_bad_arguments_name_the_field(kwargs, field):
    with pytest.raises(ValueError, match=field):
        message.encode(imu_window(2), **kwargs)


def test_window_problems_name_the_field():
    w = imu_window(2)
    w.sensors = (("accX", 5),)
    with pytest.raises(ValueError, match="units"):
        message.encode(w)
    w = imu_window(2)
    w.interval_ms = 0
    with pytest.raises(ValueError, match="interval_ms"):
        message.encode(w)
    w = imu_window(2)
    w.sensors = ()
    with pytest.raises(ValueError, match="sensors"):
        message.encode(w)
    with pytest.raises(ValueError, match="no rows"):
        message.encode(Window(IMU, 10, 3))


@pytest.mark.parametrize("fmt", ["cbor", "json"])
@pytest.mark.parametrize("bad", [float("nan"), float("inf"), float("-inf")])
def test_non_finite_samples_raise(fmt, bad):
    w = Window(IMU, 10, 2)
    w.append(1, 2, 3)
    w.append(1, bad, 3)
    with pytest.raises(ValueError, match="NaN or infinite"):
        message.encode(w, fmt)
