"""DataFolder's group commit: many threads' commits share one index write and one sync of the disk (a syncfs,
or where there is none an fsync of the index), each stays all or none, a failure fails its whole group and
stores nothing, duplicates are found across a group; no commit returns before a flush that began after its
file was written and one that began after its index line was written."""

import errno
import os
import threading
import time

import pytest

from helpers import read_index
from uingest_tools import datafolder
from uingest_tools.collector_rules import MESSAGE_FIELDS, Rejected
from uingest_tools.datafolder import DataFolder


def sample(i, **kw):
    return dict(
        category="training",
        label="l%d" % (i % 3),
        ext="csv",
        data=b"timestamp,x\n0,%d\n" % i,
        fields=dict.fromkeys(MESSAGE_FIELDS),
        file_name="s%d.csv" % i,
        **kw,
    )


def commit_in_threads(folder, samples_per_commit):
    """Each list of samples committed by its own thread, all released at once: the outcomes or errors."""
    results = [None] * len(samples_per_commit)
    go = threading.Barrier(len(samples_per_commit))

    def run(i):
        go.wait()
        try:
            results[i] = folder.commit_all(samples_per_commit[i])
        except BaseException as e:  # noqa: B036 - recorded for the test to look at
            results[i] = e

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(samples_per_commit))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return results


@pytest.fixture(params=["syncfs", "fsync"])
def slow_fsync(monkeypatch, request):
    """A sync of the disk that takes 5 ms, as on a disk: the folder's syncfs, or (where there is none) its
    fsyncs; counts them."""
    count = {"all": 0}

    def slow(real):
        def sync(fd):
            count["all"] += 1
            time.sleep(0.005)
            real(fd)

        return sync

    if request.param == "fsync":
        monkeypatch.setattr(datafolder, "syncfs", None)
    elif datafolder.syncfs is None:
        pytest.skip("no syncfs here")
    else:
        monkeypatch.setattr(datafolder, "syncfs", slow(datafolder.syncfs))
    monkeypatch.setattr(datafolder.os, "fsync", slow(os.fsync))
    return count


def test_fifty_concurrent_commits_are_grouped_and_all_stored(tmp_path, slow_fsync, monkeypatch):
    folder = DataFolder(str(tmp_path))
    appends = []
    real_append = folder._append_index
    monkeypatch.setattr(folder, "_append_index", lambda records: (appends.append(len(records)), real_append(records)))
    results = commit_in_threads(folder, [[sample(i)] for i in range(50)])
    assert all(isinstance(r, list) and isinstance(r[0], dict) for r in results), results
    index = read_index(str(tmp_path))
    assert sorted(rec["sample_id"] for rec in index) == list(range(1, 51))
    assert sorted(rec["file_name"] for rec in index) == sorted("s%d.csv" % i for i in range(50))
    for rec in index:
        assert os.path.isfile(os.path.join(str(tmp_path), rec["file"]))
    assert sum(appends) == 50 and len(appends) < 25, appends  # one index write for many commits
    assert not [n for n in os.listdir(tmp_path / "training") if n.endswith(".tmp")]


def test_a_failed_index_write_fails_its_whole_group_and_stores_nothing(tmp_path, slow_fsync, monkeypatch):
    folder = DataFolder(str(tmp_path))
    folder.commit_all([sample(100)])
    before = sorted(os.listdir(tmp_path / "training"))
    real_append = folder._append_index

    def full(records):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(folder, "_append_index", full)
    results = commit_in_threads(folder, [[sample(i), sample(i + 50)] for i in range(10)])
    assert all(isinstance(r, Rejected) and r.status == 507 for r in results), results
    assert sorted(os.listdir(tmp_path / "training")) == before  # no file, no temp
    monkeypatch.setattr(folder, "_append_index", real_append)
    assert isinstance(folder.commit_all([sample(7)])[0], dict)
    assert [rec["sample_id"] for rec in read_index(str(tmp_path))] == [1, 2]


def test_duplicates_are_found_across_a_group(tmp_path, slow_fsync):
    folder = DataFolder(str(tmp_path))
    results = commit_in_threads(folder, [[sample(5, disallow_duplicates=True)] for _ in range(8)])
    outcomes = [r[0] for r in results]
    assert len([o for o in outcomes if isinstance(o, dict)]) == 1
    assert all(o.status == 409 for o in outcomes if isinstance(o, Rejected))
    assert len(read_index(str(tmp_path))) == 1
    assert not [n for n in os.listdir(tmp_path / "training") if n.endswith(".tmp")]


def test_a_category_folder_removed_while_the_server_runs_is_made_again(tmp_path):
    import shutil

    folder = DataFolder(str(tmp_path))
    folder.commit_all([sample(1)])
    shutil.rmtree(tmp_path / "training")
    [record] = folder.commit_all([sample(2)])
    assert os.path.isfile(os.path.join(str(tmp_path), record["file"]))


def test_no_commit_returns_before_the_flushes_that_cover_its_file_and_its_index_line(tmp_path, monkeypatch):
    if datafolder.syncfs is None:
        pytest.skip("no syncfs here")
    events = []  # in the order they happened (list.append is atomic)
    temps = {}  # fd -> temp path
    real_open, real_write, real_replace, real_syncfs = os.open, os.write, os.replace, datafolder.syncfs

    def logged_open(path, *a, **kw):
        fd = real_open(path, *a, **kw)
        if str(path).endswith(".tmp"):
            temps[fd] = str(path)
        return fd

    def logged_write(fd, data):
        n = real_write(fd, data)
        if fd in temps:
            events.append(("write", temps[fd]))
        return n

    def logged_replace(src, dst):
        real_replace(src, dst)
        events.append(("rename", src, dst))

    flushes = [0]

    def logged_syncfs(fd):
        flushes[0] += 1
        n = flushes[0]
        events.append(("flush-start", n))
        time.sleep(0.002)
        real_syncfs(fd)
        events.append(("flush-end", n))

    monkeypatch.setattr(datafolder.os, "open", logged_open)
    monkeypatch.setattr(datafolder.os, "write", logged_write)
    monkeypatch.setattr(datafolder.os, "replace", logged_replace)
    folder = DataFolder(str(tmp_path))
    monkeypatch.setattr(datafolder, "syncfs", logged_syncfs)
    real_append = folder._append_index

    def logged_append(records):
        size = real_append(records)
        events.append(("index", [r["file"] for r in records]))
        return size

    monkeypatch.setattr(folder, "_append_index", logged_append)

    commits = 30
    go = threading.Barrier(commits)

    def run(i):
        go.wait()
        [record] = folder.commit_all([sample(i)])
        events.append(("return", record["file"]))

    threads = [threading.Thread(target=run, args=(i,)) for i in range(commits)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()

    def at(kind, test):
        return [i for i, e in enumerate(events) if e[0] == kind and test(e)]

    def a_flush_between(after, before):
        starts = {e[1]: i for i, e in enumerate(events) if e[0] == "flush-start"}
        ends = {e[1]: i for i, e in enumerate(events) if e[0] == "flush-end"}
        return any(after < starts[n] and ends[n] < before for n in ends)

    returned = [e[1] for e in events if e[0] == "return"]
    assert len(returned) == commits
    for file in returned:
        [renamed] = at("rename", lambda e, f=file: e[2].endswith(f))
        temp = events[renamed][1]
        last_write = max(at("write", lambda e, t=temp: e[1] == t))
        [indexed] = at("index", lambda e, f=file: f in e[1])
        [returned_at] = at("return", lambda e, f=file: e[1] == f)
        assert a_flush_between(last_write, renamed), file  # its bytes on disk before its name
        assert a_flush_between(indexed, returned_at), file  # its name and index line on disk before it returns
    # the commits shared flushes: each needs two, alone they would take 2 x 30
    assert flushes[0] < commits, flushes[0]
    assert len(read_index(str(tmp_path))) == commits


def test_a_failed_flush_fails_every_commit_waiting_for_it_and_the_next_one_stores(tmp_path, monkeypatch):
    if datafolder.syncfs is None:
        pytest.skip("no syncfs here")
    folder = DataFolder(str(tmp_path))
    real_syncfs = datafolder.syncfs
    failing = [True]

    def sync(fd):
        time.sleep(0.005)
        if failing[0]:
            raise OSError(errno.EIO, "Input/output error")
        real_syncfs(fd)

    monkeypatch.setattr(datafolder, "syncfs", sync)
    results = commit_in_threads(folder, [[sample(i)] for i in range(10)])
    assert all(isinstance(r, OSError) and r.errno == errno.EIO for r in results), results
    assert not os.path.exists(tmp_path / "index.jsonl")
    assert os.listdir(tmp_path / "training") == []  # no file, no temp
    failing[0] = False
    [record] = folder.commit_all([sample(11)])
    assert [rec["file"] for rec in read_index(str(tmp_path))] == [record["file"]]


def test_a_failed_flush_after_a_cut_line_leaves_the_next_line_on_a_line_of_its_own(tmp_path, monkeypatch):
    """A kill cut the index's last line; the next group's lines start on a fresh line, then its second flush
    fails and the index is cut back: the group after must start on a fresh line again (it was glued to the cut
    line, which read_index skips whole: an answered sample missing from the index)."""
    if datafolder.syncfs is None:
        pytest.skip("no syncfs here")
    DataFolder(str(tmp_path)).commit_all([sample(0)])
    with open(tmp_path / "index.jsonl", "ab") as f:
        f.write(b'{"sample_id": 9, "fi')  # the kill
    real_syncfs = datafolder.syncfs
    calls = [0]

    def sync(fd):
        calls[0] += 1
        if calls[0] == 3:  # 1: the probe at start; 2: the group's files; 3: its index line
            raise OSError(errno.EIO, "Input/output error")
        real_syncfs(fd)

    monkeypatch.setattr(datafolder, "syncfs", sync)
    folder = DataFolder(str(tmp_path))
    with pytest.raises(OSError):
        folder.commit_all([sample(1)])
    [record] = folder.commit_all([sample(2)])
    records, unreadable = datafolder.read_index(str(tmp_path))
    assert unreadable == 1 and records[-1]["file"] == record["file"], (unreadable, records)  # 1: the kill's


def test_a_failed_flush_while_reconciling_leaves_no_index_line_behind(tmp_path, monkeypatch):
    """A sample file a kill left without its index line, reconciled at start when that flush fails: its line
    is cut back (left there, the next commit took its sample id too), and the next start indexes it once."""
    if datafolder.syncfs is None:
        pytest.skip("no syncfs here")
    [first] = DataFolder(str(tmp_path)).commit_all([sample(0)])
    os.unlink(tmp_path / "index.jsonl")  # the kill came before the index line
    real_syncfs = datafolder.syncfs
    calls = [0]

    def sync(fd):
        calls[0] += 1
        if calls[0] == 2:  # 1: the probe at start; 2: the reconciled line
            raise OSError(errno.EIO, "Input/output error")
        real_syncfs(fd)

    monkeypatch.setattr(datafolder, "syncfs", sync)
    folder = DataFolder(str(tmp_path))
    [second] = folder.commit_all([sample(1)])
    ids = [r["sample_id"] for r in read_index(str(tmp_path))]
    assert ids == [second["sample_id"]], ids
    DataFolder(str(tmp_path))  # the next start
    records = read_index(str(tmp_path))
    ids = [r["sample_id"] for r in records]
    assert sorted(r["file"] for r in records) == sorted([first["file"], second["file"]])
    assert len(set(ids)) == len(ids), ids


@pytest.mark.parametrize("mode", ["syncfs", "fsync"])
def test_a_failed_commit_makes_its_rollback_durable(tmp_path, monkeypatch, mode):
    """The group's files are in place when its index line fails (the flush of it, or the write): the files
    are removed, and the removal is made durable before the commit fails. Left to the page cache, a crash
    then would leave files that the next start indexes (as a kill's leftovers) for samples their clients
    were told failed, stored twice when they are sent again."""
    if mode == "syncfs" and datafolder.syncfs is None:
        pytest.skip("no syncfs here")
    events = []
    real_unlink, real_fsync_path = os.unlink, datafolder.fsync_path

    def logged_unlink(path, *a, **kw):
        real_unlink(path, *a, **kw)
        events.append(("unlink", str(path)))

    def logged_fsync_path(path):
        real_fsync_path(path)
        events.append(("fsync", str(path)))

    if mode == "syncfs":
        real_syncfs = datafolder.syncfs
        calls = [0]

        def sync(fd):
            calls[0] += 1
            events.append(("flush", calls[0]))
            if calls[0] == 3:  # 1: the probe at start; 2: the group's files; 3: its names and index line
                raise OSError(errno.EIO, "Input/output error")
            real_syncfs(fd)

        monkeypatch.setattr(datafolder, "syncfs", sync)
    else:
        monkeypatch.setattr(datafolder, "syncfs", None)
    monkeypatch.setattr(datafolder.os, "unlink", logged_unlink)
    monkeypatch.setattr(datafolder, "fsync_path", logged_fsync_path)
    folder = DataFolder(str(tmp_path))
    if mode == "fsync":

        def failing_append(records):
            raise OSError(errno.EIO, "Input/output error")

        monkeypatch.setattr(folder, "_append_index", failing_append)
    with pytest.raises(OSError):
        folder.commit_all([sample(1), sample(2)])
    assert os.listdir(tmp_path / "training") == []
    removed = [i for i, e in enumerate(events) if e[0] == "unlink" and "/training/" in e[1]]
    assert len(removed) == 2, events
    if mode == "syncfs":
        assert any(e[0] == "flush" and i > max(removed) for i, e in enumerate(events)), events
    else:
        training = str(tmp_path / "training")
        assert any(e == ("fsync", training) and i > max(removed) for i, e in enumerate(events)), events


def test_commit_each_gives_each_sample_its_own_outcome_in_one_group(tmp_path, monkeypatch):
    """commit_each (the committer's): a duplicate under disallow_duplicates, in the index or earlier in the group,
    is refused alone (409); a sample that cannot be staged fails alone; the others are stored in one group: one
    index write and, where the folder flushes its filesystem, two flushes."""
    folder = DataFolder(str(tmp_path))
    folder.commit_all([sample(1)])
    appends = []
    real_append = folder._append_index
    monkeypatch.setattr(folder, "_append_index", lambda records: (appends.append(len(records)), real_append(records)))
    flushes = folder._flush.count if folder.flushes_its_filesystem else None
    outcomes = folder.commit_each(
        [
            sample(2),
            sample(1, disallow_duplicates=True),  # in the index
            sample(3),
            sample(3, disallow_duplicates=True),  # earlier in this group
            dict(sample(4), data=None),  # no bytes: its staging fails
            sample(5),
        ]
    )
    assert [o.status if isinstance(o, Rejected) else type(o).__name__ for o in outcomes] == [
        "dict", 409, "dict", 409, "TypeError", "dict"
    ]  # fmt: skip
    assert appends == [3]
    if flushes is not None:
        assert folder._flush.count - flushes == 2
    index = read_index(str(tmp_path))
    assert [rec["file_name"] for rec in index] == ["s1.csv", "s2.csv", "s3.csv", "s5.csv"]
    assert [o["sample_id"] for o in outcomes if isinstance(o, dict)] == [2, 3, 4]
    assert not [n for n in os.listdir(tmp_path / "training") if n.endswith(".tmp")]


def test_commit_each_flushes_the_files_before_their_names_and_the_names_before_it_returns(tmp_path, monkeypatch):
    if datafolder.syncfs is None:
        pytest.skip("no syncfs here")
    events = []
    real_replace, real_syncfs = os.replace, datafolder.syncfs
    folder = DataFolder(str(tmp_path))
    monkeypatch.setattr(datafolder.os, "replace", lambda src, dst: (real_replace(src, dst), events.append("rename")))
    monkeypatch.setattr(datafolder, "syncfs", lambda fd: (real_syncfs(fd), events.append("flush")))
    real_append = folder._append_index
    monkeypatch.setattr(folder, "_append_index", lambda records: (events.append("index"), real_append(records))[1])
    outcomes = folder.commit_each([sample(i) for i in range(3)])
    assert all(isinstance(o, dict) for o in outcomes)
    assert events == ["flush", "rename", "rename", "rename", "index", "flush"]


def test_commit_each_a_failed_flush_fails_all_of_them_and_stores_nothing(tmp_path, monkeypatch):
    if datafolder.syncfs is None:
        pytest.skip("no syncfs here")
    folder = DataFolder(str(tmp_path))
    real_syncfs = datafolder.syncfs
    for fail_at in (1, 2):  # the flush of the files, then the flush of their names and index lines
        calls = [0]

        def sync(fd, fail_at=fail_at, calls=calls):
            calls[0] += 1
            if calls[0] == fail_at:
                raise OSError(errno.EIO, "Input/output error")
            real_syncfs(fd)

        monkeypatch.setattr(datafolder, "syncfs", sync)
        outcomes = folder.commit_each([sample(i) for i in range(4)])
        assert all(isinstance(o, OSError) and o.errno == errno.EIO for o in outcomes), outcomes
        assert read_index(str(tmp_path)) == []
        assert os.listdir(tmp_path / "training") == []  # no file, no temp
    monkeypatch.setattr(datafolder, "syncfs", real_syncfs)
    assert [isinstance(o, dict) for o in folder.commit_each([sample(9)])] == [True]
    assert [rec["file_name"] for rec in read_index(str(tmp_path))] == ["s9.csv"]


def test_commit_each_interrupted_leaves_no_temp_file_behind(tmp_path, monkeypatch):
    folder = DataFolder(str(tmp_path))
    real_stage = folder._stage
    staged = [0]

    def stage(samples, flush_now=True):
        staged[0] += 1
        if staged[0] == 3:
            raise KeyboardInterrupt()
        return real_stage(samples, flush_now)

    monkeypatch.setattr(folder, "_stage", stage)
    with pytest.raises(KeyboardInterrupt):
        folder.commit_each([sample(i) for i in range(4)])
    assert os.listdir(tmp_path / "training") == []  # the two staged before it removed
    assert read_index(str(tmp_path)) == []
