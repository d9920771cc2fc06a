"""uingest.store: the flash queue. Oldest first, delete only after ACCEPTED,
rejected ones aside with the reason, a byte budget with drop-oldest, and
nothing half-written or damaged is ever handed out."""

import hashlib
import os

import cbor2
import pytest

from helpers import ChunkSink
from sample_windows import imu
from uingest import message
from uingest.store import Store


def msg(i, rows=20):
    w = imu(rows)
    return message.Message(w, "cbor", hmac_key="k", iat=1000 + i)


def body_of(entry):
    s = ChunkSink()
    entry.write(s)
    return b"".join(s.parts)


def test_put_then_oldest_first_and_exact_bytes(tmp_path):
    st = Store(str(tmp_path / "q"), 1 << 20)
    names = [st.put(msg(i), "idle", "training") for i in range(3)]
    assert st.names() == names and len(st) == 3
    e = st.oldest()
    assert e.name == names[0] and e.meta["label"] == "idle" and e.meta["category"] == "training"
    assert e.content_type == "application/cbor"
    body = body_of(e)
    assert body == msg(0).encode() and e.length == len(body)
    assert cbor2.loads(body)["protected"]["iat"] == 1000
    st.delete(e)
    assert st.oldest().name == names[1]


def test_sequence_continues_after_restart(tmp_path):
    root = str(tmp_path / "q")
    st = Store(root, 1 << 20)
    a = st.put(msg(0), "idle", "training")
    st2 = Store(root, 1 << 20)
    b = st2.put(msg(1), "idle", "training")
    assert b > a and st2.names() == [a, b]


def test_leftover_temp_files_are_removed_never_sent(tmp_path):
    root = tmp_path / "q"
    st = Store(str(root), 1 << 20)
    st.put(msg(0), "idle", "training")
    (root / "00000002.tmp").write_bytes(b'{"label": "x"')  # a write cut by a power cut
    st2 = Store(str(root), 1 << 20)
    assert not (root / "00000002.tmp").exists()
    assert len(st2) == 1


@pytest.mark.parametrize("damage", ["truncate", "flip", "header"])
def test_damaged_entries_are_moved_aside_not_sent(tmp_path, damage):
    root = tmp_path / "q"
    st = Store(str(root), 1 << 20)
    bad = st.put(msg(0), "idle", "training")
    good = st.put(msg(1), "idle", "training")
    p = root / bad
    data = p.read_bytes()
    if damage == "truncate":
        p.write_bytes(data[:-10])
    elif damage == "flip":
        p.write_bytes(data[:-5] + bytes([data[-5] ^ 1]) + data[-4:])
    else:
        p.write_bytes(b"garbage\n" + data)
    e = st.oldest()
    assert e.name == good and st.corrupt == 1
    assert (root / "rejected" / bad).exists() and "damaged" in (root / "rejected" / (bad[:-4] + ".reason")).read_text()


def test_reject_moves_aside_with_reason(tmp_path):
    root = tmp_path / "q"
    st = Store(str(root), 1 << 20)
    n = st.put(msg(0), "idle", "training")
    st.reject(st.oldest(), "400 payload.values[3] has 2 values")
    assert len(st) == 0 and st.rejected == 1
    assert (root / "rejected" / n).exists()
    assert (root / "rejected" / (n[:-4] + ".reason")).read_text() == "400 payload.values[3] has 2 values\n"


def test_budget_drops_oldest_and_counts(tmp_path):
    one = msg(0).length + 300
    st = Store(str(tmp_path / "q"), 3 * one)
    names = [st.put(msg(i), "idle", "training") for i in range(5)]
    assert st.dropped >= 2
    assert st.names() == names[-(5 - st.dropped) :]  # the newest survive
    assert st.bytes_used() <= 3 * one


def test_a_message_bigger_than_the_whole_budget_drops_nothing(tmp_path):
    one = msg(0).length + 300
    st = Store(str(tmp_path / "q"), 3 * one)
    names = [st.put(msg(i), "idle", "training") for i in range(2)]
    big = msg(9, rows=200)
    with pytest.raises(ValueError, match=r"^\d+ bytes, over the whole queue budget of %d$" % (3 * one)):
        st.put(big, "idle", "training")
    assert st.names() == names and st.dropped == 0 and len(st) == 2  # the older windows stay
    assert not [n for n in os.listdir(tmp_path / "q") if n.endswith(".tmp")]


def test_sha256_in_header_matches_body(tmp_path):
    st = Store(str(tmp_path / "q"), 1 << 20)
    st.put(msg(0), "wave", "testing")
    e = st.oldest()
    assert e.meta["sha256"] == hashlib.sha256(body_of(e)).hexdigest()


def test_store_on_micropython(mpy, tmp_path):
    from conftest import FIRMWARE, HERE

    out = mpy.run_program("store_put_and_send.py", tmp_path / "q", path=FIRMWARE + ":" + HERE, heap="128K").stdout
    assert out.rsplit(b"\n", 2)[-2] == b"2 00000002.msg"
    assert out.startswith(msg(0).encode())
    assert sorted(os.listdir(tmp_path / "q")) == ["00000002.msg", "00000003.msg", "rejected"]


def test_rejected_folder_is_capped_and_numbers_go_on_after_a_reboot(tmp_path):
    root = tmp_path / "q"
    st = Store(str(root), 1 << 20)
    for i in range(55):
        st.keep_rejected(msg(i), "idle", "training", "401 bad key %d" % i)
    aside = sorted(n for n in os.listdir(root / "rejected") if n.endswith(".msg"))
    assert len(aside) == 50 and aside[0] == "00000006.msg"  # the oldest five went
    st2 = Store(str(root), 1 << 20)  # a reboot with an empty queue
    st2.keep_rejected(msg(99), "idle", "training", "400 again")
    assert (root / "rejected" / "00000056.reason").read_text() == "400 again\n"
    assert (root / "rejected" / "00000055.reason").read_text() == "401 bad key 54\n"  # not overwritten
