# An I2S MEMS microphone (INMP441) through machine.I2S, into int16 windows.
#
# What the INMP441 sends, and what this driver assumes:
# - 24-bit two's complement samples, MSB first, Philips I2S timing, in 32-bit
#   slots (64 SCK cycles per WS period). L/R tied to GND: left slot; to VDD:
#   right slot. The other slot is tri-stated, so read MONO, not STEREO.
# - The board opens machine.I2S(..., mode=I2S.RX, bits=32, format=I2S.MONO,
#   rate=rate_hz) in blocking mode (no irq): readinto() then fills the whole
#   buffer, one 32-bit word per sample, in the CPU's byte order, which is
#   little-endian on the ESP32 family (and on the hosts the tests run on).
# - The audio is in the top 24 bits of each word, the low 8 bits are 0.
#   shift=16 keeps the top 16 bits; a smaller shift is digital gain
#   (14 = x4, the INMP441 is quiet at -26 dBFS for 94 dB SPL), saturated to
#   int16 rather than wrapped.
#
# The read buffer is an array('h'), two halves per word: half 2k+1 is the top
# 16 bits of sample k as a signed int16, half 2k the low 16 bits. So the
# conversion is integer indexing into preallocated arrays; the values stay
# small ints, no heap object per sample.

from ..window import new_array

_MIN_SHIFT = 8  # below this the low, always-zero byte would count
_MAX_SHIFT = 16


class I2SMic:
    """I2SMic(i2s, rate_hz=16000, shift=16, chunk_frames=256): fill(window)
    reads until the window is full."""

    def __init__(self, i2s, rate_hz=16000, shift=16, chunk_frames=256):
        if isinstance(shift, bool) or not isinstance(shift, int) or not _MIN_SHIFT <= shift <= _MAX_SHIFT:
            raise ValueError(
                "shift: expected %d..%d (16 keeps the top 16 bits), got %r" % (_MIN_SHIFT, _MAX_SHIFT, shift)
            )
        if isinstance(chunk_frames, bool) or not isinstance(chunk_frames, int) or chunk_frames < 1:
            raise ValueError("chunk_frames: expected a positive number of samples per read")
        self._i2s = i2s
        self.rate_hz = rate_hz
        self.shift = shift
        self.sensors = (("audio", "wav"),)
        self.typecode = "h"
        self._chunk = chunk_frames
        self._raw = new_array("h", 2 * chunk_frames)  # 1 KB at 256 frames, reused for every read
        self._view = memoryview(self._raw)

    def fill(self, window):
        """Read from I2S into window.samples until the window is full."""
        if window.typecode != "h" or window.width != 1:
            raise ValueError("I2SMic: needs a one-sensor window with typecode 'h'")
        dst = window.samples
        raw = self._raw
        up = _MAX_SHIFT - self.shift
        down = self.shift
        while window.rows < window.capacity:
            n = window.capacity - window.rows
            if n >= self._chunk:
                n = self._chunk
                view = self._view
            else:
                view = self._view[: 2 * n]  # the last, shorter read of a window
            got = self._i2s.readinto(view)
            if not got or got % 4:
                raise OSError("I2S: readinto gave %r bytes, expected whole 32-bit samples (blocking mode)" % (got,))
            frames = got // 4
            j = window.rows
            if up == 0:
                for k in range(1, 2 * frames, 2):
                    dst[j] = raw[k]
                    j += 1
            else:
                for k in range(0, 2 * frames, 2):
                    # (word >> shift) from its halves, without a 32-bit int
                    # (which would not be a small int on a 32-bit port)
                    v = (raw[k + 1] << up) + ((raw[k] & 0xFFFF) >> down)
                    if v > 32767:
                        v = 32767
                    elif v < -32768:
                        v = -32768
                    dst[j] = v
                    j += 1
            window.commit(frames)
