"""Remote management sessions in CBOR on the board (config remote_format "cbor", uingest.remotecbor): the
hello and every reply in binary frames, decoded here with Python's cbor2 (never with uingest's own code); the
server's CBOR messages (hello reply, sample requests) read by the board's own small decoder; hostile CBOR
from the fake server (truncated, wrong types, deep nesting, huge lengths, outside the subset) closes the
session with one line, or is refused, and the board reconnects and records again. On CPython (the shim)
and on the MicroPython unix port, as test_remote.py runs its JSON scenarios; plus the board against
`uingest serve` end to end in CBOR."""

import math
import struct

import cbor2
import pytest
import test_remote
from test_remote import API_KEY, HELLO, HMAC_KEY, RATE, REQUEST_KEY, _wait, replies, request, steps, stored

from uingest_tools.acquisition import decode, verify_signature

# test_remote's fixtures: the board on CPython and on the unix port, uingest serve for the uploads, the fake
start_board = test_remote.start_board
ingestion = test_remote.ingestion
remote = test_remote.remote


def test_the_hello_and_every_reply_are_cbor_in_binary_frames(start_board, ingestion, remote):
    board = start_board(ingestion.url, remote.url, remote_format="cbor")
    assert remote.wait_session(1, 20), board.lines
    assert remote.hellos[0] == HELLO
    assert remote.encoding == "cbor"
    remote.send(request("wave", 4000, "testing"))  # in CBOR: the session's encoding
    msgs = replies(remote)
    assert steps(msgs) == ["sample=True", "sampleStarted", "sampleReading", "sampleUploading", "sampleFinished"], msgs
    assert set(remote.opcodes) == {2}, remote.opcodes  # the hello and every reply: binary frames
    ((entry, body),) = stored(ingestion.data)
    assert (entry["label"], entry["category"]) == ("wave", "testing"), entry
    assert verify_signature(body, "cbor", REQUEST_KEY)
    assert len(decode(body, "cbor")["payload"]["values"]) == 4000 // 5
    assert remote.connections == 1, board.lines


def test_a_json_board_stays_json(start_board, ingestion, remote):
    board = start_board(ingestion.url, remote.url)  # remote_format defaults to "json"
    assert remote.wait_session(1, 20), board.lines
    remote.send(request("wave", 500, "training"))
    assert steps(replies(remote))[-1] == "sampleFinished"
    assert set(remote.opcodes) == {1}, remote.opcodes


def _item(obj):
    return cbor2.dumps(obj)


def _request_cbor(**fields):
    return _item(request(**fields))


# Each: (the raw CBOR message the server sends, the reason the board closes with); the board then reconnects
MALFORMED = {
    "truncated map": (_item({"sample": {"length": 2000}})[:-1], "truncated"),  # in the length's argument
    "truncated head": (b"\xa1\x78", "truncated"),  # a text whose 1-byte length is cut off
    "a text longer than the message": (b"\xa1\x66sample\x7a\xff\xff\xff\xff", "a string longer than the message"),
    "a 2**64-1 byte text": (b"\x7b" + b"\xff" * 8, "a string longer than the message"),
    "four billion items": (b"\x9a\xff\xff\xff\xff\x00", "more items than the message has bytes"),
    "a map of 2**64-1 pairs": (b"\xbb" + b"\xff" * 8, "more items than the message has bytes"),
    "nested 100 deep": (b"\x81" * 100 + b"\x00", "nested deeper than 8"),
    "maps nested 20 deep": (b"\xa1\x61k" * 20 + b"\x00", "nested deeper than 8"),
    "indefinite map": (b"\xbf\x66sample\xf5\xff", "an indefinite length or a reserved value"),
    "a tag": (_item(cbor2.CBORTag(1, 0)), "a tag"),
    "undefined": (b"\xf7", "a simple value outside the subset"),
    "text that is not UTF-8": (b"\xa1\x62\xff\xfe\x00", "text that is not UTF-8"),
    "a map as a map key": (b"\xa1\xa0\x00", "a map key that is not a string or a number"),
    "trailing bytes": (_item({"sample": True}) + b"\x00\x00", "2 bytes after the item"),
    "empty": (b"", "truncated"),
}


# the board's end to end for a few (the decoder's verdict on every case, on both, is the test below it): any
# ValueError of the decoder takes the same path to the one line and the reconnect
@pytest.mark.parametrize("case", ["truncated map", "nested 100 deep", "a 2**64-1 byte text"])
def test_malformed_cbor_closes_the_session_with_one_line_and_it_reconnects(start_board, ingestion, remote, case):
    data, why = MALFORMED[case]
    board = start_board(ingestion.url, remote.url, remote_format="cbor")
    assert remote.wait_session(1, 20), board.lines
    remote.send(data)
    assert remote.wait_session(2, 20), board.lines  # a new hello on a new connection
    lines = [line for line in board.lines if line.startswith("remote: closed")]
    assert lines and lines[0].startswith("remote: closed: a malformed CBOR message: " + why), board.lines
    assert len(lines) == 1, lines
    remote.send(request("idle", 500, "training"))  # the board records again
    assert steps(replies(remote))[-1] == "sampleFinished", board.lines[-10:]
    assert not any("Traceback" in line or "going on" in line for line in board.lines), board.lines


def test_the_unix_port_refuses_every_malformed_case_with_its_reason(mpy, firmware):
    stdin = "".join("x%s\n" % data.hex() for data, _ in MALFORMED.values()).encode()
    out = mpy.run_program("cbor_refusals.py", stdin=stdin, path=firmware).stdout.decode().splitlines()
    assert len(out) == len(MALFORMED), out
    for (case, (_, why)), line in zip(MALFORMED.items(), out):
        assert line.startswith("ValueError: " + why), (case, line)


# Well-formed CBOR the protocol does not expect: refused with a reason or ignored, the session kept
WRONG_TYPES = {
    "a byte-string label": (dict(label=b"wave"), "label: expected a string"),
    "a numeric label": (dict(label=5), "label: expected a string"),
    "a numeric path": (dict(path=5), "path: expected /api/"),
    "an infinite length": (dict(length=math.inf), "length, interval: expected numbers of ms"),
    "a NaN length": (dict(length=math.nan), "NaN"),
    "a text length": (dict(length="2000"), "length, interval: expected numbers of ms"),
    "a byte-string key": (dict(hmacKey=b"k"), "hmacKey: expected a string"),
    "a list as the sensor": (dict(sensor=["Accelerometer"]), "unknown sensor"),
    "a 2**64-1 ms length": (dict(length=2**64 - 1), "too long"),
}


def test_a_request_with_wrong_types_is_refused_with_a_reason(start_board, ingestion, remote):
    board = start_board(ingestion.url, remote.url, remote_format="cbor")
    assert remote.wait_session(1, 20), board.lines
    for case, (fields, why) in WRONG_TYPES.items():  # one board for all: the session is kept after each
        r = request()
        r["sample"].update(fields)
        remote.send(_item(r))
        (m,) = replies(remote)
        assert m["sample"] is False and why in m["error"], (case, m, board.lines[-5:])
    remote.send(request("idle", 500, "training"))
    assert steps(replies(remote))[-1] == "sampleFinished"
    assert remote.connections == 1, board.lines


def test_messages_the_board_does_not_know_are_ignored(start_board, ingestion, remote):
    board = start_board(ingestion.url, remote.url, remote_format="cbor")
    assert remote.wait_session(1, 20), board.lines
    for m in ([1, 2, 3], "a text", {"sample": [1, 2]}, {"startSnapshot": True}, {b"sample": {}}, 5, None, 1.5):
        remote.send(_item(m))
    remote.send("not json, in a text frame")  # a text frame in a CBOR session: JSON, or ignored
    remote.send(_item(struct.unpack(">e", b"\x3c\x00")[0]))  # a half float: 1.0
    remote.send(b"\xf9\x3c\x00")
    remote.send(request("idle", 500, "training"))
    assert steps(replies(remote))[-1] == "sampleFinished", board.lines[-10:]
    assert remote.connections == 1, board.lines


def test_a_refused_cbor_hello_is_one_line(start_board, ingestion):
    from uingest_tools.loopback import FakeRemoteManagement

    rm = FakeRemoteManagement(api_key="ei_some_other_key")
    try:
        board = start_board(ingestion.url, rm.url, remote_format="cbor")
        _wait(lambda: any("hello refused" in line for line in board.lines), board)
        lines = [line for line in board.lines if "hello refused" in line]
        assert "Invalid API key" in lines[0] and API_KEY not in lines[0], lines
        assert rm.opcodes[0] == 2
    finally:
        rm.close()


# -- the decoder itself, against what cbor2 writes --------------------------------------------------------

VALUES = [
    0,
    23,
    24,
    255,
    256,
    65535,
    65536,
    2**32 - 1,
    2**32,
    2**64 - 1,
    -1,
    -24,
    -25,
    -(2**64),
    True,
    False,
    None,
    "",
    "a",
    "\u00e9t\u00e9 \u2603",
    "x" * 300,
    b"",
    b"\x00\xff",
    [],
    [1, [2, [3]]],
    {},
    {"sample": {"label": "wave", "length": 2000, "interval": 5.0, "hmacKey": "k"}},
    {1: "one", -2: b"two", 1.5: None},
    1.0,
    0.5,
    -0.0,
    1e300,
    3.4e38,
    math.inf,
    -math.inf,
]


@pytest.mark.parametrize("canonical", [False, True])
def test_the_decoder_reads_what_cbor2_writes(canonical):
    from uingest import remotecbor

    for v in VALUES:
        data = cbor2.dumps(v, canonical=canonical)  # canonical: the shortest floats (half, single)
        got = remotecbor.loads(data)
        assert got == v and type(got) is type(v), (v, data.hex(), got)
        assert remotecbor.loads(memoryview(data)) == v  # as uingest.ws hands a message over
    assert math.isnan(remotecbor.loads(cbor2.dumps(math.nan)))
    assert remotecbor.loads(b"\xf9\x00\x01") == 2**-24  # the smallest half subnormal


def test_the_decoder_refuses_with_one_value_error_only():
    from uingest import remotecbor

    for data, why in MALFORMED.values():
        with pytest.raises(ValueError) as e:
            remotecbor.loads(data)
        assert str(e.value).startswith(why), (data.hex(), e.value)
    nested = b"\x81" * 8 + b"\x00"  # 8 deep: the bound
    assert remotecbor.loads(nested) == [[[[[[[[0]]]]]]]]
    with pytest.raises(ValueError):
        remotecbor.loads(b"\x81" * 9 + b"\x00")


def test_config_checks_remote_format():
    from uingest import config

    raw = {"board": "unix-sim", "api_key": API_KEY, "labels": ["idle"], "url": "http://127.0.0.1:4810"}
    cfg, problems = config.validate(raw)
    assert problems == [] and "remote_format" not in cfg  # absent: JSON (a key less in the dict the app holds)
    raw["remote_format"] = "cbor"
    assert config.validate(raw)[1] == []
    raw["remote_format"] = "msgpack"
    _, problems = config.validate(raw)
    assert len(problems) == 1 and problems[0].startswith("config: remote_format: expected 'json' or 'cbor'"), problems


def test_the_board_in_cbor_recorded_from_uingest_serves_studio_api(start_board, tmp_path):
    """test_remote's whole loop with no fake, the session in CBOR: the collector sees a CBOR device, a script
    posts Studio's start-sampling, the board records, signs and uploads."""
    device, (entry, body) = test_remote.record_through_studio_api(start_board, tmp_path, remote_format="cbor")
    assert device["encoding"] == "cbor", device
    assert (entry["label"], entry["category"], entry["rows"]) == ("knock", "testing", RATE)
    assert entry["signature"] == "valid" and verify_signature(body, "cbor", HMAC_KEY)
