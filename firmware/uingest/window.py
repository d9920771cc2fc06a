# A fixed-rate window of N named sensors, stored row-major in one
# preallocated array: no Python float object per sample.
from array import array

_UNSET = object()
_TYPECODES = ("f", "h")


def new_array(typecode, n):
    """An array of n items of typecode ('f' or 'h'), allocated once. Its
    values are arbitrary (and not the same on MicroPython and CPython) until
    written: read only what was written."""
    # From a range, whose length is known, MicroPython sizes the array once
    # and fills it in place (int16 values past 32767 wrap around); from
    # bytes(n) it would hold a second copy as big as the array for a moment
    # (64 KB to make a 1 s window of 16 kHz audio). CPython refuses int16
    # values past 32767 from the range; there memory is no object, and the
    # array is made from bytes.
    try:
        return array(typecode, range(n))
    except OverflowError:
        return array(typecode, bytes(n * (4 if typecode == "f" else 2)))


_checked: list = [None]  # the last tuple that passed: a device checks the same one every window


def check_sensors(sensors):
    """Validate a sequence of (name, units) pairs; return them as a tuple."""
    if sensors is _checked[0]:
        return sensors
    if isinstance(sensors, (str, bytes)) or not sensors:
        raise ValueError("sensors: need at least one (name, units) pair")
    out = []
    for i, pair in enumerate(sensors):
        try:
            name, units = pair
        except (TypeError, ValueError):
            raise ValueError("sensors[%d]: expected a (name, units) pair" % i)
        if not isinstance(name, str) or not name:
            raise ValueError("sensors[%d] name: expected a non-empty string" % i)
        if not isinstance(units, str) or not units:
            raise ValueError("sensors[%d] units: expected a non-empty string such as 'm/s2'" % i)
        out.append((name, units))
    out = tuple(out)
    _checked[0] = out
    return out


def check_interval(interval_ms):
    if isinstance(interval_ms, bool) or not isinstance(interval_ms, (int, float)):
        raise ValueError("interval_ms: expected a positive number of milliseconds")
    if not interval_ms > 0 or interval_ms == float("inf"):
        raise ValueError("interval_ms: expected a positive number of milliseconds, got %r" % interval_ms)
    return interval_ms


class Window:
    """Samples of len(sensors) axes taken every interval_ms.

    typecode 'f' stores float32 (IMU-style data), 'h' int16 (audio).
    samples holds capacity * width values; only the first rows * width count.
    """

    def __init__(self, sensors, interval_ms, capacity, typecode="f"):
        self.sensors = check_sensors(sensors)
        self.interval_ms = check_interval(interval_ms)
        if isinstance(capacity, bool) or not isinstance(capacity, int) or capacity < 1:
            raise ValueError("capacity: expected a positive number of rows")
        if typecode not in _TYPECODES:
            raise ValueError("typecode: expected 'f' (float32) or 'h' (int16)")
        self.width = len(self.sensors)
        self.capacity = capacity
        self._allocated = capacity
        self.typecode = typecode
        self.samples = new_array(typecode, capacity * self.width)
        self.rows = 0

    def append(self, v0, v1=_UNSET, v2=_UNSET, v3=_UNSET, v4=_UNSET, v5=_UNSET, *more):
        # Named optional parameters rather than *values: a call with up to six
        # axes then builds no argument tuple on the heap.
        if self.rows >= self.capacity:
            raise IndexError("window full: %d rows" % self.capacity)
        width = self.width
        given = 1 + len(more)
        if v1 is not _UNSET:
            given += 1
            if v2 is not _UNSET:
                given += 1
                if v3 is not _UNSET:
                    given += 1
                    if v4 is not _UNSET:
                        given += 1
                        if v5 is not _UNSET:
                            given += 1
        if given != width or (more and v5 is _UNSET):
            raise ValueError("row has %d values, window has %d sensors" % (given, width))
        s = self.samples
        i = self.rows * width
        if self.typecode == "h":
            _check_int16(v0)
        s[i] = v0
        if width > 1:
            self._put(i + 1, v1)
            if width > 2:
                self._put(i + 2, v2)
                if width > 3:
                    self._put(i + 3, v3)
                    if width > 4:
                        self._put(i + 4, v4)
                        if width > 5:
                            self._put(i + 5, v5)
                            for k in range(len(more)):
                                self._put(i + 6 + k, more[k])
        self.rows += 1

    def _put(self, i, v):
        if self.typecode == "h":
            _check_int16(v)
        self.samples[i] = v

    def free_rows(self):
        return self.capacity - self.rows

    def commit(self, n):
        """Count n rows that a driver wrote straight into samples after the
        current ones (e.g. an I2S read into a memoryview of samples)."""
        if n < 0 or self.rows + n > self.capacity:
            raise ValueError("commit: %d rows do not fit (%d free)" % (n, self.capacity - self.rows))
        self.rows += n

    def clear(self, capacity=None):
        """Forget the rows; with capacity, fill only that many rows from now on
        (at most what was allocated): a chunk of a window recorded to flash."""
        if capacity is not None:
            if not 1 <= capacity <= self._allocated:
                raise ValueError("capacity: expected 1..%d rows, got %r" % (self._allocated, capacity))
            self.capacity = capacity
        self.rows = 0

    def __len__(self):
        return self.rows


def _check_int16(v):
    # array('h') wraps silently on MicroPython; CPython raises. Be explicit on both.
    if not -32768 <= v <= 32767:
        raise ValueError("int16 sample out of range: %r" % v)
