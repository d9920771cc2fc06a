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


PCM, IEEE_FLOAT = 1, 3  # WAV format codes (mmreg.h)
_SUBTYPE_TAIL = b"\x00\x00\x00\x00\x10\x00\x80\x00\x00\xaa\x00\x38\x9b\x71"  # KSDATAFORMAT_SUBTYPE_*


def wav_header(fmt, channels, rate, bits, data_size=0, extensible=False, block_align=None, byte_rate=None):
    """A WAV file's bytes up to its data chunk's header, written by hand (struct) for what Python's wave
    module cannot write: float, WAVE_FORMAT_EXTENSIBLE, a header that contradicts itself."""
    block = channels * bits // 8 if block_align is None else block_align
    per_s = rate * block if byte_rate is None else byte_rate
    head = struct.pack("<HHIIHH", 0xFFFE if extensible else fmt, channels, rate, per_s, block, bits)
    if extensible:  # cbSize 22, valid bits, channel mask, sub-format GUID
        head += struct.pack("<HHIH", 22, bits, 0, fmt) + _SUBTYPE_TAIL
    body = b"WAVEfmt " + struct.pack("<I", len(head)) + head + b"data" + struct.pack("<I", data_size)
    return b"RIFF" + struct.pack("<I", len(body) + data_size) + body


def wav_by_hand(fmt, rate, bits, frames, extensible=False):
    """A whole WAV file, by hand: frames is a list of frames, each one number per channel (8-bit PCM is
    unsigned on disk: given here as -128..127)."""
    pack = {
        8: lambda v: bytes([v + 128]),
        16: lambda v: struct.pack("<h", v),
        24: lambda v: v.to_bytes(3, "little", signed=True),
        32: (lambda v: struct.pack("<f", v)) if fmt == IEEE_FLOAT else (lambda v: struct.pack("<i", v)),
    }[bits]
    data = b"".join(pack(v) for frame in frames for v in frame)
    return wav_header(fmt, len(frames[0]), rate, bits, len(data), extensible) + data


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
