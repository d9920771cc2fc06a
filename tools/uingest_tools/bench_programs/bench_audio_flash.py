# 10 s of 16 kHz int16 audio (320 KB, more than the heap) recorded to a file
# and streamed from it into a signed CBOR message, run ON MicroPython (unix
# port) with a small -X heapsize, by `uingest bench` and test_filewindow.py.
# stdin, one a line: URL, file path, API key, HMAC key, rows (default 160000).
# Prints "code <heap bytes held after the imports>", "sha256 <hex of the
# message>", "length <bytes>", then "outcome <kind> <status>" and "us <upload time>".
import gc
import hashlib
import sys
import time
from binascii import hexlify
from struct import pack_into

from uingest import http
from uingest.filewindow import FileWindow
from uingest.message import Message
from uingest.upload import post_window

url = sys.stdin.readline().strip()
path = sys.stdin.readline().strip()
api_key = sys.stdin.readline().strip()
hmac_key = sys.stdin.readline().strip()
rows = int(sys.stdin.readline().strip() or "160000")
IAT = 1700000000
NAME = "audio-flash"
CHUNK = 512  # samples per driver read (an I2S DMA buffer)
gc.collect()
print("code", gc.mem_alloc())  # the modules' bytecode and names: in flash when frozen into a board's firmware
client = http.Client(url)  # made at boot, like the app's: its send buffer is one block

# Record: what an I2S loop does, one reused buffer of raw little-endian
# samples (what I2S.readinto fills) appended to the file.
w = FileWindow(path, (("audio", "wav"),), 1000 / 16000)
buf = bytearray(2 * CHUNK)
i = 0
while i < rows:
    n = rows - i if rows - i < CHUNK else CHUNK
    for k in range(n):
        pack_into("<h", buf, 2 * k, (((i + k) * 40503) & 0xFFFF) - 32768)  # a permutation of every int16
    w.append_chunk(buf, n)
    i += n
buf = None
gc.collect()


class Hash:
    def __init__(self):
        self.h = hashlib.sha256()

    def write(self, b):
        self.h.update(b)
        return len(b)


msg = Message(w, "cbor", hmac_key=hmac_key, device_name=NAME, iat=IAT)
sink = Hash()
msg.write(sink)
print("sha256", hexlify(sink.h.digest()).decode())
print("length", msg.length)
msg = sink = None
gc.collect()

t0 = time.ticks_us()
out = post_window(client, w, api_key, label="audio", hmac_key=hmac_key, device_name=NAME, iat=IAT)
print("outcome", out.kind, out.status)
print("us", time.ticks_diff(time.ticks_us(), t0))
client.close()
