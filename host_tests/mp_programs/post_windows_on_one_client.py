"""Usage: post_windows_on_one_client.py URL N TIMEOUT_MS API_KEY HMAC_KEY.
Posts N signed IMU windows through one http.Client: prints, as JSON, each
outcome, the client's connection count and the TLS modules loaded."""

import json
import sys

import sample_windows
from uingest import http
from uingest.upload import post_window

url, n, timeout_ms = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
api_key, hmac_key = sys.argv[4], sys.argv[5]
client = http.Client(url, timeout_ms=timeout_ms)
out = []
for _ in range(n):
    o = post_window(client, sample_windows.imu(20), api_key, label="wave", hmac_key=hmac_key, device_name="mp")
    out.append([o.kind, o.status, o.detail])
tls = [m for m in sys.modules if "tls" in m or "ssl" in m]
print(json.dumps({"outcomes": out, "connections": client.connections, "tls_modules": tls}))
