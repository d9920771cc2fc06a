"""A damaged queue never stops the app (issue 12): whatever is on flash in
the queue folder, the app boots, every intact entry is sent exactly once,
and every damaged one is moved aside (or deleted, or skipped) with one line
naming it, across reboots. On CPython through the shim (fast); a few shapes
on the MicroPython unix port below, and the whole app in test_app.py."""

import hashlib
import json
import os

import pytest

from sample_windows import imu
from uingest import app, config, message
from uingest.sensors.hardware import Hardware
from uingest.sensors.synthetic import SyntheticIMU
from uingest.store import Store
from uingest_tools.loopback import FakeServer

QUEUED = ["00000001.msg", "00000002.msg", "00000003.msg", "00000004.msg"]
BAD = "00000002.msg"  # the entry most shapes damage


def msg(i):
    return message.Message(imu(20), "cbor", hmac_key="k", iat=1000 + i)


def make_queue(root):
    """Four intact entries 00000001..4.msg (label idle, training); their bodies by name."""
    st = Store(str(root), 1 << 20, log=lambda line: None)
    return {st.put(msg(i), "idle", "training"): msg(i).encode() for i in range(len(QUEUED))}


def old_entry(root, name, body, **meta):
    """An entry as the previous firmware wrote it: no version, the sha256 of the body only."""
    head = {"label": "idle", "category": "training", "content_type": "application/cbor", "length": len(body)}
    head["sha256"] = hashlib.sha256(body).hexdigest()
    head.update(meta)
    (root / name).write_bytes(json.dumps(head).encode() + b"\n" + body)


def head_and_body(p):
    data = p.read_bytes()
    i = data.index(b"\n") + 1
    return data[:i], data[i:]


def replace_in_header(old, new):
    def damage(root):
        head, body = head_and_body(root / BAD)
        assert old in head
        (root / BAD).write_bytes(head.replace(old, new, 1) + body)

    return damage


def header(line):
    """The bad entry's header line replaced by `line`, the body left as it is."""

    def damage(root):
        _, body = head_and_body(root / BAD)
        (root / BAD).write_bytes(line + b"\n" + body)

    return damage


def json_header(**changes):
    """The bad entry's header, parsed, changed (None removes a field) and written back as compact JSON."""

    def damage(root):
        head, body = head_and_body(root / BAD)
        meta = json.loads(head)
        for k, v in changes.items():
            if v is None:
                meta.pop(k)
            else:
                meta[k] = v
        (root / BAD).write_bytes(json.dumps(meta, separators=(",", ":")).encode() + b"\n" + body)

    return damage


def body(edit, name=BAD):
    def damage(root):
        head, b = head_and_body(root / name)
        (root / name).write_bytes(head + edit(b))

    return damage


def write(name, data):
    def damage(root):
        (root / name).write_bytes(data)

    return damage


def mkdir(name, with_file=False):
    def damage(root):
        (root / name).mkdir()
        if with_file:
            (root / name / "x").write_bytes(b"x")

    return damage


def old(name, **meta):
    def damage(root):
        old_entry(root, name, msg(10).encode(), **meta)

    return damage


def then(*damages):
    def damage(root):
        for d in damages:
            d(root)

    return damage


def flip(b):
    return b[:5] + bytes([b[5] ^ 1]) + b[6:]


INTACT = QUEUED[:1] + QUEUED[2:]  # all but the bad one
# id: (damage, queued entries that must arrive, the name a line must name (None: no line))
SHAPES = {
    "header-not-json": (header(b"garbage"), INTACT, BAD),
    "header-json-list": (header(b"[1]"), INTACT, BAD),
    "header-json-string": (header(b'"x"'), INTACT, BAD),
    "header-json-number": (header(b"3"), INTACT, BAD),
    "header-json-null": (header(b"null"), INTACT, BAD),
    "header-empty-line": (header(b""), INTACT, BAD),
    "header-not-utf8": (header(b'{"label": "\xff\xfe"}'), INTACT, BAD),
    "header-deeply-nested": (header(b"[" * 1000 + b"]" * 1000), INTACT, BAD),
    "header-lacks-label": (json_header(label=None), INTACT, BAD),
    "header-lacks-category": (json_header(category=None), INTACT, BAD),
    "header-lacks-content-type": (json_header(content_type=None), INTACT, BAD),
    "header-lacks-length": (json_header(length=None), INTACT, BAD),
    "header-lacks-sha256": (json_header(sha256=None), INTACT, BAD),
    "header-unknown-version": (replace_in_header(b'"v": 2', b'"v": 3'), INTACT, BAD),
    "header-rewritten-as-json": (json_header(), INTACT, BAD),  # same values, not the bytes the store wrote
    "label-changed-on-flash": (replace_in_header(b'"idle"', b'"wave"'), INTACT, BAD),
    "content-type-changed-on-flash": (replace_in_header(b"application/cbor", b"application/json"), INTACT, BAD),
    "category-changed-on-flash": (replace_in_header(b'"training"', b'"testing"'), INTACT, BAD),
    "length-changed-on-flash": (json_header(length=10), INTACT, BAD),
    "length-not-a-number": (json_header(length="330"), INTACT, BAD),
    "body-hash-changed": (replace_in_header(b'"sha256": "', b'"sha256": "f'), INTACT, BAD),
    "body-truncated": (body(lambda b: b[:-10]), INTACT, BAD),
    "body-bit-flipped": (body(flip), INTACT, BAD),
    "body-longer": (body(lambda b: b + b"\0"), INTACT, BAD),
    "body-missing": (body(lambda b: b""), INTACT, BAD),
    "header-line-too-long": (header(b"{" + b" " * 5000 + b"}"), INTACT, BAD),
    "header-line-of-megabytes": (write(BAD, b" " * (2 << 20)), INTACT, BAD),
    "zero-length-file": (write(BAD, b""), INTACT, BAD),
    "foreign-name-in-queue": (write("foo.msg", b"not mine"), QUEUED, "foo.msg"),
    "nine-digit-name": (old("000000005.msg"), QUEUED, "000000005.msg"),
    "negative-name": (old("-0000005.msg"), QUEUED, "-0000005.msg"),
    "foreign-name-in-rejected": (write("rejected/bar.msg", b"not mine"), QUEUED, "bar.msg"),
    "directory-named-as-an-entry": (mkdir("00000005.msg"), QUEUED, "00000005.msg"),
    "directory-with-a-file-named-as-an-entry": (mkdir("00000005.msg", with_file=True), QUEUED, "00000005.msg"),
    "directory-named-as-a-tmp": (mkdir("00000006.tmp"), QUEUED, None),
    "directory-in-rejected": (mkdir("rejected/00000007.msg"), QUEUED, None),
    "rejected-is-a-file": (None, QUEUED, None),  # set up in the test: rejected/ cannot be made
    "old-format-intact": (old("00000005.msg"), QUEUED + ["00000005.msg"], None),
    "old-format-body-flipped": (then(old("00000005.msg"), body(flip, "00000005.msg")), QUEUED, "00000005.msg"),
    "old-format-bad-content-type": (
        old("00000005.msg", content_type="application/cbor\r\nx-evil: 1"),
        QUEUED,
        "00000005.msg",
    ),
    "old-format-bad-category": (old("00000005.msg", category="../etc"), QUEUED, "00000005.msg"),
    "old-format-label-not-a-string": (old("00000005.msg", label=None), QUEUED, "00000005.msg"),
    "old-format-label-against-the-rules": (old("00000005.msg", label="a/b"), QUEUED, "00000005.msg"),
    "old-format-length-negative": (old("00000005.msg", length=-1), QUEUED, "00000005.msg"),
    "tmp-left-by-a-power-cut": (write("00000005.tmp", b'{"label": "id'), QUEUED, None),
}


class Link:
    def ensure(self):
        return True

    def mac(self):
        return "aa:bb:cc:dd:ee:ff"

    def status(self):
        return "link=fake"


def boot(root, url, n):
    """The app as a board boots it (the n-th time), with the queue at root: one window sampled and sent."""
    raw = {
        "board": "unix-sim",
        "api_key": "ei_unit",
        "hmac_key": "h",
        "url": url,
        "labels": ["idle", "wave"],
        "window_ms": 50,
        "sample_rate_hz": 200,
        "queue_dir": str(root),
        "timeout_ms": 2000,
        "queue_budget_bytes": 16 << 20,  # a damaged file of megabytes must not push the others out
    }
    cfg, problems = config.validate(raw)
    assert not problems
    lines = []
    a = app.App(cfg, Hardware(SyntheticIMU("idle", 200, base=1000 * n)), Link(), "TEST_DEVICE", lines.append)
    a.step()
    assert len(a.outbox.store) == 0, lines
    a.close()
    return lines


@pytest.mark.parametrize("shape", list(SHAPES))
def test_a_damaged_queue_sends_each_intact_entry_once_and_the_app_goes_on(tmp_path, shape):
    damage, arrive, named = SHAPES[shape]
    root = tmp_path / "q"
    bodies = make_queue(root)
    if damage is not None:
        damage(root)
    else:  # rejected-is-a-file
        os.rmdir(root / "rejected")
        (root / "rejected").write_bytes(b"")
    for n in ("00000005.msg", "000000005.msg", "-0000005.msg"):
        if (root / n).is_file():
            bodies[n] = msg(10).encode()
    srv = FakeServer()
    try:
        first = boot(root, srv.url, 1)
        second = boot(root, srv.url, 2)  # a reboot: nothing set aside comes back, nothing is sent twice
        third = boot(root, srv.url, 3)
    finally:
        srv.close()
    sent = [b for _, b in srv.requests]
    assert len(sent) == len(set(sent)) == len(arrive) + 3, (first, second)  # each once, plus a fresh window a boot
    for name in arrive:
        assert bodies[name] in sent, (name, first)
    for name in set(bodies) - set(arrive):
        assert bodies[name] not in sent, name  # never sent, not even under the header it had before
    for head, _ in srv.requests:
        assert b"\r\nx-label: idle\r\n" in head and b"\r\ncontent-type: application/cbor\r\n" in head.lower()
        assert b"/api/training/data " in head
    if named is not None:
        assert any(named in line for line in first), first
    skipped = shape in ("directory-with-a-file-named-as-an-entry", "rejected-is-a-file")
    if not skipped:
        assert not any("queue" in line or "queued" in line for line in second + third), second + third
    left = sorted(n for n in os.listdir(root) if n.endswith((".msg", ".tmp")))
    assert left == (["00000005.msg"] if shape == "directory-with-a-file-named-as-an-entry" else []), left


def test_a_damaged_entry_is_set_aside_with_its_reason_and_counted(tmp_path):
    root = tmp_path / "q"
    make_queue(root)
    replace_in_header(b'"idle"', b'"wave"')(root)
    lines = []
    st = Store(str(root), 1 << 20, log=lines.append)
    assert st.oldest().name == "00000001.msg"
    st.delete(st.oldest())
    assert st.oldest().name == "00000003.msg" and st.corrupt == 1 and len(st) == 2
    reason = (root / "rejected" / "00000002.reason").read_text()
    assert reason.startswith("damaged on flash: ") and (root / "rejected" / BAD).exists()
    assert lines == ["queued 00000002.msg set aside: " + reason.strip()]


def test_a_foreign_name_gets_a_number_of_its_own_in_rejected(tmp_path):
    root = tmp_path / "q"
    make_queue(root)
    (root / "foo.msg").write_bytes(b"not mine")
    lines = []
    st = Store(str(root), 1 << 20, log=lines.append)
    assert len(st) == 4 and (root / "rejected" / "00000005.msg").read_bytes() == b"not mine"
    assert (root / "rejected" / "00000005.reason").read_text() == (
        "damaged on flash: not an entry the store makes: foo.msg\n"
    )
    assert lines == ["queued foo.msg set aside: damaged on flash: not an entry the store makes: foo.msg"]
    assert st.put(msg(9), "idle", "training") == "00000006.msg"  # numbers go on after it


def test_an_entry_that_can_be_neither_moved_nor_deleted_is_skipped_once(tmp_path, monkeypatch):
    import uingest.store

    root = tmp_path / "q"
    make_queue(root)
    (root / "00000001.msg").unlink()
    header(b"[1]")(root)

    def refuse(*args):
        raise OSError(30)  # EROFS

    monkeypatch.setattr(uingest.store.os, "rename", refuse)
    monkeypatch.setattr(uingest.store.os, "remove", refuse)
    lines = []
    st = Store(str(root), 1 << 20, log=lines.append)
    assert st.oldest().name == "00000003.msg"
    assert st.oldest().name == "00000003.msg" and len(st) == 2  # skipped, not opened again
    assert len(lines) == 1 and lines[0].startswith("queued 00000002.msg skipped: damaged on flash: "), lines


def test_the_header_a_store_writes_is_covered_by_its_hash(tmp_path):
    root = tmp_path / "q"
    st = Store(str(root), 1 << 20)
    st.put(msg(0), "idle", "training")
    head, b = head_and_body(root / "00000001.msg")
    meta = json.loads(head)
    assert meta["v"] == 2 and meta["sha256"] == hashlib.sha256(b).hexdigest()
    zeroed = head.replace(meta["header_sha256"].encode(), b"0" * 64)
    assert meta["header_sha256"] == hashlib.sha256(zeroed).hexdigest()


def test_a_label_too_long_for_a_header_is_not_queued(tmp_path):
    st = Store(str(tmp_path / "q"), 1 << 20)
    with pytest.raises(ValueError):
        st.put(msg(0), "x" + " " * 2000, "training")
    assert len(st) == 0 and os.listdir(tmp_path / "q") == ["rejected"]


MP_SHAPES = [
    "header-json-list",
    "header-line-of-megabytes",
    "label-changed-on-flash",
    "zero-length-file",
    "foreign-name-in-queue",
    "foreign-name-in-rejected",
    "directory-named-as-an-entry",
    "old-format-intact",
    "old-format-bad-content-type",
]


@pytest.mark.parametrize("shape", MP_SHAPES)
def test_a_damaged_queue_on_micropython(mpy, tmp_path, shape):
    from conftest import FIRMWARE, HERE

    damage, arrive, named = SHAPES[shape]
    root = tmp_path / "q"
    bodies = make_queue(root)
    damage(root)
    if (root / "00000005.msg").is_file():
        bodies["00000005.msg"] = msg(10).encode()
    for _ in range(2):  # and a reboot
        out = mpy.run_program("store_drain.py", root, path=FIRMWARE + ":" + HERE, heap="128K").stdout.decode()
        lines = out.strip().split("\n")
        if _ == 0:
            sent = [line.split() for line in lines if line.startswith("sent ")]
            assert [name for _, name, _ in sent] == arrive, out
            assert all(h == hashlib.sha256(bodies[name]).hexdigest() for _, name, h in sent)
            if named is not None:
                assert any(named in line for line in lines if line.startswith("queued ")), out
        else:
            assert lines == ["left 0"], out
