"""A fake remote management device for the tests: a `websockets` client that says hello (JSON or CBOR),
answers sample requests with Edge Impulse's replies in order, and posts the recording to the ingestion
route the request names, as a board does (a data acquisition message signed with the request's hmacKey,
x-file-name from the label)."""

from __future__ import annotations

import http.client
import json
import math
import queue
import threading
import time

import cbor2
from websockets.sync.client import connect

from uingest import message
from uingest.window import Window

IMU = [("accX", "m/s2"), ("accY", "m/s2"), ("accZ", "m/s2")]
SENSORS = [
    {"name": "Accelerometer", "maxSampleLengthS": 60, "frequencies": [62.5, 100]},
    {"name": "Microphone", "maxSampleLengthS": 4, "frequencies": [16000]},
]


def hello(api_key, device_id="AA:BB:CC:00:11:22", device_type="UINGEST_FAKE", sensors=SENSORS, version=3):
    return {
        "hello": {
            "version": version,
            "apiKey": api_key,
            "deviceId": device_id,
            "deviceType": device_type,
            "connection": "ip",
            "sensors": sensors,
            "supportsSnapshotStreaming": False,
        }
    }


class FakeDevice:
    """One connection. send()/recv() in the session's encoding; run_sample() plays a whole recording."""

    def __init__(self, url, encoding="json"):
        self.encoding = encoding
        self.ws = connect(url, compression=None, open_timeout=5, close_timeout=2, legacy=True)

    def send(self, msg):
        self.ws.send(cbor2.dumps(msg) if self.encoding == "cbor" else json.dumps(msg))

    def recv(self, timeout=10):
        data = self.ws.recv(timeout=timeout)
        if self.encoding == "cbor":
            assert isinstance(data, bytes), "a CBOR session's messages are binary frames: %r" % data
            return cbor2.loads(data)
        assert isinstance(data, str), "a JSON session's messages are text frames: %r" % data
        return json.loads(data)

    def say_hello(self, api_key, **kw):
        self.send(hello(api_key, **kw))
        return self.recv()

    def close(self):
        self.ws.close()

    def record(self, request, http_port, api_key, device_id, steps=0.05, rows=None):
        """Reply to a sample request as a board does, post the window; the ingestion status."""
        s = request["sample"]
        self.send({"sample": True})
        time.sleep(steps)
        self.send({"sampleStarted": True})
        for pct in (25, 50, 75):
            time.sleep(steps)
            self.send({"sampleReading": True, "progressPercentage": pct})
        rows = rows or max(1, round(s["length"] / s["interval"]))
        w = Window(IMU, s["interval"], rows)
        for i in range(rows):
            w.append(math.sin(i / 5) * 9.81, math.cos(i / 7), 9.81)
        body = message.encode(w, "json", hmac_key=s["hmacKey"], device_type="UINGEST_FAKE", device_name=device_id)
        self.send({"sampleUploading": True})
        time.sleep(steps)  # a board's upload takes a while
        conn = http.client.HTTPConnection("127.0.0.1", http_port, timeout=10)
        try:
            conn.request(
                "POST",
                s["path"],
                body,
                {
                    "Content-Type": "application/json",
                    "x-api-key": api_key,
                    "x-file-name": s["label"] + ".json",
                },
            )
            r = conn.getresponse()
            reply = r.read()
        finally:
            conn.close()
        if r.status == 200:
            self.send({"sampleFinished": True})
        else:
            self.send({"sample": False, "error": "upload failed: %d %s" % (r.status, reply[:100])})
        return r.status


class DeviceThread(threading.Thread):
    """A FakeDevice that answers every sample request in the background (for the browser test)."""

    def __init__(self, url, api_key, http_port, device_id, encoding="json", steps=0.3):
        super().__init__(daemon=True)
        self.device = FakeDevice(url, encoding)
        self.api_key, self.http_port, self.device_id, self.steps = api_key, http_port, device_id, steps
        self.requests: queue.Queue = queue.Queue()
        self.ready = threading.Event()
        self.error = None

    def run(self):
        try:
            reply = self.device.say_hello(self.api_key, device_id=self.device_id)
            assert reply == {"hello": True}, reply
            self.ready.set()
            while True:
                try:
                    msg = self.device.recv(timeout=60)
                except TimeoutError:
                    continue
                if "sample" in msg:
                    self.requests.put(msg)
                    self.device.record(msg, self.http_port, self.api_key, self.device_id, steps=self.steps)
        except Exception as e:  # the connection closed at the end of the test
            self.error = e
            self.ready.set()
