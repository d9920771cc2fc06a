"""Small helpers shared by the tests."""

import io
import math
import struct
import wave

from uingest_tools import datafolder


def read_index(data_dir):
    """The records of a `uingest serve` data folder's index.jsonl ([] if none yet); every line must read."""
    try:
        records, unreadable = datafolder.read_index(str(data_dir))
    except FileNotFoundError:
        return []
    assert unreadable == 0, "%d unreadable lines in %s/index.jsonl" % (unreadable, data_dir)
    return records


def f32(x):
    """x rounded to float32, as a window's 'f' array stores it."""
    return struct.unpack("<f", struct.pack("<f", x))[0]


def wav_bytes(frames, rate=16000):
    """A mono int16 WAV file: a tone."""
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(b"".join(int(8000 * math.sin(i / 9)).to_bytes(2, "little", signed=True) for i in range(frames)))
    return buf.getvalue()


class ChunkSink:
    """A sink that keeps each write as a separate chunk."""

    def __init__(self):
        self.parts = []

    def write(self, b):
        self.parts.append(bytes(b))
        return len(b)

    def value(self):
        return b"".join(self.parts)


# -- the sensor and board tests


G = 9.80665  # standard gravity, m/s2 per g


def rows_of(w):
    """A window's rows, as lists of values."""
    return [list(w.samples[i * w.width : (i + 1) * w.width]) for i in range(w.rows)]


def csv_file(tmp_path, text, name="data.csv"):
    """A file of text in tmp_path (a CSV file for uingest.sensors.csv_replay): its path."""
    p = tmp_path / name
    p.write_text(text)
    return str(p)
