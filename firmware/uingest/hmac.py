# HMAC-SHA256 (RFC 2104) on hashlib.sha256: MicroPython ships no hmac module,
# and its sha256 objects have no copy(), so each HMAC keeps its own inner and
# outer hash and finalises once.
import hashlib
from binascii import hexlify

from micropython import const

_BLOCK = const(64)


_last: list = [None, None, None]  # key, ipad, opad: a device signs every window with one key


def _pads(key):
    if key is _last[0]:
        return _last[1], _last[2]
    original = key
    if isinstance(key, str):
        key = key.encode()
    elif not isinstance(key, (bytes, bytearray, memoryview)):
        raise TypeError("HMAC key must be str or bytes")
    if len(key) > _BLOCK:
        key = hashlib.sha256(key).digest()
    ipad = bytearray(_BLOCK)
    opad = bytearray(_BLOCK)
    for i in range(_BLOCK):
        k = key[i] if i < len(key) else 0
        ipad[i] = k ^ 0x36
        opad[i] = k ^ 0x5C
    if isinstance(original, (str, bytes)):  # immutable: safe to reuse
        _last[0], _last[1], _last[2] = original, ipad, opad
    return ipad, opad


class HMAC:
    digest_size = 32
    block_size = 64
    name = "hmac-sha256"

    def __init__(self, key, msg=None):
        ipad, self._opad = _pads(key)
        self._inner = hashlib.sha256(ipad)
        self._digest = None
        if msg is not None:
            self.update(msg)

    def update(self, msg):
        if self._digest is not None:
            raise ValueError("HMAC already finalised by digest()")
        self._inner.update(msg)

    def digest(self):
        # sha256.digest() finalises on MicroPython, so compute once and keep it.
        if self._digest is None:
            outer = hashlib.sha256(self._opad)
            outer.update(self._inner.digest())
            self._digest = outer.digest()
        return self._digest

    def hexdigest(self):
        return hexlify(self.digest()).decode()


def new(key, msg=None, digestmod=None):
    """HMAC-SHA256 object; digestmod is accepted for CPython compatibility
    and must be None, "sha256" or hashlib.sha256."""
    if digestmod not in (None, "sha256", hashlib.sha256):
        raise ValueError("only sha256 is supported")
    return HMAC(key, msg)
