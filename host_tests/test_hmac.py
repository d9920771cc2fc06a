"""uingest.hmac against CPython's hmac."""

import hashlib
import hmac as std_hmac
import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from uingest import hmac


@pytest.mark.parametrize("key_len", range(0, 201))
def test_equal_to_cpython_for_keys_of_every_length(key_len):
    rnd = random.Random(key_len)
    key = bytes(rnd.randrange(256) for _ in range(key_len))
    msg = bytes(rnd.randrange(256) for _ in range(rnd.randrange(0, 3000)))
    h = hmac.new(key)
    pos = 0
    while pos < len(msg):  # random chunks, empty ones included
        step = rnd.randrange(0, 300)
        h.update(msg[pos : pos + step])
        pos += step
    want = std_hmac.new(key, msg, hashlib.sha256)
    assert h.digest() == want.digest()
    assert h.hexdigest() == want.hexdigest()


@given(st.text(max_size=100), st.binary(max_size=500))
def test_str_key_is_its_utf8_bytes(key, msg):
    assert hmac.new(key, msg).hexdigest() == std_hmac.new(key.encode(), msg, hashlib.sha256).hexdigest()


def test_rfc4231_case_2():
    h = hmac.new(b"Jefe", b"what do ya want for nothing?")
    assert h.hexdigest() == "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"


def test_digest_twice_and_update_after_digest():
    h = hmac.new(b"k", b"m")
    assert h.digest() == h.digest()
    with pytest.raises(ValueError, match="finalised"):
        h.update(b"more")


def test_memoryview_and_bytearray_messages():
    h = hmac.new(bytearray(b"k"))
    h.update(memoryview(b"abc")[1:])
    assert h.digest() == std_hmac.new(b"k", b"bc", hashlib.sha256).digest()


def test_bad_key_type():
    with pytest.raises(TypeError):
        hmac.new(123)
    with pytest.raises(ValueError):
        hmac.new(b"k", digestmod="md5")
