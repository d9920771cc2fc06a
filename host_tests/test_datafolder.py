"""DataFolder's group commit: many threads' commits share one index write and fsync, each stays all or
none, a failure fails its whole group and stores nothing, duplicates are found across a group."""

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


@pytest.fixture
def slow_fsync(monkeypatch):
    """An fsync that takes 5 ms, as on a disk; counts the index's."""
    real = os.fsync
    count = {"all": 0}

    def fsync(fd):
        count["all"] += 1
        time.sleep(0.005)
        real(fd)

    monkeypatch.setattr(datafolder.os, "fsync", fsync)
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
