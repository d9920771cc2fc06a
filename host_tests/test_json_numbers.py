"""The firmware's JSON numbers are what JavaScript writes (issue 13 item 6).

For every float32 sample v the firmware writes a text t with
  (a) Math.fround(JSON.parse(t)) === v, bit for bit: t reads back as v
      (except -0, written 0: JSON.stringify(-0) is "0", so JS cannot write -0)
  (b) JSON.stringify(JSON.parse(t)) === t: t is JavaScript's own text for it,
so a DataForwarder-style verifier that re-serializes the message before it
checks the signature sees the signed bytes. Checked in Node
(js/json_numbers.js) on the text the MicroPython unix port writes for 100,000
random float32 bit patterns plus the edge cases, by the viper kernel and by
the portable path, which must write the same bytes (as the portable path does
on CPython); the digits against an independent oracle (CPython's %g, exact
Decimal intervals, numpy's read-back); and the kernel's own code run here
with every intermediate checked to fit the ESP32's 32-bit viper int."""

import ast
import json
import os
import random
import shutil
import struct
import subprocess
from array import array
from decimal import Decimal, localcontext

import pytest

from uingest import jsonw, message
from uingest.window import Window

HERE = os.path.dirname(os.path.abspath(__file__))
FIRMWARE = os.path.join(os.path.dirname(HERE), "firmware")
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
def bits_file(tmp_path_factory):
    """(bits file, bits)."""
    bits = value_bits()
    path = tmp_path_factory.mktemp("json_numbers") / "bits.bin"
    path.write_bytes(array("I", bits).tobytes())
    return path, bits


@pytest.fixture(scope="module")
def written(mpy, bundle, bits_file):
    """{path: the message the unix port writes for the bits}: "kernel" (the
    viper kernel _json_kernel.fill_f compiled from source by the port),
    "shipped" (the same kernel from the .mpy a board gets) and "portable"."""
    path, _ = bits_file
    bodies = {}
    for way, firmware in (("kernel", FIRMWARE), ("shipped", bundle), ("portable", FIRMWARE)):
        proc = mpy.run_program("json_of_float32_bits.py", path, way, heap="16M", path=firmware)
        assert proc.stderr.decode().split() == ["kernels", str(way != "portable")]  # the path it claims to be
        bodies[way] = proc.stdout
    return bodies


def values_texts(body):
    start = body.index(b'"values":[') + len(b'"values":[')
    return body[start : body.rindex(b"]}}")].replace(b"[", b"").replace(b"]", b"").split(b",")


@pytest.mark.parametrize("way", ["kernel", "portable"])
def test_every_float32_reads_back_and_is_what_javascript_writes(node, bits_file, written, way, tmp_path):
    path, bits = bits_file
    (tmp_path / "message.json").write_bytes(written[way])
    proc = subprocess.run(
        [node, CHECK_JS, str(tmp_path / "message.json"), str(path)], capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    assert result["failures"] == []
    assert result["count"] == len(bits) >= RANDOM_VALUES
    assert result["whole"], "JSON.stringify(JSON.parse(message)) is not the message"


def test_the_kernel_and_the_portable_path_write_the_same_bytes(bits_file, written):
    # on the unix port, and the portable path here on CPython too
    _, bits = bits_file
    w = Window((("x", "u"), ("y", "u"), ("z", "u")), 10, len(bits) // 3)
    w.samples[:] = array("f", array("I", bits).tobytes())
    w.rows = len(bits) // 3
    here = message.encode(w, "json")
    assert len(values_texts(here)) == len(bits)
    for way in ("kernel", "shipped", "portable"):
        if written[way] != here:
            first = next(i for i, (a, b) in enumerate(zip(values_texts(written[way]), values_texts(here))) if a != b)
            pytest.fail(
                "%s: 0x%08x is %r, the portable path on CPython writes %r"
                % (way, bits[first], values_texts(written[way])[first], values_texts(here)[first])
            )


def oracle_text(b):
    """The digits by an independent rule: CPython's %.7g, %.8g, %.9g
    (correctly rounded, ties to even), the first whose exact value lies in
    v's rounding interval (exact Decimal arithmetic; on the interval's end
    only for an even significand, as a correctly rounding reader ties)."""
    v = from_bits(b & 0x7FFFFFFF)
    if v == 0:
        return "0"
    with localcontext(prec=200):  # exact for every float32 and its interval
        return ("-" if b >> 31 else "") + _oracle_digits(v, b)


def _oracle_digits(v, b):
    exp, mant = (b >> 23) & 0xFF, b & 0x7FFFFF
    ulp = Decimal(2) ** ((exp or 1) - 150)
    up, down = ulp / 2, (ulp / 4 if mant == 0 and exp > 1 else ulp / 2)
    exact, even = Decimal(v), not ((mant | (exp and 0x800000)) & 1)
    for n in (7, 8, 9):
        t = "%.*g" % (n, v)
        gap = Decimal(t) - exact
        if (gap < up or (gap == up and even)) and (-gap < down or (-gap == down and even)):
            break
    return t


def test_the_digits_are_an_independent_oracles(bits_file, written):
    np = pytest.importorskip("numpy")
    _, bits = bits_file
    texts = values_texts(written["kernel"])
    assert len(texts) == len(bits)
    # numpy reads every text back as its float32 (but -0, written 0)
    want = np.array(bits, dtype=np.uint32)
    want[want == 0x80000000] = 0
    got = np.array(texts).astype(np.float32).view(np.uint32)
    bad = np.nonzero(got != want)[0]
    assert not len(bad), [(hex(bits[i]), texts[i]) for i in bad[:10]]
    # and the same number as the oracle's text, for each value
    for b, t in zip(bits, texts):
        assert Decimal(t.decode()) == Decimal(oracle_text(b)), (hex(b), t, oracle_text(b))


def test_the_longest_float_text_fits_the_row_bound(written):
    # max_row_bytes sizes encode_into's buffer: JS writes up to 21 digits
    # before it switches to exponent form at 1e21 ("-123456790000000000000")
    texts = values_texts(written["kernel"])
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
        (2**-12, "0.00024414062"),  # 0.000244140625: a tie at 8 digits, to even
        (33554432.0, "33554432"),  # 2**25: the kernel's range ends, the portable text
        (-2.5e-45, "-2.802597e-45"),
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


class Word32(int):
    """An int that fails as soon as an arithmetic result leaves a signed
    32-bit word: the ESP32's viper int (the unix port's is 64-bit, so it
    cannot show an overflow)."""

    def __new__(cls, v):
        assert -(2**31) <= v < 2**31, "viper int overflows 32 bits: %d" % v
        return int.__new__(cls, v)


def _checked(name):
    op = getattr(int, name)
    return lambda a, b: Word32(op(a, b))


for _name in ("add", "sub", "mul", "floordiv", "mod", "lshift", "rshift", "and", "or", "xor"):
    setattr(Word32, "__%s__" % _name, _checked("__%s__" % _name))
    setattr(Word32, "__r%s__" % _name, _checked("__r%s__" % _name))
Word32.__neg__ = lambda a: Word32(-int(a))


class Pointer:
    """viper's ptr8/ptr16/ptr32 over a buffer: loads are Word32s (ptr32
    sign-extended as on a 32-bit CPU; or zero-extended as on x64, a plain
    int then), a store must fit the width (viper would cut it silently)."""

    def __init__(self, buf, code, signed_32=True):
        self.view = memoryview(buf).cast("B").cast(code.lower() if signed_32 and code == "I" else code)
        self.bits = self.view.itemsize * 8
        self.word = Word32 if signed_32 or code != "I" else int

    def __getitem__(self, i):
        return self.word(self.view[i])

    def __setitem__(self, i, v):
        assert 0 <= v < 1 << self.bits, "store of %d into %d bits" % (v, self.bits)
        self.view[i] = v


def kernel_on_32_bits(signed_32):
    """_json_kernel.fill_f and its tables as plain Python over Word32s
    (the module itself imports only on MicroPython)."""
    with open(os.path.join(FIRMWARE, "uingest", "_json_kernel.py")) as f:
        tree = ast.parse(f.read())
    keep = tree.body[tree.body.index(next(n for n in tree.body if isinstance(n, ast.FunctionDef))) :]
    for n in keep:
        if isinstance(n, ast.FunctionDef):
            n.decorator_list = []  # @micropython.viper
    space = {
        "ptr8": lambda b: Pointer(b, "B"),
        "ptr16": lambda b: Pointer(b, "H"),
        "ptr32": lambda b: Pointer(b, "I", signed_32),
        "int": Word32,  # viper's int(object)
    }
    exec(compile(ast.Module(body=keep, type_ignores=[]), "_json_kernel.py", "exec"), space)
    space["_f32_portable"] = lambda dst, pos, bits: kernel_portable(dst, int(pos), int(bits))  # no package here
    return lambda src, row0, rows, width, dst, pos: space["fill_f"](
        src, Word32(row0), Word32(rows), Word32(width), dst, Word32(pos)
    )


def kernel_portable(dst, pos, bits):
    b = jsonw.f32_bits_text(bits).encode()
    dst[pos : pos + len(b)] = b
    return pos + len(b)


@pytest.mark.parametrize("signed_32", [True, False])
def test_the_kernel_fits_a_32_bit_word(signed_32):
    # every edge case and some random values through the kernel's own code,
    # each intermediate checked against a 32-bit word, the bytes against the
    # portable path
    kernel = kernel_on_32_bits(signed_32)
    rnd = random.Random(32)
    bits = edge_cases() + [rnd.getrandbits(32) & 0xFF7FFFFF for _ in range(3000)]
    bits += [f32_bits(rnd.uniform(-20.0, 20.0)) for _ in range(1000)]
    src = array("f", array("I", bits).tobytes())
    dst = bytearray(jsonw.max_row_bytes(1, "f") * len(bits))
    end = kernel(src, 0, len(bits), 1, dst, 0)
    assert bytes(dst[:end]).split(b",") == [jsonw.f32_bits_text(b).encode() for b in bits]
