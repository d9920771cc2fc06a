# Store-and-forward queue on flash for signed messages that could not be sent.
#
# Each entry is one file <seq>.msg: a first line of JSON (label, category,
# format, body length, body sha256) and then the exact body bytes. It is
# written as <seq>.tmp and renamed into place once complete, so a power cut
# leaves at most a .tmp, which is deleted at the next start and never sent.
# Entries go out oldest first, are deleted only after the server accepted
# them, and are moved to rejected/ with the server's reason after a 4xx.
# When the byte budget is full the OLDEST waiting entries are dropped to make
# room for the new one (the newest data is kept), and counted in `dropped`.
import hashlib
import json
import os
from binascii import hexlify

_CHUNK = 512
_NO_HASH = "0" * 64  # the header's sha256 until the body has been written
_KEEP_REJECTED = 50  # entries kept in rejected/: the oldest go, so a bad key cannot fill the flash


def _exists(path):
    try:
        os.stat(path)
        return True
    except OSError:
        return False


def _mkdirs(path):
    parts = path.split("/")
    for i in range(1, len(parts) + 1):
        p = "/".join(parts[:i])
        if p and not _exists(p):
            os.mkdir(p)


def _size(path):
    return os.stat(path)[6]


class Entry:
    """A queued message: .meta (dict) and its body, read back from flash: a
    body as http.post_message takes it (content_type, length, write(sink))."""

    def __init__(self, store, name, meta, offset):
        self.store = store
        self.name = name
        self.meta = meta
        self._offset = offset
        self.length = meta["length"]
        self.content_type = meta["content_type"]

    def write(self, sink):
        """Stream the body to sink (the HTTP client) in small chunks."""
        buf = bytearray(_CHUNK)
        mv = memoryview(buf)
        with open(self.store._path(self.name), "rb") as f:
            f.seek(self._offset)
            left = self.length
            while left > 0:
                n = f.readinto(buf) if left >= _CHUNK else f.readinto(mv[:left])
                if not n:
                    raise OSError(5)  # shorter than its header says: cannot happen after check()
                sink.write(mv[:n] if n < _CHUNK else buf)
                left -= n
        return self.length


class Store:
    def __init__(self, root, budget_bytes):
        self.root = root.rstrip("/")
        self.budget = budget_bytes
        self.dropped = 0  # entries dropped because the budget was full
        self.rejected = 0  # entries moved aside after a 4xx
        self.corrupt = 0  # entries found damaged and moved aside, never sent
        _mkdirs(self.root + "/rejected")
        # Counters kept in RAM and the directory walked with ilistdir: the
        # queue may hold thousands of entries, a list of their names may not fit.
        self._seq = 0
        self.count = 0
        self.used = 0
        for name in [n for n, _ in self._entries(".tmp")]:  # at most one: listed before removing
            os.remove(self._path(name))  # a write cut short by a power cut: never complete, never sent
        for name, size in self._entries(".msg"):
            self._seq = max(self._seq, int(name[:-4]))
            self.count += 1
            self.used += size
        # numbers go on after those in rejected/ too, so nothing there is overwritten
        self._aside = 0
        for item in os.ilistdir(self.root + "/rejected"):
            if item[0].endswith(".msg"):
                self._seq = max(self._seq, int(item[0][:-4]))
                self._aside += 1

    def _entries(self, ext):
        """(name, size) of each file ending in ext, one at a time."""
        for item in os.ilistdir(self.root):
            name = item[0]
            if name.endswith(ext):
                yield name, (item[3] if len(item) > 3 and item[3] >= 0 else _size(self._path(name)))

    def _path(self, name):
        return self.root + "/" + name

    def names(self):
        """Waiting entries, oldest first."""
        return sorted(n for n in os.listdir(self.root) if n.endswith(".msg"))

    def __len__(self):
        return self.count

    def bytes_used(self):
        return self.used

    def _oldest_name(self, after=None):
        best = None
        for name, _ in self._entries(".msg"):
            if (after is None or name > after) and (best is None or name < best):
                best = name
        return best

    def put(self, msg, label, category):
        """Queue a body (a message.Message; see http.post_message), streamed
        to flash, never whole in RAM."""
        length = msg.length
        meta_len = 200 + len(label)  # generous estimate for the budget check
        self._make_room(length + meta_len)
        self._seq += 1
        name = "%08d.msg" % self._seq
        tmp = self._path("%08d.tmp" % self._seq)
        meta = {
            "label": label,
            "category": category,
            "content_type": msg.content_type,
            "length": length,
            "sha256": _NO_HASH,
        }
        head = json.dumps(meta).encode()
        at = head.find(_NO_HASH.encode())  # a fixed-width field: patched once the body is hashed
        try:
            with open(tmp, "wb") as f:
                f.write(head + b"\n")
                w = _HashingWriter(f)
                msg.write(w)  # one encoding pass: written and hashed together
                f.seek(at)
                f.write(hexlify(w.h.digest()))
                f.flush()
            _sync()
            os.rename(tmp, self._path(name))
        except OSError:
            # flash full or failing: leave no partial entry behind
            try:
                os.remove(tmp)
            except OSError:
                pass
            raise
        _sync()
        self.count += 1
        self.used += _size(self._path(name))
        return name

    def _make_room(self, need):
        while self.count and self.used + need > self.budget:
            self._forget(self._oldest_name())
            self.dropped += 1

    def _forget(self, name, move_to=None):
        """Take an entry out of the queue: delete it, or move it aside."""
        size = _size(self._path(name))
        if move_to is None:
            os.remove(self._path(name))
        else:
            os.rename(self._path(name), move_to)
        self.count -= 1
        self.used -= size
        _sync()

    def oldest(self):
        """The oldest intact entry, or None. Damaged entries (which a rename
        never produces, but flash can) are moved aside, never returned."""
        name = self._oldest_name()
        while name is not None:
            entry = self._open(name)
            if entry is not None:
                return entry
            name = self._oldest_name(after=name)
        return None

    def _open(self, name):
        path = self._path(name)
        try:
            with open(path, "rb") as f:
                meta = json.loads(f.readline())
                offset = f.tell()
                h = hashlib.sha256()
                buf = bytearray(_CHUNK)
                n = 0
                while True:
                    k = f.readinto(buf)
                    if not k:
                        break
                    h.update(memoryview(buf)[:k] if k < _CHUNK else buf)
                    n += k
            if n != meta["length"] or hexlify(h.digest()).decode() != meta["sha256"]:
                raise ValueError("length or sha256 mismatch")
            return Entry(self, name, meta, offset)
        except (ValueError, KeyError, OSError) as e:
            self.corrupt += 1
            self._move_aside(name, "damaged on flash: %s" % e)
            return None

    def delete(self, entry):
        self._forget(entry.name)

    def keep_rejected(self, msg, label, category, reason):
        """A message the server refused on its first post: kept aside with
        the reason, never sent again (a 4xx will not change)."""
        name = self.put(msg, label, category)
        self.rejected += 1
        self._move_aside(name, reason)

    def reject(self, entry, reason):
        self.rejected += 1
        self._move_aside(entry.name, reason)

    def _move_aside(self, name, reason):
        while self._aside >= _KEEP_REJECTED:
            self._drop_oldest_aside()
        self._aside += 1
        base = self.root + "/rejected/" + name[:-4]
        with open(base + ".reason", "w") as f:
            f.write(reason + "\n")
        self._forget(name, move_to=base + ".msg")

    def _drop_oldest_aside(self):
        folder = self.root + "/rejected/"
        oldest = None
        for item in os.ilistdir(folder):
            if item[0].endswith(".msg") and (oldest is None or item[0] < oldest):
                oldest = item[0]
        if oldest is None:
            self._aside = 0
            return
        for ext in (".msg", ".reason"):
            try:
                os.remove(folder + oldest[:-4] + ext)
            except OSError:
                pass
        self._aside -= 1


class _HashingWriter:
    """Writes to a file and hashes what it writes."""

    def __init__(self, f):
        self.f = f
        self.h = hashlib.sha256()

    def write(self, b):
        self.f.write(b)
        self.h.update(b)
        return len(b)


def _sync():
    # Flush the filesystem where the port can (os.sync on ESP32, unix); a
    # rename without it may still sit in a cache when the power goes.
    sync = getattr(os, "sync", None)
    if sync is not None:
        sync()
