# Replay a CSV file as a sensor: read() appends the next row, and the file
# starts over at its end. It is read line by line, so memory does not grow
# with the file.
#
# The format, as Edge Impulse's CSV export writes it plus an optional units row:
#   timestamp,accX,accY,accZ      names; a first column "timestamp" is skipped
#   ms,m/s2,m/s2,m/s2             optional: a row with no number in it is units
#   0,0.12,-0.4,9.81              then one row of numbers per sample
# No quoting: a name or unit cannot hold a comma. Blank lines are skipped.
# Without a units row, pass sensors=((name, units), ...), one pair per column.


class CSVReplay:
    def __init__(self, path, sensors=None):
        self.path = path
        self.typecode = "f"
        self._f = open(path)
        try:
            self._setup(sensors)
        except Exception:
            self._f.close()
            raise

    def _setup(self, sensors):
        header = self._f.readline()
        self._line = 1
        if not header.strip():
            self._fail("empty, expected a header of column names")
        names = [n.strip() for n in header.split(",")]
        self._first = 1 if names[0].lower() == "timestamp" else 0  # index of the first sampled column
        self._ncols = len(names)
        names = names[self._first :]
        if not names or not all(names):
            self._fail("empty column name in the header")
        self._skip = 1  # header lines to skip when starting over
        units = None
        second = self._f.readline()
        if second.strip():
            fields = second.split(",")
            if not any(_is_number(v) for v in fields[self._first :]):
                self._line = 2
                if len(fields) != self._ncols:
                    self._fail("units row has %d columns, the header %d" % (len(fields), self._ncols))
                units = [u.strip() for u in fields[self._first :]]
                self._skip = 2
        if sensors is not None:
            sensors = tuple(sensors)
            if len(sensors) != len(names):
                self._fail("%d columns to sample, sensors= gives %d" % (len(names), len(sensors)))
        elif units is None:
            self._line = 2
            self._fail("no units row after the header: add one, or pass sensors=((name, units), ...)")
        else:
            sensors = tuple(zip(names, units))
        self.sensors = sensors
        self.width = len(sensors)  # pyright: ignore[reportArgumentType] (not None: _fail() raised)
        self._rewind()
        if not self._next_line(wrap=False):
            self._line += 1
            self._fail("no data rows")
        self._rewind()

    def _fail(self, why):
        raise ValueError("%s line %d: %s" % (self.path, self._line, why))

    def _rewind(self):
        self._f.seek(0)
        for _ in range(self._skip):
            self._f.readline()
        self._line = self._skip

    def _next_line(self, wrap=True):
        wrapped = False
        while True:
            line = self._f.readline()
            if not line:
                if not wrap or wrapped:
                    return ""
                self._rewind()
                wrapped = True
                continue
            self._line += 1
            if line.strip():
                return line

    def read(self, window):
        """Append the next row of the file to window."""
        if window.width != self.width:
            raise ValueError("window has %d sensors, %s has %d columns" % (window.width, self.path, self.width))
        if window.rows >= window.capacity:
            raise IndexError("window full: %d rows" % window.capacity)
        line = self._next_line()
        if not line:
            self._fail("no data rows left (was the file changed?)")
        fields = line.split(",")
        if len(fields) != self._ncols:
            self._fail("expected %d values, got %d" % (self._ncols, len(fields)))
        # Straight into the window's array, then count the row: no list of floats.
        s = window.samples
        i = window.rows * self.width
        for k in range(self._first, self._ncols):
            v = _number(fields[k])
            if v is None:
                self._fail("%r is not a finite number" % fields[k].strip())
            s[i] = v
            i += 1
        window.commit(1)

    def close(self):
        self._f.close()


def _number(text):
    try:
        v = float(text)
    except ValueError:
        return None
    # v - v is nan for inf and nan: Edge Impulse rejects both
    return v if v - v == 0 else None


def _is_number(text):
    return _number(text) is not None
