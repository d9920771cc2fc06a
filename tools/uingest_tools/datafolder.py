"""The data folder `uingest serve` stores into, the layout Edge Impulse's uploader reads:

    <data-dir>/<category>/<label>.<id>.<ext>     one file per sample, written atomically
    <data-dir>/index.jsonl                       one JSON line per stored sample: the truth about labels

- A sample is stored only once its file is on disk and renamed into place and its index line is written and on
  disk, so stopping the server (Ctrl-C, SIGTERM: uvicorn lets running requests finish) loses no sample it
  acknowledged. "On disk": one sync of the whole filesystem (syncfs, Linux 5.8+) shared by every commit in
  flight, see _Flusher; elsewhere (or when a category folder is on another filesystem) an fsync per file and
  per folder. Temp files left by a crash (``.upload-*.tmp``, ``.store-*.tmp``) are removed at start; a
  line cut by a crash is skipped by the readers (read_index) and the next line starts on a line of its own.
  Sample files a crash left in place without their index line (killed between the rename and the index
  line) are reconciled at start: indexed when whole and valid (signature "unchecked" or "none": no key is
  checked then), removed otherwise, in one log line.
- Several samples (one /files request) are stored all or none (DataFolder.commit_all): when a file or the
  index line cannot be written, what this commit put in place is removed and the index cut back to where it
  was. A full disk (ENOSPC, EDQUOT) is Rejected(507), logged at most once a minute; the next commit that
  finds space again stores as usual.
- No label: the index says ``"label": null`` and the file is named ``unlabeled.<id>.<ext>``.
- Every stored name carries a unique id (microseconds, hex), so x-add-date-id has no further effect.
- Duplicates are found by the sha256 of the stored bytes; every stored sample's hash is kept in memory
  (loaded from index.jsonl at start) whether or not x-disallow-duplicates was sent.
- Whoever wants to know the samples is a subscriber (DataFolder(data_dir, subscribers=...)): it is given
  those already indexed as the folder opens (the index is read once at start, for the folder and for
  them), then each new one; the folder knows nothing of its subscribers.
"""

from __future__ import annotations

import ctypes
import datetime
import errno
import hashlib
import json
import logging
import os
import platform
import sys
import tempfile
import threading
import time
import weakref

from .collector_rules import MESSAGE_FIELDS, MESSAGE_KINDS, Rejected, check_file, split_category, validate_message
from .common import FILE_CATEGORIES, FILE_TYPES, fsync_path

log = logging.getLogger("uingest.serve")

INDEX = "index.jsonl"
NO_LABEL_NAME = "unlabeled"
DISK_FULL_LOG_EVERY_S = 60.0
DISK_FULL_REASON = "no space left on the server's disk: not stored, send it again later"
DUPLICATE_REASON = "duplicate: this sample is already stored (x-disallow-duplicates)"


def _libc_syncfs():
    """syncfs(fd): os.syncfs where Python has it (3.11 has not), else libc's; None when not Linux or on a kernel
    before 5.8, whose syncfs does not report the writeback errors (EIO, ENOSPC) that an fsync would."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        if tuple(int(n) for n in platform.release().split("-")[0].split(".")[:2]) < (5, 8):
            return None
        if hasattr(os, "syncfs"):
            return os.syncfs
        call = ctypes.CDLL(None, use_errno=True).syncfs  # a CDLL call lets go of the GIL while it runs
    except (OSError, ValueError, AttributeError):
        return None
    call.argtypes = [ctypes.c_int]
    call.restype = ctypes.c_int

    def syncfs(fd: int) -> None:
        """Write out and wait for every dirty page and inode of fd's filesystem (the data, the names, the
        journal). Raises OSError, also for a writeback error of the filesystem since the last call on fd."""
        if call(fd) != 0:
            code = ctypes.get_errno()
            raise OSError(code, os.strerror(code))

    return syncfs


syncfs = _libc_syncfs()  # None where there is none: the folder fsyncs each file then


class _Flusher:
    """Group commit of the disk: one syncfs at a time for the folder's filesystem; whoever asks while one runs
    waits for the next, which then covers all of them. A flush covers what was written before it began."""

    def __init__(self, fd: int):
        self._fd = fd  # the data folder, open for the folder's life (syncfs reports errors since the last call)
        self._cond = threading.Condition()
        self._started = 0  # flushes begun
        self._done = 0  # flushes returned (the one running is _started when _running)
        self._running = False
        self._failed = 0  # the last flush that failed, and how
        self._error: tuple = (0, "")
        self.count = 0  # flushes run (tests, the bench)

    def __call__(self) -> None:
        """Return once a flush that began after this call has returned: what this thread wrote before the call
        is on disk. Raises OSError when that flush (or one after it that it waited through) failed."""
        with self._cond:
            target = self._started + 1
            while self._done < target:
                if self._running:
                    self._cond.wait()
                    continue
                self._running = True
                self._started += 1
                flush = self._started
                error = None
                self._cond.release()
                try:
                    syncfs(self._fd)  # looked up each time: a test puts a slow or failing disk there
                except OSError as e:
                    error = (e.errno or errno.EIO, e.strerror or str(e))
                except BaseException:
                    error = (errno.EIO, "the flush was interrupted")
                    raise
                finally:
                    self._cond.acquire()
                    self._running = False
                    self._done = flush
                    self.count += 1
                    if error is not None:
                        self._failed, self._error = flush, error
                    self._cond.notify_all()
            if self._failed >= target:
                raise OSError(*self._error)  # a new one per waiter: each thread's traceback its own


def _fsync_folders_of(paths) -> None:
    """fsync each folder holding one of paths, once: their names (made, renamed or removed) on disk."""
    for folder in sorted({os.path.dirname(p) for p in paths}):
        fsync_path(folder)


def is_disk_full(e: BaseException) -> bool:
    return isinstance(e, OSError) and e.errno in (errno.ENOSPC, errno.EDQUOT)


def read_index(data_dir: str) -> tuple[list[dict], int]:
    """(records, unreadable) of <data_dir>/index.jsonl: every line that is a JSON object, in order, and how
    many other non-blank lines there are (a line cut by a crash). Raises FileNotFoundError when there is no
    index yet, OSError when it cannot be read."""
    with open(os.path.join(data_dir, INDEX), "rb") as f:
        data = f.read()
    records, unreadable = [], 0
    for line in data.splitlines():
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
        except ValueError:
            unreadable += 1
            continue
        if isinstance(rec, dict):
            records.append(rec)
        else:
            unreadable += 1
    return records, unreadable


def _ends_with_newline(path: str) -> bool:
    """True for a file that is missing, empty or ends with a newline."""
    try:
        with open(path, "rb") as f:
            if f.seek(0, os.SEEK_END) == 0:
                return True
            f.seek(-1, os.SEEK_END)
            return f.read(1) == b"\n"
    except FileNotFoundError:
        return True


class _Commit:
    """One commit_all call waiting in a group: its samples, what _stage made of them, and when done its
    outcomes (a record or a Rejected(409) per sample) or the error that kept all of them out."""

    def __init__(self, samples: list, staged: list):
        self.samples = samples
        self.staged = staged
        self.outcomes: list = []
        self.error = None
        self.done = False


class DataFolder:
    """Sample files plus index.jsonl. Thread-safe; commits are grouped (commit_all)."""

    def __init__(self, data_dir: str, subscribers=()):
        """subscribers: callables given every sample's index record, those already indexed first (in index
        order, as the folder opens: the index is read once), then each new one as it is stored."""
        self.data_dir = os.path.abspath(data_dir)
        os.makedirs(self.data_dir, exist_ok=True)
        self.index_path = os.path.join(self.data_dir, INDEX)
        self._subscribers: list = list(subscribers)
        self._lock = threading.Lock()  # held by the thread that commits a group
        self._waiting_lock = threading.Lock()
        self._waiting: list = []  # commits staged, not yet in place
        self._temps = 0  # temp files named so far
        self._pid = os.getpid()
        self._folders: set = set()  # category folders known to exist
        self._elsewhere: set = set()  # those of them on another filesystem than the data folder (a link)
        self._hashes: set[str] = set()
        self._next_sample = 1
        self._last_us = 0
        self._index_ends_clean = True
        self._disk_full_logged_at = None  # time.monotonic() of the last log line about a full disk
        self._flush = None  # a _Flusher when the folder syncs its filesystem once per group, else fsyncs per file
        self._device = os.stat(self.data_dir).st_dev
        if syncfs is not None and self._on_own_filesystem(self.index_path):
            fd = os.open(self.data_dir, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
            weakref.finalize(self, os.close, fd)
            try:
                syncfs(fd)  # one that fails here (a sandbox that forbids it) would fail every commit
                self._flush = _Flusher(fd)
            except OSError as e:
                log.info("no syncfs on %s (%s): an fsync per sample", self.data_dir, e)
        indexed = self._load_index()
        self._remove_stale_temps()
        self._reconcile(indexed)

    def _load_index(self) -> set:
        """Load the hashes and the next sample id; return the files the index names."""
        try:
            records, _ = read_index(self.data_dir)
        except FileNotFoundError:
            return set()
        self._index_ends_clean = _ends_with_newline(self.index_path)
        n = 0
        indexed = set()
        for rec in records:
            self._publish(rec)
            n += 1
            indexed.add(rec.get("file"))
            if isinstance(rec.get("sha256"), str):
                self._hashes.add(rec["sha256"])
            if isinstance(rec.get("sample_id"), int):
                n = max(n, rec["sample_id"])
        self._next_sample = n + 1
        return indexed

    def _remove_stale_temps(self) -> None:
        dirs = [self.data_dir] + [os.path.join(self.data_dir, c) for c in FILE_CATEGORIES]
        for d in dirs:
            try:
                names = os.listdir(d)
            except OSError:
                continue
            for name in names:
                if name.endswith(".tmp") and name.startswith((".upload-", ".store-")):
                    try:
                        os.unlink(os.path.join(d, name))
                    except OSError:
                        pass

    def _reconcile(self, indexed: set) -> None:
        """Index the sample files not in the index (a kill between a rename and its index line) that are
        whole and valid; remove the others. One log line when there were any."""
        found = []
        for category in FILE_CATEGORIES:
            folder = os.path.join(self.data_dir, category)
            try:
                names = os.listdir(folder)
            except OSError:
                continue
            for name in names:
                path = os.path.join(folder, name)
                ext = os.path.splitext(name)[1].lower()
                if name.startswith(".") or ext not in FILE_TYPES or not os.path.isfile(path):
                    continue
                if "%s/%s" % (category, name) not in indexed:
                    found.append((os.stat(path).st_mtime_ns, category, name))
        if not found:
            return
        records, removed = [], []
        for mtime_ns, category, name in sorted(found):
            path = os.path.join(self.data_dir, category, name)
            record = self._record_of_file(path, category, name, mtime_ns)
            if record is None:
                removed.append(path)
            else:
                record["sample_id"] = self._next_sample + len(records)
                records.append(record)
        try:
            if records:
                size = self._append_index(records)
                if self._flush is not None:
                    try:
                        self._flush()
                    except OSError:
                        self._cut_index(size)  # lines not durable: not left for the next commit's ids to repeat
                        raise
            for path in removed:
                os.unlink(path)
        except OSError as e:
            log.warning("could not reconcile %d sample files that are not indexed: %s", len(found), e)
            return
        for record in records:
            self._hashes.add(record["sha256"])
            self._publish(record)
        self._next_sample += len(records)
        log.info(
            "reconciled %d sample files that were not indexed: %d indexed, %d removed",
            len(found),
            len(records),
            len(removed),
        )

    def _record_of_file(self, path: str, category: str, name: str, mtime_ns: int):
        """The index record of a sample file found without one (its next sample id), or None when it is not
        whole and valid."""
        try:
            with open(path, "rb") as f:
                data = f.read()
        except OSError:
            return None
        kind = FILE_TYPES[os.path.splitext(name)[1].lower()]
        try:
            if kind in MESSAGE_KINDS:
                fields = validate_message(data, kind)
            else:
                check_file(data, kind)
                fields = dict.fromkeys(MESSAGE_FIELDS)
        except Rejected:
            return None
        parts = name.rsplit(".", 2)
        label = parts[0] if len(parts) == 3 and parts[0] != NO_LABEL_NAME else None
        received = datetime.datetime.fromtimestamp(mtime_ns / 1e9, datetime.timezone.utc)
        return {
            "sample_id": None,  # given by _reconcile
            "file": "%s/%s" % (category, name),
            "category": category,
            "label": label,
            **fields,
            "sha256": hashlib.sha256(data).hexdigest(),
            "file_name": name,
            "metadata": None,
            "received_at": received.isoformat(timespec="milliseconds"),
        }

    @property
    def flushes_its_filesystem(self) -> bool:
        """True when a commit's flush is one syncfs of the folder's filesystem, shared by every file written before
        it (commit_each then costs two for many samples); False where each file is fsynced on its own."""
        return self._flush is not None

    def spool_file(self):
        """A temp file in the data dir for a body being received: (file object, path)."""
        fd, path = tempfile.mkstemp(dir=self.data_dir, prefix=".upload-", suffix=".tmp")
        return os.fdopen(fd, "wb"), path

    def is_duplicate(self, sha: str) -> bool:
        return sha in self._hashes

    def commit(self, **sample) -> dict:
        """Store one sample (the arguments of a commit_all item) and return its record; Rejected(409) for a
        duplicate under disallow_duplicates, Rejected(507) when the disk is full."""
        [outcome] = self.commit_all([sample])
        if isinstance(outcome, Rejected):
            raise outcome
        return outcome

    def commit_all(self, samples: list[dict]) -> list:
        """Store samples, all or none, and append their index lines; return for each its record, or the
        Rejected(409) that kept it out (a duplicate under disallow_duplicates, in the index or earlier in
        samples). Each sample: category, label, ext, data, fields, file_name, and optionally metadata,
        disallow_duplicates, src_path (a file holding data already: renamed into place, or copied and removed where
        the category's folder is on another filesystem), extra (more index fields). Returns only once the files
        and the index lines are on disk. When that fails nothing of them is stored: Rejected(507) for a full
        disk, else the OSError.

        Group commit: each sample's file is written to a temp file first, by its own thread and without the
        lock, and made durable: by the next flush of the filesystem (_Flusher: one syncfs shared by every commit
        that asked while the one before ran) or, without syncfs, its own fsync. Then whoever holds the lock puts
        in place every commit waiting by then (renames, one index write for all of them) and makes that durable:
        one more flush, or an fsync per folder and one of the index. Only then does any of them return. On a
        disk where a sync takes milliseconds that is what lets many devices post at once; a commit that fails
        there fails for every commit of its group (none of them is acknowledged)."""
        staged, _ = self._stage(samples)
        commit = _Commit(samples, staged)
        with self._waiting_lock:
            self._waiting.append(commit)
        with self._lock:
            if not commit.done:
                with self._waiting_lock:
                    group, self._waiting = self._waiting, []
                self._commit_group(group)
        if commit.error is not None:
            raise commit.error
        return commit.outcomes

    def _stage(self, samples: list[dict], flush_now: bool = True) -> tuple[list, _Flusher | None]:
        """Per sample (its sha256, its category, a durable temp file of its bytes in the category's folder, or
        its src_path): on disk through the folder's next flush, or each fsynced when it has none. What takes
        long and needs no lock: a large sample's hash, the writes, the flush or fsyncs. Removes what it made
        when one fails. Returns (staged, the flush still owed them): None once flushed or fsynced; without
        flush_now the folder's flush, which the caller runs (commit_each: one for many samples)."""
        staged = []
        flusher = None  # the flush that is to make the files written durable (none: each was fsynced)
        try:
            for sample in samples:
                sha = hashlib.sha256(sample["data"]).hexdigest()
                category = sample["category"]
                if category == "split":
                    category = split_category(sha)
                folder = self._folder(category)
                flush = self._flush  # after _folder: None when it found the folder on another filesystem
                flusher = flusher or flush
                src = sample.get("src_path")
                if src is not None and category not in self._elsewhere:
                    if flush is None:
                        fsync_path(src)
                    staged.append((sha, category, src, False))
                    continue
                # else its bytes (a spool file's too: read back whole) go to a temp file of the category's folder
                with self._waiting_lock:
                    self._temps += 1
                    tmp = os.path.join(folder, ".store-%d-%x.tmp" % (self._pid, self._temps))  # ours alone
                try:
                    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
                except FileNotFoundError:  # the folder was removed while the server runs: made again
                    self._folders.discard(category)
                    self._folder(category)
                    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
                staged.append((sha, category, tmp, True))
                try:  # os.write on the descriptor: a file object around it costs more than the write here
                    os.fchmod(fd, 0o644)  # whatever the umask: what the uploader reads
                    view, done = memoryview(sample["data"]), 0
                    while done < len(view):
                        done += os.write(fd, view[done:])
                    if flush is None:
                        os.fsync(fd)
                finally:
                    os.close(fd)
                if src is not None:
                    os.unlink(src)  # copied: the spool file is done with
            if flusher is not None and flush_now:
                flusher()  # the files' bytes on disk before any name points at them
                flusher = None
        except BaseException as e:
            self._remove_temps(staged)
            if is_disk_full(e):
                raise self.disk_full() from None
            raise
        return staged, flusher

    def commit_each(self, samples: list[dict]) -> list:
        """Store each of samples on its own, as commit would one after the other, in one group: each one's file
        written, one flush for all of them, then their names and index lines and one more flush. Returns per
        sample its record, or the exception that kept it out: Rejected(409) for a duplicate under
        disallow_duplicates, Rejected(507) for a full disk, else the OSError; a flush that fails fails all of
        them. For one thread that stores many devices' windows (ingestion's committer): commit_all's group
        forms from threads that wait on each other for it, here the caller brings the group."""
        outcomes: list = [None] * len(samples)
        group: list[tuple[int, _Commit]] = []
        flush = None  # the folder's flush, owed to the files staged (None: each was fsynced)
        try:
            for i, sample in enumerate(samples):
                try:
                    staged, owed = self._stage([sample], flush_now=False)
                except Exception as e:
                    outcomes[i] = e
                    continue
                group.append((i, _Commit([sample], staged)))
                flush = flush or owed
            if flush is not None:
                flush()  # the files' bytes on disk before any name points at them
        except BaseException as e:
            for _, commit in group:
                self._remove_temps(commit.staged)
            if not isinstance(e, Exception):
                raise
            error = self.disk_full() if is_disk_full(e) else e
            for i, _ in group:
                outcomes[i] = error
            return outcomes
        if group:
            with self._lock:
                self._commit_group([commit for _, commit in group])
            for i, commit in group:
                outcomes[i] = commit.error if commit.error is not None else commit.outcomes[0]
        return outcomes

    @staticmethod
    def _remove_temps(staged) -> None:
        for _, _, path, ours in staged:
            if ours:
                try:
                    os.unlink(path)
                except OSError:
                    pass

    def _commit_group(self, group: list) -> None:
        """With the lock held: put every commit of group in place, each all or none, and index them in one
        write; mark each done with its outcomes or its error. Never raises."""
        placed: list[str] = []
        records: list[dict] = []
        shas: set = set()
        index_size = None  # the index's size before this group's lines, once they are written
        flush = self._flush
        try:
            for commit in group:
                commit.outcomes = []
                for sample, (sha, category, path, ours) in zip(commit.samples, commit.staged):
                    if sample.get("disallow_duplicates") and (sha in self._hashes or sha in shas):
                        commit.outcomes.append(Rejected(409, DUPLICATE_REASON))
                        if ours:
                            os.unlink(path)
                        continue
                    shas.add(sha)
                    final = self._new_path(category, sample["label"], sample["ext"])
                    if not ours:
                        os.chmod(path, 0o644)  # a spool file (mkstemp: 0600); ours were made 0644
                    os.replace(path, final)
                    placed.append(final)
                    record = self._record(sample, sha, category, final, len(records))
                    records.append(record)
                    commit.outcomes.append(record)
            if flush is None:
                _fsync_folders_of(placed)
            if records:
                index_size = self._append_index(records)
            if flush is not None and (placed or records):
                flush()  # the names and the index lines on disk: then, and only then, they are stored
        except BaseException as e:
            if index_size is not None:
                self._cut_index(index_size)
            for final in placed:
                try:
                    os.unlink(final)
                except OSError:
                    pass
            # The unlinks on disk too: after a crash the next start would index files left in place (as a
            # kill's) for samples their clients were told failed, and a retry would store them twice. Best
            # effort: the disk may be failing.
            try:
                if flush is not None:
                    if placed:
                        flush()
                else:
                    _fsync_folders_of(placed + ([self.index_path] if index_size == 0 else []))
            except OSError:
                pass
            error = self.disk_full() if is_disk_full(e) else e
            for commit in group:
                self._remove_temps(commit.staged)
                commit.error = error
                commit.done = True
            return
        if self._disk_full_logged_at is not None:
            self._disk_full_logged_at = None
            log.info("storing again: there is space on the disk of %s", self.data_dir)
        for record in records:
            self._hashes.add(record["sha256"])
            self._next_sample += 1
        for record in records:
            self._publish(record)
        for commit in group:
            commit.done = True

    def disk_full(self) -> Rejected:
        """The refusal for a full disk (507); logs it at most once every DISK_FULL_LOG_EVERY_S."""
        now = time.monotonic()
        if self._disk_full_logged_at is None or now - self._disk_full_logged_at >= DISK_FULL_LOG_EVERY_S:
            self._disk_full_logged_at = now
            log.warning(
                "no space left on the disk of %s: samples are refused (507) until there is (logged once a minute)",
                self.data_dir,
            )
        return Rejected(507, DISK_FULL_REASON)

    # --- the steps of a commit, each with the commit lock held

    def _record(self, sample: dict, sha: str, category: str, final: str, earlier: int) -> dict:
        """The index record of a sample placed at final; earlier: the records before it in this group."""
        return {
            "sample_id": self._next_sample + earlier,
            "file": category + "/" + os.path.basename(final),
            "category": category,
            "label": sample["label"],
            **sample["fields"],
            "sha256": sha,
            "file_name": sample["file_name"],
            "metadata": sample.get("metadata"),
            **(sample.get("extra") or {}),
            "received_at": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="milliseconds"),
        }

    def _unique_id(self) -> str:
        us = time.time_ns() // 1000
        if us <= self._last_us:
            us = self._last_us + 1
        self._last_us = us
        return "%x" % us

    def _folder(self, category: str) -> str:
        """<data-dir>/<category>, made if needed (looked at once: a commit is a few system calls fewer)."""
        folder = os.path.join(self.data_dir, category)
        if category not in self._folders:
            os.makedirs(folder, exist_ok=True)
            if not self._on_own_filesystem(folder):
                self._elsewhere.add(category)  # a spool file in the data folder cannot be renamed there
                if self._flush is not None:
                    self._flush = None  # its syncfs would not cover that folder: an fsync per file from now on
                    log.info("%s is on another filesystem than %s: an fsync per sample", folder, self.data_dir)
            else:
                self._elsewhere.discard(category)
            self._folders.add(category)
        return folder

    def _on_own_filesystem(self, path: str) -> bool:
        """True when path (missing: its folder) is on the data folder's filesystem, which its flush syncs."""
        try:
            return os.stat(path).st_dev == self._device
        except FileNotFoundError:
            return True

    def _new_path(self, category: str, label, ext: str) -> str:
        """<data-dir>/<category>/<label>.<id>.<ext>, a name not taken yet."""
        folder = self._folder(category)
        prefix = label if label is not None else NO_LABEL_NAME
        while True:
            path = os.path.join(folder, "%s.%s.%s" % (prefix, self._unique_id(), ext))
            if not os.path.exists(path):
                return path

    def _append_index(self, records: list[dict]) -> int:
        """Append the records' lines to the index in one write, fsynced when the folder has no flush; return the
        index's size before them. When that fails the index is cut back to where it was (or, when even that
        fails, the next line starts on a line of its own)."""
        text = "".join(json.dumps(r, separators=(",", ":")) + "\n" for r in records)
        if not self._index_ends_clean:
            text = "\n" + text
        data = text.encode()
        with open(self.index_path, "ab", buffering=0) as f:
            size = f.seek(0, os.SEEK_END)
            try:
                done = 0
                while done < len(data):
                    done += f.write(data[done:]) or 0
                if self._flush is None:
                    os.fsync(f.fileno())
            except BaseException:
                self._cut_index(size)
                raise
        self._index_ends_clean = True
        return size

    def _cut_index(self, size: int) -> None:
        """Cut the index back to size: this group's lines failed to be written or made durable (or, when even
        the cut fails, the next line starts on a line of its own)."""
        try:
            if size == 0:  # this group made it: the folder as it was
                os.unlink(self.index_path)
            else:
                with open(self.index_path, "r+b", buffering=0) as f:
                    f.truncate(size)
                    os.fsync(f.fileno())
            # as it was before the group: a line a crash cut, which the next line must not continue
            self._index_ends_clean = _ends_with_newline(self.index_path)
        except OSError:
            self._index_ends_clean = False

    def _publish(self, record: dict) -> None:
        # in the storing thread, with commits held: a subscriber must not block; its exceptions are logged
        for callback in self._subscribers:
            try:
                callback(record)
            except Exception:  # the sample is stored all the same
                log.exception("a subscriber to new samples failed")
