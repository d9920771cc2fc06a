# Store-and-forward queue on flash for signed messages that could not be sent.
#
# Each entry is one file <8 digits>.msg: a first line of JSON (version,
# the line's own sha256, the body's sha256, label, category, content type,
# body length) and then the exact body bytes. It is written as <seq>.tmp
# and renamed into place once complete, so a power cut leaves at most a
# .tmp, which is deleted at the next start and never sent. Entries go out
# oldest first, are deleted only after the server accepted them, and are
# moved to rejected/ with the server's reason after a 4xx. Anything else
# the folder holds never stops the app: a damaged entry (or a name, a
# directory the store does not make) is moved to rejected/ with the
# reason, deleted when it cannot be, skipped when even that fails, with
# one line through log. When the byte budget is full the OLDEST waiting
# entries are dropped to make room for the new one (the newest data is
# kept), and counted in `dropped`.
import hashlib
import json
import os
from binascii import hexlify

from micropython import const

_CHUNK = const(512)
_KEEP_REJECTED = const(50)  # entries kept in rejected/: the oldest go, so a bad key cannot fill the flash
_MAX_HEAD = const(1024)  # longer than any header line put() writes: a longer one is damage, never read whole
_NO_HASH = b"0" * 64  # a hash field until it is known; the header's own hash is taken with it
# Every header put() writes begins so: its own hash at a fixed place. Version 2
# covers the header; one without "v" (the previous firmware's) only the body.
_V2 = b'{"v": 2, "header_sha256": "'
_AT = const(27)  # len(_V2)
_DIR = const(0x4000)  # a directory's type in ilistdir and its bit in stat's mode


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


def _number(name):
    """The number in a name the store makes (<8 digits>.msg), else None."""
    if len(name) == 12 and name.endswith(".msg"):
        try:
            n = int(name[:8])
            if n >= 0 and "%08d" % n == name[:8]:
                return n
        except ValueError:
            pass
    return None


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
    def __init__(self, root, budget_bytes, log=print):
        self.root = root.rstrip("/")
        self.budget = budget_bytes
        self.log = log  # one line for each item set aside, deleted or skipped as damaged
        self.dropped = 0  # entries dropped because the budget was full
        self.rejected = 0  # entries moved aside after a 4xx, or under a rule this firmware no longer sends
        self.corrupt = 0  # entries found damaged and moved aside, never sent
        self._skip = []  # damaged entries that could be neither moved nor deleted: never opened again
        _mkdirs(self.root + "/rejected")
        # Counters kept in RAM and the directories walked with ilistdir: the
        # queue may hold thousands of entries, a list of their names may not fit.
        self._seq = self.count = self.used = self._aside = 0
        odd = []  # items the store did not make (or a power cut left): handled once the walk is done
        for item in os.ilistdir(self.root):
            name = item[0]
            n = _number(name)
            if n is not None:
                self._seq = max(self._seq, n)  # a directory's number too: put() must not meet it
            if n is not None and item[1] != _DIR:
                self.count += 1
                self.used += item[3] if len(item) > 3 and item[3] >= 0 else _size(self._path(name))
            elif (name.endswith(".msg") or name.endswith(".tmp")) and len(odd) < 16:
                odd.append(name)  # more than 16: the rest at the next boot
        try:
            # numbers go on after those in rejected/ too, so nothing there is overwritten
            for item in os.ilistdir(self.root + "/rejected"):
                n = _number(item[0])
                if n is not None:
                    self._seq = max(self._seq, n)
                    if item[1] != _DIR:
                        self._aside += 1
                elif item[0].endswith(".msg") and item[1] != _DIR and len(odd) < 16:
                    odd.append("rejected/" + item[0])  # renumbered, so the cap covers it
        except OSError:
            pass  # rejected/ is no folder (a file): entries that cannot go there are deleted
        for name in odd:
            if name.endswith(".tmp"):
                self._move_aside(name, None, None, 0)  # a write cut short by a power cut: deleted, never sent
            else:
                self._seq += 1
                self.corrupt += 1
                r = "damaged on flash: not an entry the store makes: " + name
                self._move_aside(name, r, r, self._seq)

    def _entries(self):
        """(name, size) of each waiting entry, one at a time."""
        for item in os.ilistdir(self.root):
            name = item[0]
            if item[1] != _DIR and _number(name) is not None and name not in self._skip:
                yield name, (item[3] if len(item) > 3 and item[3] >= 0 else _size(self._path(name)))

    def _path(self, name):
        return self.root + "/" + name

    def names(self):
        """Waiting entries, oldest first."""
        return sorted(n for n, _ in self._entries())

    def __len__(self):
        return self.count

    def bytes_used(self):
        return self.used

    def _oldest_name(self, after=None):
        best = None
        for name, _ in self._entries():
            if (after is None or name > after) and (best is None or name < best):
                best = name
        return best

    def put(self, msg, label, category):
        """Queue a body (a message.Message; see http.post_message), streamed
        to flash, never whole in RAM. ValueError for a header longer than the
        store reads back (a label of kilobytes)."""
        length = msg.length
        rest = {"label": label, "category": category, "content_type": msg.content_type, "length": length}
        # both hashes fixed-width, at fixed places: patched once the body is written
        head = bytearray(_V2 + _NO_HASH + b'", "sha256": "' + _NO_HASH + b'", ' + json.dumps(rest)[1:].encode() + b"\n")
        if len(head) > _MAX_HEAD:
            raise ValueError("label too long for a queue header")
        if length + len(head) > self.budget:  # dropping every older window would not make room
            raise ValueError("%d bytes, over the whole queue budget of %d" % (length + len(head), self.budget))
        self._make_room(length + len(head))
        self._seq += 1
        name = "%08d.msg" % self._seq
        tmp = self._path("%08d.tmp" % self._seq)
        try:
            with open(tmp, "wb") as f:
                f.write(head)
                w = _HashingWriter(f)
                msg.write(w)  # one encoding pass: written and hashed together
                head[_AT + 78 : _AT + 142] = hexlify(w.h.digest())
                head[_AT : _AT + 64] = hexlify(hashlib.sha256(head).digest())  # over the line with its own zeros
                f.seek(0)
                f.write(head)
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
        # counted before anything else can fail: the entry is in the queue now (oldest() trusts the count)
        self.count += 1
        self.used += length + len(head)
        _sync()
        return name

    def _make_room(self, need):
        while self.count and self.used + need > self.budget:
            name = self._oldest_name()
            if name is None:  # the count was out (a file removed behind the store's back)
                self.count = self.used = 0
                return
            self._forget(name)
            self.dropped += 1

    def _forget(self, name):
        """Delete an entry from the queue."""
        size = _size(self._path(name))
        os.remove(self._path(name))
        self.count -= 1
        self.used -= size
        _sync()

    def oldest(self):
        """The oldest intact entry, or None. Damaged entries (which a rename
        never produces, but flash can) are moved aside, never returned."""
        if self.count <= 0:  # the app asks after every window: no walk of the folder (ms on a board's flash)
            return None
        name = self._oldest_name()
        while name is not None:
            entry = self._open(name)
            if entry is not None:
                return entry
            name = self._oldest_name(after=name)
        return None

    def _open(self, name):
        """The entry, verified (header and body as put() wrote them, values
        that pass today's rules); else None, once it is set aside."""
        try:
            with open(self._path(name), "rb") as f:
                line = f.readline(_MAX_HEAD + 1)  # bounded: flash may hold megabytes without a newline
                if not line.endswith(b"\n"):
                    raise ValueError("no header line of at most 1024 bytes")
                meta = json.loads(line)
                bad = type(meta) is not dict
                for k in ("label", "category", "content_type", "length", "sha256"):
                    bad = bad or k not in meta
                # version 2 hashes the header line too (the previous firmware's has no "v")
                if bad or "v" in meta and (meta["v"] != 2 or not line.startswith(_V2)):
                    raise ValueError("not a header the store writes")
                if "v" in meta:
                    h = hashlib.sha256(line[:_AT])
                    h.update(_NO_HASH)
                    h.update(line[_AT + 64 :])
                    if hexlify(h.digest()) != line[_AT : _AT + 64]:
                        raise ValueError("header does not match its hash")
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
            if type(meta["length"]) is not int or n != meta["length"] or hexlify(h.digest()).decode() != meta["sha256"]:
                raise ValueError("body does not match its length or hash")
        except MemoryError:
            raise  # a full heap is not damage: the entry stays for a later try
        except Exception as e:  # whatever flash holds (TypeError, RecursionError, OSError, ...): never raised
            self.corrupt += 1
            r = "damaged on flash: %s" % (str(e) or type(e).__name__)[:100]
            self._move_aside(name, r, r)
            return None
        from . import ingest  # loaded for the first post anyway

        label = meta["label"]
        try:
            # intact, but maybe queued under rules this firmware no longer sends (an older firmware's label)
            if (
                meta["category"] not in ingest.DATA_CATEGORIES
                or meta["content_type"] not in ingest.CONTENT_TYPES.values()
                or type(label) is not str
            ):
                raise ValueError("a category, content type or label this firmware does not send")
            ingest.check_label(label)
        except ValueError as e:
            self.rejected += 1
            self._move_aside(name, "not sent: %s" % e, str(e))
            return None
        return Entry(self, name, meta, offset)

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

    def _move_aside(self, name, reason, shown=None, number=None):
        """Take an item out of the queue, into rejected/<its number>.msg with
        the reason (None: delete it); number: an item the store did not make
        (not counted in the queue), numbered afresh. What rejected/ cannot
        take is deleted, what cannot be deleted is skipped (never opened
        again). Never raises; shown: the line to log, after what was done."""
        path = self._path(name)
        counted = number is None
        done = "set aside"
        size = 0
        try:
            st = os.stat(path)
            size = st[6]
            if reason is None or st[0] & _DIR:
                raise OSError(21)  # to delete; a directory has no place in rejected/
            while self._aside >= _KEEP_REJECTED:
                self._drop_oldest_aside()
            base = "%s/rejected/%08d" % (self.root, int(name[:8]) if counted else number)
            with open(base + ".reason", "w") as f:
                f.write(reason + "\n")
            os.rename(path, base + ".msg")
            self._aside += 1
        except OSError:
            done = "deleted"
            try:
                try:
                    os.remove(path)
                except OSError:
                    os.rmdir(path)  # an empty directory where a file belongs
            except OSError:
                done = "skipped"
                self._skip.append(name)
        if counted:
            self.count -= 1
            self.used -= size
        _sync()
        if shown is not None:
            self.log("queued %s %s: %s" % (name, done, shown))

    def _drop_oldest_aside(self):
        folder = self.root + "/rejected/"
        oldest = None
        for item in os.ilistdir(folder):
            if item[1] != _DIR and _number(item[0]) is not None and (oldest is None or item[0] < oldest):
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
