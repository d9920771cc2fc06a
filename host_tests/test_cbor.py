"""uingest.cbor, judged by the RFC's own bytes and by cbor2's decoder."""

import math
import struct
from collections import OrderedDict

import cbor2
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rfc8949_vectors import OUT_OF_RANGE, VECTORS
from uingest import cbor


@pytest.mark.parametrize("expr,expected", VECTORS, ids=[v[0][:40] for v in VECTORS])
def test_rfc8949_appendix_a(expr, expected):
    value = eval(expr, {"OrderedDict": OrderedDict})
    assert cbor.dumps(value).hex() == expected


@pytest.mark.parametrize("expr", OUT_OF_RANGE)
def test_ints_outside_cbor_range_raise(expr):
    with pytest.raises(ValueError, match="CBOR"):
        cbor.dumps(int(expr))


def test_unsupported_type_raises_type_error():
    with pytest.raises(TypeError, match="set"):
        cbor.dumps({1, 2})


def test_dump_writes_to_a_sink():
    class Sink:
        def __init__(self):
            self.parts = []

        def write(self, b):
            self.parts.append(bytes(b))

    s = Sink()
    cbor.dump({"a": [1, 2.5, b"x", None]}, s)
    assert b"".join(s.parts) == cbor.dumps({"a": [1, 2.5, b"x", None]})
    assert cbor2.loads(b"".join(s.parts)) == {"a": [1, 2.5, b"x", None]}


def test_memoryview_is_its_bytes():
    assert cbor.dumps(memoryview(b"abc")) == cbor.dumps(b"abc")
    assert cbor.dumps(bytearray(b"abc")) == bytes.fromhex("43616263")


def test_tuple_is_an_array():
    assert cbor.dumps((1, 2)) == cbor.dumps([1, 2])


def test_nesting_limit():
    deep = []
    for _ in range(100):
        deep = [deep]
    with pytest.raises(ValueError, match="nesting"):
        cbor.dumps(deep)


def bits(x):
    return struct.pack(">d", x)


def fits(fmt, x):
    try:
        return struct.unpack(fmt, struct.pack(fmt, x))[0] == x
    except OverflowError:
        return False


@given(st.floats(allow_nan=False))
@settings(max_examples=2000)
def test_floats_round_trip_bit_exact_in_shortest_width(x):
    b = cbor.dumps(x)
    assert bits(cbor2.loads(b)) == bits(x)
    # shortest: no narrower width would have held the value
    assert b[0] in (0xF9, 0xFA, 0xFB)
    if b[0] == 0xFA:
        assert not fits(">e", x)
    if b[0] == 0xFB:
        assert not fits(">f", x)


@given(st.floats(width=32, allow_nan=False))
def test_float32_values_never_take_9_bytes(x):
    assert len(cbor.dumps(x)) <= 5


@given(st.integers(min_value=-(2**64), max_value=2**64 - 1))
@settings(max_examples=1000)
def test_ints_match_cbor2_canonical(n):
    assert cbor.dumps(n) == cbor2.dumps(n, canonical=True)


values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**64), max_value=2**64 - 1)
    | st.floats(allow_nan=False)
    | st.text()
    | st.binary(),
    lambda children: st.lists(children, max_size=6) | st.dictionaries(st.text(max_size=8), children, max_size=6),
    max_leaves=40,
)


def same(a, b):
    if isinstance(a, float):
        return isinstance(b, float) and bits(a) == bits(b)
    if isinstance(a, list):
        return isinstance(b, list) and len(a) == len(b) and all(same(x, y) for x, y in zip(a, b))
    if isinstance(a, dict):
        return isinstance(b, dict) and list(a) == list(b) and all(same(a[k], b[k]) for k in a)
    return type(a) is type(b) and a == b


@given(values)
@settings(max_examples=1500)
def test_round_trip_through_cbor2(v):
    assert same(cbor2.loads(cbor.dumps(v)), v)


def test_nan_decodes_as_nan():
    assert math.isnan(cbor2.loads(cbor.dumps(float("nan"))))
