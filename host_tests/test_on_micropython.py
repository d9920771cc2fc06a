"""The firmware inside the real MicroPython unix port (-X heapsize=64K):
it writes bytes, the host judges them with cbor2, json and hmac."""

import hashlib
import hmac as std_hmac
import random
import struct

import cbor2
import pytest

from conftest import FIRMWARE, HERE
from rfc8949_vectors import OUT_OF_RANGE, VECTORS
from sample_windows import CASES
from uingest import message
from uingest_tools.acquisition import check_structure, decode, verify_signature

KEY = "mp-hmac-key"
PATH = FIRMWARE + ":" + HERE


def lines(proc):
    return proc.stdout.decode().split("\n")[:-1]


def test_rfc8949_vectors_on_micropython(mpy):
    exprs = [e for e, _ in VECTORS] + OUT_OF_RANGE
    out = lines(mpy.run_program("cbor_hex_of_expressions.py", stdin="\n".join(exprs).encode() + b"\n"))
    assert out[: len(VECTORS)] == [h for _, h in VECTORS]
    assert all(o.startswith("ValueError") and "CBOR" in o for o in out[len(VECTORS) :])


def random_value(rnd, depth=0):
    kind = rnd.randrange(9 if depth < 4 else 6)
    if kind == 0:
        return rnd.choice([None, True, False])
    if kind == 1:
        return rnd.randrange(-(2**64), 2**64) >> rnd.randrange(0, 64)
    if kind == 2:
        return struct.unpack("<d", struct.pack("<Q", rnd.getrandbits(64)))[0]
    if kind == 3:
        return rnd.choice([0.5, -2.0, 1e-7, 3.0e38, 65504.0, 1.1, float("inf"), 5.960464477539063e-8])
    if kind == 4:
        return "".join(
            chr(rnd.choice([rnd.randrange(32, 127), rnd.randrange(160, 0x2FFF)])) for _ in range(rnd.randrange(8))
        )
    if kind == 5:
        return bytes(rnd.randrange(256) for _ in range(rnd.randrange(10)))
    if kind in (6, 7):
        return [random_value(rnd, depth + 1) for _ in range(rnd.randrange(5))]
    return {"k%d" % i: random_value(rnd, depth + 1) for i in range(rnd.randrange(5))}


def py_literal(v):
    if isinstance(v, float):
        if v != v:
            return "float('nan')"
        if v in (float("inf"), float("-inf")):
            return "float('%s')" % v
        return repr(v)
    if isinstance(v, list):
        return "[" + ",".join(py_literal(x) for x in v) + "]"
    if isinstance(v, dict):
        return "{" + ",".join("%r:%s" % (k, py_literal(x)) for k, x in v.items()) + "}"
    return repr(v)


def same(a, b):
    if isinstance(a, float):
        return isinstance(b, float) and struct.pack(">d", a) == struct.pack(">d", b)
    if isinstance(a, list):
        return isinstance(b, list) and len(a) == len(b) and all(same(x, y) for x, y in zip(a, b))
    if isinstance(a, dict):  # MicroPython's dict order is not insertion order
        return isinstance(b, dict) and set(a) == set(b) and all(same(a[k], b[k]) for k in a)
    return type(a) is type(b) and a == b


def test_random_values_round_trip_through_cbor2(mpy):
    rnd = random.Random(8949)
    values = [random_value(rnd) for _ in range(400)]
    out = lines(
        mpy.run_program("cbor_hex_of_literals.py", stdin="\n".join(py_literal(v) for v in values).encode() + b"\n")
    )
    assert len(out) == len(values)
    for v, h in zip(values, out):
        assert same(cbor2.loads(bytes.fromhex(h)), v), (v, h)


def test_hmac_on_micropython_equals_cpython(mpy):
    rnd = random.Random(2104)
    cases = []
    for key_len in range(0, 201):
        key = bytes(rnd.randrange(256) for _ in range(key_len))
        msg = bytes(rnd.randrange(256) for _ in range(rnd.randrange(0, 600)))
        cuts = sorted(rnd.randrange(len(msg) + 1) for _ in range(rnd.randrange(4)))
        cases.append((key, msg, cuts))
    # fields split on single spaces, so an empty key or message stays a field
    text = "".join("%s %s %s\n" % (k.hex(), m.hex(), "," + ",".join(map(str, c))) for k, m, c in cases)
    out = lines(mpy.run_program("hmac_hex_of_lines.py", stdin=text.encode()))
    assert out == [std_hmac.new(k, m, hashlib.sha256).hexdigest() for k, m, _ in cases]


def records(stdout):
    """Header lines, each followed by the raw body it announces."""
    pos = 0
    while pos < len(stdout):
        nl = stdout.index(b"\n", pos)
        fields = stdout[pos:nl].decode().split(" ")
        size = int(fields[-1])
        yield fields[:-1], stdout[nl + 1 : nl + 1 + size]
        pos = nl + 1 + size


@pytest.mark.parametrize("case", list(CASES))
@pytest.mark.parametrize("kernels", [True, False], ids=["viper", "portable"])
def test_messages_written_on_micropython(mpy, bundle, kernels, case):
    # 128K on the x64 unix port, whose objects are twice an ESP32's (8-byte
    # words): about the 64K an ESP32 leaves to Python. Memory is measured at 64K below.
    stdout = mpy.run_program("message_bytes.py", kernels, case, KEY, path=bundle, heap="128K").stdout
    first, _, stdout = stdout.partition(b"\n")
    assert first.decode() == "kernels %s" % kernels
    rows = list(records(stdout))
    assert len(rows) == 4
    for (name, fmt, signed, length_ok, stream_ok), body in rows:
        assert length_ok == stream_ok == "True", (name, fmt, signed)
        msg = decode(body, fmt)
        check_structure(msg)
        assert msg["payload"]["device_name"] == "mp-1"
        if signed == "True":
            assert verify_signature(body, fmt, KEY)
        else:
            assert msg["protected"]["alg"] == "none"
        # the same firmware under CPython writes the very same bytes
        w = CASES[name]()
        want = message.encode(w, fmt, hmac_key=KEY if signed == "True" else None, device_name="mp-1", iat=1700000000)
        assert body == want, (name, fmt, signed)
        values = msg["payload"]["values"]
        flat = [v for r in values for v in r] if w.width > 1 else values
        if fmt == "cbor" or w.typecode == "h":
            assert flat == list(w.samples)


@pytest.mark.parametrize("kernels", [True, False], ids=["viper", "portable"])
def test_signed_streaming_heap_does_not_grow_with_rows(mpy, bundle, kernels):
    out = lines(mpy.run_program("signed_stream_heap.py", kernels, path=bundle, heap="64K"))
    fast, c200, c400, c800 = out[0].split()
    assert fast == str(kernels)
    c200, c400, c800 = int(c200), int(c400), int(c800)
    print("heap used by one signed streaming write: 200 rows %d B, 400 rows %d B, 800 rows %d B" % (c200, c400, c800))
    if kernels:
        assert c200 < 8192  # head, HMAC state and chunk views: a fixed cost per message
        assert c800 <= c400 <= c200  # not one byte more for 4x the rows
    else:
        # the portable path boxes each float it reads: garbage, but no live growth
        assert c200 == c400 == c800 == 0


def test_encode_into_allocates_the_same_few_bytes_for_any_window_size(mpy, bundle):
    """1 s and 4 s of 16 kHz audio into one preallocated buffer: the heap a
    message takes does not grow with the window (GC off, nothing hidden)."""
    n1, used1, n4, used4 = map(int, lines(mpy.run_program("encode_into_heap.py", path=bundle, heap="1M"))[0].split())
    print("encode_into: 1 s of audio (%d B) allocates %d B, 4 s (%d B) %d B" % (n1, used1, n4, used4))
    assert n4 > 3.9 * n1
    assert used4 == used1 < 4096  # the Message, its head and the HMAC state: a fixed cost


def test_encode_fits_64k_heap(mpy):
    n, free = map(int, lines(mpy.run_program("encode_imu_window.py", path=PATH, heap="64K"))[0].split())
    assert n == len(message.encode(CASES["imu"](), "cbor", hmac_key="k"))
