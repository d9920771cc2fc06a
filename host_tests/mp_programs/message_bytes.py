"""Usage: message_bytes.py KERNELS CASE HMAC_KEY (KERNELS True or False, CASE
a name in sample_windows.CASES). Encodes the case's window in CBOR and JSON,
unsigned and signed: prints one header line per message (case, format,
signed, whether Message.write() streamed as many bytes as encode() returned
and the same ones, length), followed by the message's raw bytes."""

import gc
import hashlib
import sys

import sample_windows
from hash_sink import HashSink
from uingest import message

kernels, case, key = sys.argv[1] == "True", sys.argv[2], sys.argv[3]


print("kernels", message.use_kernels(kernels))
w = sample_windows.CASES[case]()
for fmt in ("cbor", "json"):
    for k in (None, key):
        body = message.encode(w, fmt, hmac_key=k, device_name="mp-1", iat=1700000000)
        want = hashlib.sha256(body).digest()
        m = message.Message(w, fmt, hmac_key=k, device_name="mp-1", iat=1700000000)
        s = HashSink()
        n = m.write(s)
        print(case, fmt, k is not None, n == len(body), s.h.digest() == want, len(body))
        sys.stdout.buffer.write(body)
        body = m = s = None
        gc.collect()
