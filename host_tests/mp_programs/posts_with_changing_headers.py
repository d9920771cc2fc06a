"""Usage: posts_with_changing_headers.py URL SENDS_JSON. Posts a 2-row signed
window through one http.Client with upload.send for each send, a JSON object
of label, and optionally fmt, file_name and body_fmt (the body's own format);
prints each outcome's kind."""

import json
import sys

from sample_windows import imu
from uingest import http, upload
from uingest.message import Message

URL, SENDS = sys.argv[1], json.loads(sys.argv[2])
client = http.Client(URL, timeout_ms=5000)
for kw in SENDS:
    fmt = kw.get("fmt", "cbor")
    body = Message(imu(2), kw.get("body_fmt", fmt), "hmac_key_456")
    print(upload.send(client, body, "ei_test_api_key_123", kw["label"], fmt=fmt, file_name=kw.get("file_name")).kind)
client.close()
