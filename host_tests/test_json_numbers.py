"""The firmware's JSON numbers are what JavaScript writes (issue 13 item 6).

For every float32 sample v the firmware writes a text t with
  (a) Math.fround(JSON.parse(t)) === v, bit for bit: t reads back as v
      (except -0, written 0: JSON.stringify(-0) is "0", so JS cannot write -0)
  (b) JSON.stringify(JSON.parse(t)) === t: t is JavaScript's own text for it,
so a DataForwarder-style verifier that re-serializes the message before it
checks the signature sees the signed bytes. Checked in Node
(js/json_numbers.js) on the text the MicroPython unix port writes for 100,000
random float32 bit patterns plus the edge cases."""

import json
import os
import random
import shutil
import struct
import subprocess
from array import array
from decimal import Decimal

import pytest

from uingest import jsonw, message
from uingest.window import Window

HERE = os.path.dirname(os.path.abspath(__file__))
CHECK_JS = os.path.join(HERE, "js", "json_numbers.js")
RANDOM_VALUES = 100_000


def f32_bits(x):
    return struct.unpack("<I", struct.pack("<f", x))[0]


def from_bits(b):
    return struct.unpack("<f", struct.pack("<I", b))[0]


def edge_cases():
    """Signed zero, subnormals, the normal range's ends, powers of ten and two
    across the range with their float32 neighbours, and the values around
    JS's layout thresholds (decimal from 1e-6, exponent form from 1e21)."""
    bits = [0x00000000, 0x80000000]  # +0, -0
    bits += [0x00000001, 0x00000002, 0x00000003, 0x007FFFFF, 0x007FFFFE, 0x00400000]  # subnormals
    bits += [0x00800000, 0x00800001, 0x7F7FFFFF, 0x7F7FFFFE, 0x3F800000, 0x3F800001, 0x3F7FFFFF]
    for k in range(-45, 39):  # powers of ten: the float32 nearest 10**k and its neighbours
        b = f32_bits(float("1e%d" % k))
        bits += [b - 1, b, b + 1] if 0 < b < 0x7F7FFFFF else [b]
    for k in range(-149, 128):  # powers of two
        b = f32_bits(2.0**k)
        bits += [b, b + 1]
    thresholds = (5.9604645e-08, 1.5e-7, 9.9999997e-7, 1e-6, 1.0000001e-6, 2**24, 2**24 + 2, 1e9, 9.9999995e20)
    bits += [f32_bits(x) for x in thresholds]
    bits += [b | 0x80000000 for b in bits]  # and each negated
    return bits


def value_bits():
    rnd = random.Random(13_6)
    bits = edge_cases()
    want = len(bits) + RANDOM_VALUES
    while len(bits) < want:
        b = rnd.getrandbits(32)
        if (b >> 23) & 0xFF != 0xFF:  # NaN and infinity have no JSON
            bits.append(b)
    bits += [f32_bits(rnd.uniform(-20.0, 20.0)) for _ in range(20_000)]  # sensor-like values
    bits += [0] * (-len(bits) % 3)  # whole rows of the 3-axis window
    return bits


@pytest.fixture(scope="module")
def node():
    exe = shutil.which("node")
    if exe is None:
        pytest.fail("node is not on PATH: these checks run JavaScript's own JSON.parse and JSON.stringify")
    return exe


@pytest.fixture(scope="module")
def written(mpy, tmp_path_factory):
    """(bits file, bits, the message the unix port writes for them)."""
    bits = value_bits()
    path = tmp_path_factory.mktemp("json_numbers") / "bits.bin"
    path.write_bytes(array("I", bits).tobytes())
    body = mpy.run_program("json_of_float32_bits.py", path, heap="16M").stdout
    return path, bits, body


def values_texts(body):
    start = body.index(b'"values":[') + len(b'"values":[')
    return body[start : body.rindex(b"]}}")].replace(b"[", b"").replace(b"]", b"").split(b",")


def test_every_float32_reads_back_and_is_what_javascript_writes(node, written, tmp_path):
    path, bits, body = written
    (tmp_path / "message.json").write_bytes(body)
    proc = subprocess.run(
        [node, CHECK_JS, str(tmp_path / "message.json"), str(path)], capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    assert result["failures"] == []
    assert result["count"] == len(bits) >= RANDOM_VALUES
    assert result["whole"], "JSON.stringify(JSON.parse(message)) is not the message"


def test_the_unix_port_writes_the_digits_cpython_writes_but_for_exact_ties(written):
    # CPython's %g and float() are correctly rounded, so the same text shows the
    # port's formatter and parser are exact to float32's 9 digits. The one
    # difference is a value exactly halfway between two candidate texts
    # (2**-12 = 0.000244140625 at 8 digits): CPython rounds the tie to even,
    # MicroPython away from zero; both read back as v and both are JS's text.
    _, bits, body = written
    w = Window((("x", "u"), ("y", "u"), ("z", "u")), 10, len(bits) // 3)
    w.samples[:] = array("f", array("I", bits).tobytes())
    w.rows = len(bits) // 3
    ours, theirs = values_texts(message.encode(w, "json")), values_texts(body)
    assert len(ours) == len(theirs) == len(bits)
    for b, mine, port in zip(bits, ours, theirs):
        if mine != port:
            exact = Decimal(from_bits(b))
            assert abs(Decimal(mine.decode()) - exact) == abs(Decimal(port.decode()) - exact), (hex(b), mine, port)
            assert len(mine) == len(port)


def test_the_longest_float_text_fits_the_row_bound(written):
    # max_row_bytes sizes encode_into's buffer: JS writes up to 21 digits
    # before it switches to exponent form at 1e21 ("-123456790000000000000")
    texts = values_texts(written[2])
    longest = max(texts, key=len)
    assert len(longest) == 22 and longest.startswith(b"-") and b"e" not in longest
    assert jsonw.max_row_bytes(1, "f") >= 3 + len(longest) + 1


@pytest.mark.parametrize(
    "x,text",
    [
        (-0.0, "0"),
        (1e-6, "0.000001"),
        (1e-7, "1e-7"),
        (5.9604645e-08, "5.9604645e-8"),
        (1e7, "10000000"),
        (-1.5e-7, "-1.5e-7"),
        (1.4e-45, "1.401298e-45"),  # the shortest of 7 to 9 digits: 7 at least
        (3.4028235e38, "3.4028235e+38"),
        (9.9999995e20, "999999950000000000000"),
        (1e21, "1e+21"),
        (0.1, "0.1"),
        (16777216.0, "16777216"),
    ],
)
def test_float32_text_examples(x, text):
    assert jsonw.float32_text(from_bits(f32_bits(x))) == text


@pytest.mark.parametrize(
    "x,text",
    [(0.0625, "0.0625"), (2.5e-7, "2.5e-7"), (16.0, "16"), (1.5e20, "150000000000000000000"), (1e22, "1e+22")],
)
def test_header_numbers_in_javascript_layout(x, text):
    assert jsonw.number(x) == text


@pytest.mark.parametrize("x", [float("nan"), float("inf"), float("-inf")])
def test_nan_and_infinity_are_refused(x):
    with pytest.raises(ValueError, match="NaN or infinite"):
        jsonw.float32_text(x)
