"""The data folder `uingest serve` stores into, the layout Edge Impulse's uploader reads:

    <data-dir>/<category>/<label>.<id>.<ext>     one file per sample, written atomically
    <data-dir>/index.jsonl                       one JSON line per stored sample: the truth about labels

- A sample is stored only once its file is fsynced and renamed into place and its index line is written and
  fsynced, so stopping the server (Ctrl-C, SIGTERM: uvicorn lets running requests finish) loses no sample it
  acknowledged. Temp files left by a crash (``.upload-*.tmp``, ``.store-*.tmp``) are removed at start; a
  line cut by a crash is skipped by the readers (read_index) and the next line starts on a line of its own.
- No label: the index says ``"label": null`` and the file is named ``unlabeled.<id>.<ext>``.
- Every stored name carries a unique id (microseconds, hex), so x-add-date-id has no further effect.
- Duplicates are found by the sha256 of the stored bytes; every stored sample's hash is kept in memory
  (loaded from index.jsonl at start) whether or not x-disallow-duplicates was sent.
- Whoever wants to know about new samples subscribes (DataFolder.subscribe); the folder knows nothing of
  its subscribers.
"""

from __future__ import annotations

import datetime
import hashlib
import json
import logging
import os
import tempfile
import threading
import time

from .collector_rules import Rejected, split_category
from .common import FILE_CATEGORIES, fsync_path

log = logging.getLogger("uingest.serve")

INDEX = "index.jsonl"
NO_LABEL_NAME = "unlabeled"


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


class DataFolder:
    """Sample files plus index.jsonl. Thread-safe; commits are serialized."""

    def __init__(self, data_dir: str):
        self.data_dir = os.path.abspath(data_dir)
        os.makedirs(self.data_dir, exist_ok=True)
        self.index_path = os.path.join(self.data_dir, INDEX)
        self._subscribers: list = []
        self._lock = threading.Lock()
        self._hashes: set[str] = set()
        self._next_sample = 1
        self._last_us = 0
        self._index_ends_clean = True
        self._load_index()
        self._remove_stale_temps()

    def _load_index(self) -> None:
        try:
            records, _ = read_index(self.data_dir)
        except FileNotFoundError:
            return
        self._index_ends_clean = _ends_with_newline(self.index_path)
        n = 0
        for rec in records:
            n += 1
            if isinstance(rec.get("sha256"), str):
                self._hashes.add(rec["sha256"])
            if isinstance(rec.get("sample_id"), int):
                n = max(n, rec["sample_id"])
        self._next_sample = n + 1

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

    def subscribe(self, callback) -> None:
        """callback(record) after each sample stored from now on, in the storing thread, with commits held:
        it must not block. Its exceptions are logged; the sample is stored all the same."""
        self._subscribers.append(callback)

    def spool_file(self):
        """A temp file in the data dir for a body being received: (file object, path)."""
        fd, path = tempfile.mkstemp(dir=self.data_dir, prefix=".upload-", suffix=".tmp")
        return os.fdopen(fd, "wb"), path

    def is_duplicate(self, sha: str) -> bool:
        return sha in self._hashes

    def commit(
        self,
        *,
        category: str,
        label,
        ext: str,
        data: bytes,
        fields: dict,
        file_name: str,
        metadata=None,
        disallow_duplicates: bool = False,
        src_path: str | None = None,
        extra: dict | None = None,
    ) -> dict:
        """Store data (already in src_path when given) and append its index line; return the record.

        Raises Rejected(409) for a duplicate when disallow_duplicates. Returns only once the file and the
        index line are on disk.
        """
        sha = hashlib.sha256(data).hexdigest()
        if category == "split":
            category = split_category(sha)
        with self._lock:
            if disallow_duplicates and sha in self._hashes:
                raise Rejected(409, "duplicate: this sample is already stored (x-disallow-duplicates)")
            final = self._new_path(category, label, ext)
            self._write_file(final, data, src_path)
            record = {
                "sample_id": self._next_sample,
                "file": os.path.relpath(final, self.data_dir).replace(os.sep, "/"),
                "category": category,
                "label": label,
                **fields,
                "sha256": sha,
                "file_name": file_name,
                "metadata": metadata,
                **(extra or {}),
                "received_at": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="milliseconds"),
            }
            self._append_index(record, final)
            self._hashes.add(sha)
            self._next_sample += 1
            self._publish(record)
            return record

    # --- the steps of a commit, each with the commit lock held

    def _unique_id(self) -> str:
        us = time.time_ns() // 1000
        if us <= self._last_us:
            us = self._last_us + 1
        self._last_us = us
        return "%x" % us

    def _new_path(self, category: str, label, ext: str) -> str:
        """<data-dir>/<category>/<label>.<id>.<ext>, a name not taken yet (the folder made if needed)."""
        folder = os.path.join(self.data_dir, category)
        os.makedirs(folder, exist_ok=True)
        prefix = label if label is not None else NO_LABEL_NAME
        while True:
            path = os.path.join(folder, "%s.%s.%s" % (prefix, self._unique_id(), ext))
            if not os.path.exists(path):
                return path

    @staticmethod
    def _write_file(final: str, data: bytes, src_path: str | None) -> None:
        """Put the sample at final durably: its bytes (or src_path, which holds them) fsynced, renamed into
        place, the folder fsynced. A temp file of ours is removed when that fails; src_path is the caller's."""
        folder = os.path.dirname(final)
        tmp = None
        try:
            if src_path is not None:
                fsync_path(src_path)
                tmp = src_path
            else:
                fd, tmp = tempfile.mkstemp(dir=folder, prefix=".store-", suffix=".tmp")
                with os.fdopen(fd, "wb") as f:
                    f.write(data)
                    f.flush()
                    os.fsync(f.fileno())
            os.chmod(tmp, 0o644)
            os.replace(tmp, final)
            tmp = None
            fsync_path(folder)
        finally:
            if tmp is not None and tmp != src_path:
                try:
                    os.unlink(tmp)
                except OSError:
                    pass

    def _append_index(self, record: dict, final: str) -> None:
        """Append record's line to the index and fsync it. When that fails the sample is not stored (not
        acknowledged): its file is removed, and the next line starts on a line of its own."""
        try:
            line = json.dumps(record, separators=(",", ":")) + "\n"
            if not self._index_ends_clean:
                line = "\n" + line
            with open(self.index_path, "ab") as f:
                f.write(line.encode())
                f.flush()
                os.fsync(f.fileno())
            self._index_ends_clean = True
        except BaseException:
            self._index_ends_clean = False
            try:
                os.unlink(final)
            except OSError:
                pass
            raise

    def _publish(self, record: dict) -> None:
        for callback in self._subscribers:
            try:
                callback(record)
            except Exception:  # the sample is stored all the same
                log.exception("a subscriber to new samples failed")
