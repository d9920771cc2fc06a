# A window kept in a flash file instead of RAM: raw little-endian samples,
# row-major, appended chunk by chunk as a driver (I2S) records them. Message
# reads it back a few hundred rows at a time (read_rows), so a window larger
# than the heap (10 s of 16 kHz audio: 320 KB) can be signed and streamed.
import os

from .window import check_interval, check_sensors

_ITEMSIZE = {"f": 4, "h": 2}


class FileWindow:
    """Samples of len(sensors) axes taken every interval_ms, stored in path.

    typecode 'h' (int16, audio) or 'f' (float32), little-endian as an ESP32
    and the unix port hold them in an array. keep=True counts the rows already
    in path (a recording that survived a reboot); otherwise path starts empty.
    """

    def __init__(self, path, sensors, interval_ms, typecode="h", keep=False):
        self.sensors = check_sensors(sensors)
        self.interval_ms = check_interval(interval_ms)
        if typecode not in _ITEMSIZE:
            raise ValueError("typecode: expected 'f' (float32) or 'h' (int16)")
        self.path = path
        self.width = len(self.sensors)
        self.typecode = typecode
        self.row_bytes = self.width * _ITEMSIZE[typecode]
        self._rf = None  # read handle while Message streams the rows
        self._wf = None  # append handle while a recording goes on
        self._at = 0  # its byte offset
        self.rows = 0
        if keep:
            try:
                self.rows = os.stat(path)[6] // self.row_bytes
            except OSError:
                keep = False
        if not keep:
            self.clear()

    def append_chunk(self, buf, n_rows):
        """Append n_rows rows from buf: bytes/bytearray of raw samples (what
        I2S.readinto fills), or an array (or memoryview of one) of typecode.
        The file stays open for the next chunk (one open and one metadata
        commit per recording, not per chunk): the rows are in the file once
        close(), read_rows() or a Message over the window has run."""
        if n_rows < 1:
            return 0
        nbytes = n_rows * self.row_bytes
        k = nbytes if isinstance(buf, (bytes, bytearray)) else n_rows * self.width
        if k > len(buf):
            raise ValueError("append_chunk: buf holds fewer than %d rows" % n_rows)
        if self._wf is None:
            self.close()
            self._wf = open(self.path, "ab")
        try:
            written = self._wf.write(memoryview(buf)[:k])
        except OSError:
            self.close()
            raise
        if written != nbytes:
            self.close()
            raise OSError(28)  # ENOSPC: the flash is full
        self.rows += n_rows
        return n_rows

    def read_rows(self, row0, n, into):
        """Read rows row0 .. row0+n-1 into the array into (typecode, at least
        n * width items); the file stays open until the last row is read."""
        if row0 < 0 or n < 0 or row0 + n > self.rows:
            raise ValueError("read_rows: rows %d..%d not in the window (%d rows)" % (row0, row0 + n - 1, self.rows))
        at = row0 * self.row_bytes
        if self._wf is not None:
            self.close()  # the recording is complete: its rows go to the file
        if self._rf is None:
            self._rf = open(self.path, "rb")
            self._at = 0
        if at != self._at:
            self._rf.seek(at)
        want = n * self.row_bytes
        got = self._rf.readinto(memoryview(into)[: n * self.width])
        if got != want:
            self.close()
            raise OSError(5)  # EIO: the file is shorter than its rows
        self._at = at + want
        if row0 + n == self.rows:
            self.close()
        return n

    def close(self):
        if self._wf is not None:
            self._wf.close()
            self._wf = None
        if self._rf is not None:
            self._rf.close()
            self._rf = None

    def clear(self):
        """Forget every row: the file is truncated."""
        self.close()
        with open(self.path, "wb"):
            pass
        self.rows = 0

    def __len__(self):
        return self.rows
