"""WAV files as Edge Impulse takes them: the header read and checked, the samples decoded per channel.

Taken: PCM integer at 8, 16, 24 or 32 bits and IEEE float at 32 bits, one or more channels, plain
(``WAVE_FORMAT_PCM`` 1, ``WAVE_FORMAT_IEEE_FLOAT`` 3) or ``WAVE_FORMAT_EXTENSIBLE`` (0xFFFE) with one of
those as its sub-format. A header that contradicts itself (block align, byte rate, a data chunk longer than
the file or not a whole number of frames) is refused with a one-line reason. No third-party package: the
collector and `uingest inspect` both read WAV through this module, and neither the stdlib's ``wave``
(PCM only) nor its ``audioop`` (gone in 3.13) reads them all.
"""

from __future__ import annotations

import array
import struct
import sys

PCM, IEEE_FLOAT, EXTENSIBLE = 1, 3, 0xFFFE
PCM_BITS = (8, 16, 24, 32)
# the 14 bytes that follow the format code in a KSDATAFORMAT_SUBTYPE_* GUID (mmreg.h)
_GUID_TAIL = b"\x00\x00\x00\x00\x10\x00\x80\x00\x00\xaa\x00\x38\x9b\x71"


class InvalidWav(ValueError):
    """Not a WAV file we take; str() is the one-line reason."""


class WavInfo:
    """What the header says: encoding ('pcm' or 'float'), channels, sample_rate, bits, frames, and where the
    samples are (data_offset, data_size)."""

    def __init__(self, encoding, channels, sample_rate, bits, data_offset, data_size):
        self.encoding = encoding
        self.channels = channels
        self.sample_rate = sample_rate
        self.bits = bits
        self.data_offset = data_offset
        self.data_size = data_size

    @property
    def frames(self) -> int:
        return self.data_size // (self.channels * self.bits // 8)

    @property
    def duration_ms(self) -> float:
        return self.frames * 1000.0 / self.sample_rate

    def describe(self) -> str:
        kind = "float" if self.encoding == "float" else "PCM"
        return "%d channel%s, %d Hz, %d-bit %s" % (
            self.channels,
            "" if self.channels == 1 else "s",
            self.sample_rate,
            self.bits,
            kind,
        )


def _chunks(data: bytes):
    """(id, offset of its body, declared size) of each chunk after the RIFF header, in order."""
    pos = 12
    while pos + 8 <= len(data):
        cid, size = data[pos : pos + 4], struct.unpack_from("<I", data, pos + 4)[0]
        yield cid, pos + 8, size
        pos += 8 + size + (size & 1)  # chunks are padded to an even size


def _encoding(fmt_code: int, bits: int, body: bytes) -> str:
    if fmt_code == EXTENSIBLE:
        if len(body) < 40:
            raise InvalidWav("WAVE_FORMAT_EXTENSIBLE fmt chunk is %d bytes; it needs 40" % len(body))
        cb_size, valid_bits = struct.unpack_from("<HH", body, 16)
        sub, tail = struct.unpack_from("<H", body, 24)[0], body[26:40]
        if cb_size < 22 or tail != _GUID_TAIL:
            raise InvalidWav("WAVE_FORMAT_EXTENSIBLE fmt chunk has no valid sub-format GUID")
        if not 0 < valid_bits <= bits:
            raise InvalidWav("WAV valid bits per sample is %d for %d-bit containers" % (valid_bits, bits))
        fmt_code = sub
    if fmt_code == PCM:
        if bits not in PCM_BITS:
            raise InvalidWav("%d-bit PCM WAV is not taken: send 8, 16, 24 or 32-bit" % bits)
        return "pcm"
    if fmt_code == IEEE_FLOAT:
        if bits != 32:
            raise InvalidWav("%d-bit float WAV is not taken: send 32-bit float" % bits)
        return "float"
    raise InvalidWav("WAV format code 0x%04x is not taken: send PCM or 32-bit IEEE float" % fmt_code)


def parse(data: bytes) -> WavInfo:
    """The header of a WAV file, checked; raise InvalidWav."""
    if len(data) < 12 or data[:4] != b"RIFF" or data[8:12] != b"WAVE":
        raise InvalidWav("not a WAV file (no RIFF....WAVE header)")
    fmt_body = None
    for cid, at, size in _chunks(data):
        if cid == b"fmt ":
            if size < 16 or at + size > len(data):
                raise InvalidWav("WAV fmt chunk is cut or shorter than 16 bytes")
            fmt_body = data[at : at + size]
        elif cid == b"data":
            if fmt_body is None:
                raise InvalidWav("WAV data chunk comes before its fmt chunk")
            fmt_code, channels, rate, byte_rate, block_align, bits = struct.unpack_from("<HHIIHH", fmt_body)
            encoding = _encoding(fmt_code, bits, fmt_body)
            if channels < 1:
                raise InvalidWav("WAV has %d channels" % channels)
            if rate < 1:
                raise InvalidWav("WAV sample rate is %d Hz" % rate)
            if block_align != channels * bits // 8:
                raise InvalidWav(
                    "WAV block align is %d; %d channels of %d bits need %d"
                    % (block_align, channels, bits, channels * bits // 8)
                )
            if byte_rate != rate * block_align:
                raise InvalidWav(
                    "WAV byte rate is %d; %d Hz x %d bytes is %d" % (byte_rate, rate, block_align, rate * block_align)
                )
            if at + size > len(data):
                raise InvalidWav("WAV data chunk says %d bytes; the file holds %d" % (size, len(data) - at))
            if size % block_align:
                raise InvalidWav("WAV data is %d bytes: not a whole number of %d-byte frames" % (size, block_align))
            if size == 0:
                raise InvalidWav("WAV file holds no samples")
            return WavInfo(encoding, channels, rate, bits, at, size)
    raise InvalidWav("WAV file has no fmt chunk" if fmt_body is None else "WAV file has no data chunk")


def channels(data: bytes, info: WavInfo | None = None) -> list:
    """One sequence of numbers per channel: integers as stored (8-bit PCM, which is unsigned, shifted to
    -128..127), floats for float WAV. Raises InvalidWav."""
    info = info or parse(data)
    raw = data[info.data_offset : info.data_offset + info.data_size]
    if info.bits == 24:
        samples = array.array(
            "i", (int.from_bytes(raw[i : i + 3], "little", signed=True) for i in range(0, len(raw), 3))
        )
    else:
        code = {8: "B", 16: "h", 32: "f" if info.encoding == "float" else "i"}[info.bits]
        samples = array.array(code)
        if samples.itemsize != info.bits // 8:  # "i" is 4 bytes on every platform CPython runs on
            raise InvalidWav("this platform has no %d-bit array type" % info.bits)
        samples.frombytes(raw)
        if sys.byteorder == "big" and info.bits > 8:
            samples.byteswap()
        if info.bits == 8:
            samples = array.array("h", (v - 128 for v in samples))
    return [samples[c :: info.channels] for c in range(info.channels)]
