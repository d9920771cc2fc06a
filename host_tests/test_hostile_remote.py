"""serve's remote management against what a hostile-input run found: a deviceId with '/' addressed through
the Studio-compatible routes, an intervalMs the device's sensor cannot sample, a lengthMs longer than it records."""

import contextlib

import edgeimpulse_api as ei
import pytest
from remote_device import FakeDevice
from test_remote_management import API_KEY, request, studio  # its Studio API helpers

from uingest_tools import serve

SLASHED = "lab/esp32:01"  # Edge Impulse's clients send it percent-encoded: lab%2Fesp32%3A01


@pytest.fixture
def server(tmp_path):
    app = serve.create_app(str(tmp_path), api_key=API_KEY, remote_port=0)
    with serve.ServerThread(app) as s:
        s.remote = app.state.remote_management
        s.ws_url = "ws://127.0.0.1:%d" % s.remote.port
        yield s


SAMPLE = {"label": "wave", "lengthMs": 1000, "category": "training", "intervalMs": 10, "sensor": "Accelerometer"}


def test_a_device_id_with_a_slash_is_reached_percent_encoded(server):
    dev = FakeDevice(server.ws_url)
    try:
        assert dev.say_hello(API_KEY, device_id=SLASHED) == {"hello": True}
        status, body = request(server, "GET", "/v1/api/1/device/lab%2Fesp32%3A01")
        assert (status, body["success"], body["device"]["deviceId"]) == (200, True, SLASHED), body
        status, body = request(server, "POST", "/v1/api/1/device/lab%2Fesp32%3A01/start-sampling", SAMPLE)
        assert (status, body["success"]) == (200, True), body
        assert dev.recv()["sample"]["label"] == "wave"
    finally:
        dev.close()


def test_edge_impulse_api_client_reaches_a_device_id_with_a_slash(server):
    """edgeimpulse_api quotes a path parameter whole (safe=''): '/' goes as %2F, as its TypeScript client's
    encodeURIComponent sends it, and Studio's routes decode it to the deviceId."""
    dev = FakeDevice(server.ws_url)
    try:
        assert dev.say_hello(API_KEY, device_id=SLASHED) == {"hello": True}
        api = studio(server)
        assert api.get_device(project_id=1, device_id=SLASHED).device.device_id == SLASHED
        started = api.start_sampling(
            project_id=1,
            device_id=SLASHED,
            start_sampling_request=ei.StartSamplingRequest(
                label="wave", length_ms=1000, category="training", interval_ms=10.0, sensor="Accelerometer"
            ),
        )
        assert started.success
        assert dev.recv()["sample"]["sensor"] == "Accelerometer"
    finally:
        dev.close()


def test_a_device_named_like_a_route_is_still_its_own(server):
    """A deviceId ending in '/start-sampling' is read by GET as a device, and start-sampling after it."""
    named = "x/start-sampling"
    dev = FakeDevice(server.ws_url)
    try:
        assert dev.say_hello(API_KEY, device_id=named) == {"hello": True}
        status, body = request(server, "GET", "/v1/api/1/device/x%2Fstart-sampling")
        assert body["success"] and body["device"]["deviceId"] == named, body
        status, body = request(server, "POST", "/v1/api/1/device/x%2Fstart-sampling/start-sampling", SAMPLE)
        assert body["success"], body
        status, body = request(server, "POST", "/v1/api/1/device/x/start-sampling", SAMPLE)
        assert body["success"] is False and "unknown device 'x'" in body["error"], body
    finally:
        dev.close()


def test_an_unknown_device_id_with_a_slash_is_studios_refusal_not_a_404(server):
    status, body = request(server, "POST", "/v1/api/1/device/a%2Fb/start-sampling", SAMPLE)
    assert status == 200 and body["success"] is False and "unknown device 'a/b'" in body["error"], body
    status, body = request(server, "GET", "/v1/api/1/device/a%2Fb")
    assert status == 200 and body["success"] is False and "'a/b'" in body["error"], body


@contextlib.contextmanager
def asked_to_sample(server, **changes):
    """A fake device that said hello, and Studio's answer to a start-sampling for it with SAMPLE's fields
    changed: (device, status, reply)."""
    dev = FakeDevice(server.ws_url)
    try:
        assert dev.say_hello(API_KEY) == {"hello": True}
        body = dict(SAMPLE, **changes)
        status, reply = request(server, "POST", "/v1/api/1/device/AA:BB:CC:00:11:22/start-sampling", body)
        yield dev, status, reply
    finally:
        dev.close()


def assert_refused_before_the_device(server, dev, status, reply, *words):
    """Studio's refusal, as for every bad field, naming each of words; nothing reached the device."""
    assert status == 200 and reply["success"] is False, reply
    assert all(w in reply["error"] for w in words), reply
    with pytest.raises(TimeoutError):
        dev.recv(timeout=0.3)
    assert server.remote.snapshot()["devices"][0]["state"] == "idle"


# --- intervalMs against the sensor's frequencies (remote_device.SENSORS: Accelerometer 62.5 and 100 Hz,
# Microphone 16000 Hz)


@pytest.mark.parametrize(
    "sensor, interval, highest",
    [("Accelerometer", 0.001, "100 Hz"), ("Accelerometer", 5, "100 Hz"), ("Microphone", 0.01, "16000 Hz")],
)
def test_an_interval_faster_than_the_sensor_samples_is_refused_with_the_reason(server, sensor, interval, highest):
    with asked_to_sample(server, sensor=sensor, intervalMs=interval) as (dev, status, reply):
        assert_refused_before_the_device(server, dev, status, reply, "intervalMs", highest, sensor)


@pytest.mark.parametrize(
    "sensor, interval",
    [
        ("Accelerometer", 10),  # 100 Hz, offered
        ("Accelerometer", 16),  # 62.5 Hz, offered
        ("Accelerometer", 9.9),  # 101 Hz: 1000/Hz rounded, within 5% of the highest
        ("Accelerometer", 40),  # 25 Hz, slower than offered: the device picks its rate (ours logs it)
        ("Microphone", 0.0625),  # 16000 Hz
    ],
)
def test_an_interval_the_sensor_can_sample_is_passed_on(server, sensor, interval):
    with asked_to_sample(server, sensor=sensor, intervalMs=interval) as (dev, status, reply):
        assert reply["success"] is True, reply
        assert dev.recv()["sample"]["interval"] == interval


# --- lengthMs against the sensor's maxSampleLengthS (Accelerometer 60 s, Microphone 4 s)

FASTEST = {"Microphone": 1000 / 16000, "Accelerometer": 10}  # an intervalMs each sensor samples at


@pytest.mark.parametrize("sensor, length, longest", [("Microphone", 4001, "4 s"), ("Accelerometer", 60001, "60 s")])
def test_a_length_longer_than_the_sensor_records_is_refused_with_the_reason(server, sensor, length, longest):
    """Studio offers at most the device's maxSampleLengthS; a longer lengthMs reached the board, which refused it
    after serve had said success (the board is the one that knows its RAM and flash)."""
    with asked_to_sample(server, sensor=sensor, lengthMs=length, intervalMs=FASTEST[sensor]) as (dev, status, reply):
        assert_refused_before_the_device(server, dev, status, reply, "lengthMs", longest, sensor)


@pytest.mark.parametrize("sensor, length", [("Microphone", 4000), ("Accelerometer", 60000)])
def test_a_length_the_sensor_records_is_passed_on(server, sensor, length):
    with asked_to_sample(server, sensor=sensor, lengthMs=length, intervalMs=FASTEST[sensor]) as (dev, status, reply):
        assert reply["success"] is True, reply
        assert dev.recv()["sample"]["length"] == length
