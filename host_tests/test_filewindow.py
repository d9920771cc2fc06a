"""A window recorded to a file (uingest.filewindow.FileWindow) and streamed
from it into a signed message: the same bytes as the in-RAM window, on
CPython and inside MicroPython with a heap far smaller than the window
(10 s of 16 kHz int16 audio, 320 KB)."""

import hashlib
import os
import random
from array import array

import cbor2
import pytest

from helpers import read_index
from uingest import message
from uingest.filewindow import FileWindow
from uingest.window import Window
from uingest_tools.acquisition import decode, verify_signature
from uingest_tools.bench import BENCH_AUDIO_FLASH as BENCH
from uingest_tools.serve import ServerThread, create_app

API_KEY = "ei_filewindow"
HMAC_KEY = "filewindow-hmac"
AUDIO_ROWS = 160000
IAT = 1700000000
NAME = "audio-flash"
# The 10 s audio program on the x64 unix port: `uingest bench` finds 56K the
# smallest heap (2K steps); this test passes at 56K too, and runs at 60K so a
# longer temp path or port number cannot tip it over. ~39 KB of it is the
# firmware's modules loaded into RAM, which a board with frozen modules keeps
# in flash; the target was 48K.
AUDIO_HEAP = "60K"


def audio_value(i):
    return ((i * 40503) & 0xFFFF) - 32768  # what bench_audio_flash.py records


def ram_window(sensors, interval_ms, typecode, values):
    w = Window(sensors, interval_ms, len(values) // len(sensors), typecode)
    w.samples = array(typecode, values)
    w.commit(w.capacity)
    return w


def file_window(path, sensors, interval_ms, typecode, values, chunk_rows=97):
    w = FileWindow(str(path), sensors, interval_ms, typecode)
    width = len(sensors)
    a = array(typecode, values)
    for r in range(0, len(values) // width, chunk_rows):
        part = a[r * width : (r + chunk_rows) * width]
        w.append_chunk(part, len(part) // width)
    w.close()  # the recording is done: its rows are in the file
    return w


class Sink:
    def __init__(self):
        self.h = hashlib.sha256()
        self.n = 0

    def write(self, b):
        self.h.update(b)
        self.n += len(b)
        return len(b)


SENSORS = {1: (("audio", "wav"),), 2: (("x", "m/s2"), ("y", "m/s2"))}


@pytest.mark.parametrize("fmt", ["cbor", "json"])
@pytest.mark.parametrize("typecode", ["h", "f"])
@pytest.mark.parametrize("width", [1, 2])
@pytest.mark.parametrize("key", [None, HMAC_KEY])
def test_same_bytes_as_the_ram_window(tmp_path, fmt, typecode, width, key):
    rnd = random.Random(width)
    n = 1000 * width  # several chunks of the encoder's scratch buffer
    if typecode == "h":
        values = [
            rnd.choice([rnd.randrange(-32768, 32768), rnd.randrange(-300, 300), rnd.randrange(-24, 24)])
            for _ in range(n)
        ]
    else:
        values = list(array("f", [rnd.uniform(-20, 20) for _ in range(n)]))
    sensors = SENSORS[width]
    want = message.encode(ram_window(sensors, 10, typecode, values), fmt, hmac_key=key, iat=5)
    fw = file_window(tmp_path / "w.bin", sensors, 10, typecode, values)
    assert fw.rows == n // width and os.path.getsize(tmp_path / "w.bin") == n * (4 if typecode == "f" else 2)
    msg = message.Message(fw, fmt, hmac_key=key, iat=5)
    sink = Sink()
    assert msg.write(sink) == msg.length == len(want)
    assert sink.h.digest() == hashlib.sha256(want).digest()
    assert message.encode(fw, fmt, hmac_key=key, iat=5) == want  # small file windows encode() too
    assert fw._rf is None  # every pass read to the end: the file is closed


def test_append_bytes_keep_and_clear(tmp_path):
    path = str(tmp_path / "a.bin")
    w = FileWindow(path, SENSORS[2], 1, "h")
    raw = array("h", [1, -2, 300, -4000]).tobytes()
    assert w.append_chunk(bytearray(raw), 2) == 2 and w.rows == 2 and len(w) == 2
    assert w.append_chunk(raw + b"\0\0\0\0", 1) == 1 and w.rows == 3  # only the rows asked for
    with pytest.raises(ValueError, match="fewer than 3 rows"):
        w.append_chunk(raw, 3)
    w.close()
    assert FileWindow(path, SENSORS[2], 1, "h", keep=True).rows == 3  # a recording that survived a reboot
    into = array("h", bytes(8))
    assert w.read_rows(1, 2, into) == 2 and list(into) == [300, -4000, 1, -2]
    with pytest.raises(ValueError, match="not in the window"):
        w.read_rows(2, 2, into)
    w.clear()
    assert w.rows == 0 and os.path.getsize(path) == 0
    with pytest.raises(ValueError, match="no rows"):
        message.Message(w)
    assert FileWindow(str(tmp_path / "missing.bin"), SENSORS[1], 1, keep=True).rows == 0
    with pytest.raises(ValueError, match="typecode"):
        FileWindow(path, SENSORS[1], 1, "b")


def test_a_recording_keeps_one_append_handle_until_it_is_read(tmp_path):
    path = str(tmp_path / "r.bin")
    w = FileWindow(path, SENSORS[1], 1, "h")
    for k in range(5):
        w.append_chunk(array("h", [k, -k]), 2)
    handle = w._wf
    assert handle is not None and w.rows == 10  # one open for the whole recording
    into = array("h", bytes(20))
    assert w.read_rows(0, 10, into) == 10 and list(into) == [0, 0, 1, -1, 2, -2, 3, -3, 4, -4]
    assert w._wf is None and handle.closed and os.path.getsize(path) == 20
    w.append_chunk(array("h", [7]), 1)  # the next recording starts after clear(); here it just appends
    w.clear()
    assert w._wf is None and os.path.getsize(path) == 0


def expected_audio_message():
    values = [audio_value(i) for i in range(AUDIO_ROWS)]
    w = ram_window((("audio", "wav"),), 1000 / 16000, "h", values)
    return values, message.encode(w, "cbor", hmac_key=HMAC_KEY, device_name=NAME, iat=IAT)


def test_ten_seconds_of_audio_on_cpython(tmp_path):
    values, want = expected_audio_message()
    fw = file_window(tmp_path / "audio.bin", (("audio", "wav"),), 1000 / 16000, "h", values, chunk_rows=512)
    assert os.path.getsize(tmp_path / "audio.bin") == 2 * AUDIO_ROWS
    sink = Sink()
    msg = message.Message(fw, "cbor", hmac_key=HMAC_KEY, device_name=NAME, iat=IAT)
    assert msg.write(sink) == len(want)
    assert sink.h.hexdigest() == hashlib.sha256(want).hexdigest()


def test_ten_seconds_of_audio_from_flash_on_micropython(mpy, bundle, tmp_path):
    """The bench program inside MicroPython: records 160000 samples to a file,
    streams the signed message to a hashing sink, then uploads it to `uingest serve`."""
    _, want = expected_audio_message()
    data = str(tmp_path / "data")
    srv = ServerThread(create_app(data, api_key=API_KEY, hmac_key=HMAC_KEY)).start()
    try:
        stdin = "\n".join([srv.url, str(tmp_path / "audio.bin"), API_KEY, HMAC_KEY, str(AUDIO_ROWS)]) + "\n"
        proc = mpy.run_program(BENCH, heap=AUDIO_HEAP, stdin=stdin.encode(), path=bundle)
    finally:
        srv.stop()
    out = dict(line.split(" ", 1) for line in proc.stdout.decode().splitlines())
    assert out["sha256"] == hashlib.sha256(want).hexdigest()
    assert int(out["length"]) == len(want)
    assert out["outcome"] == "ACCEPTED 200"
    (entry,) = read_index(data)
    assert entry["signature"] == "valid" and entry["rows"] == AUDIO_ROWS and entry["label"] == "audio"
    with open(os.path.join(data, entry["file"]), "rb") as f:
        body = f.read()
    assert body == want
    msg = decode(body, "cbor")
    assert msg == cbor2.loads(want)
    assert msg["payload"]["values"] == [audio_value(i) for i in range(AUDIO_ROWS)]
    assert msg["payload"]["interval_ms"] == 0.0625 and msg["payload"]["device_name"] == NAME
    assert verify_signature(body, "cbor", HMAC_KEY)


def test_file_window_kernels_on_micropython(mpy, bundle, tmp_path):
    """The viper kernels read the small row array too (rows 0..n-1 of each chunk)."""
    proc = mpy.run_program("file_window_kernels.py", tmp_path / "k.bin", heap="256K", path=bundle)
    out = proc.stdout.decode().split("\n")[:-1]
    assert out[0] == "True"
    assert len(out) == 9 and all(line.endswith("True") for line in out[1:]), out
