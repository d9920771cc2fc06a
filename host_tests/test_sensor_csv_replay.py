"""CSV replay (uingest.sensors.csv_replay): the header and units rows, looping
back to the first row, and errors that name the file and the line."""

import pytest

from helpers import csv_file, rows_of
from uingest.sensors.csv_replay import CSVReplay
from uingest.window import Window

# -- CSV replay -----------------------------------------------------------------------------------------


def test_csv_header_units_and_looping(tmp_path):
    path = csv_file(
        tmp_path, "timestamp,accX,accY,accZ\nms,m/s2,m/s2,m/s2\n0,1.5,-2,9.75\n10,0.25,3,9.5\n\n20,-1,0,10\n"
    )
    s = CSVReplay(path)
    assert s.sensors == (("accX", "m/s2"), ("accY", "m/s2"), ("accZ", "m/s2")) and s.typecode == "f"
    w = Window(s.sensors, 10, 7)
    for _ in range(7):
        s.read(w)
    first = [[1.5, -2, 9.75], [0.25, 3, 9.5], [-1, 0, 10]]
    assert rows_of(w) == first + first + first[:1]  # back to the first row after the last
    s.close()


def test_csv_without_timestamp_and_units_given(tmp_path):
    path = csv_file(tmp_path, "x,y\r\n1,2\r\n3,4\r\n")
    s = CSVReplay(path, sensors=(("x", "g"), ("y", "g")))
    w = Window(s.sensors, 10, 3)
    for _ in range(3):
        s.read(w)
    assert s.sensors == (("x", "g"), ("y", "g")) and rows_of(w) == [[1, 2], [3, 4], [1, 2]]


def test_csv_sensors_argument_overrides_a_units_row(tmp_path):
    path = csv_file(tmp_path, "timestamp,a\nms,V\n0,1\n")
    assert CSVReplay(path, (("a", "mV"),)).sensors == (("a", "mV"),)


@pytest.mark.parametrize(
    "text, sensors, line, why",
    [
        ("", None, 1, "empty"),
        ("\n1,2\n", None, 1, "empty"),
        ("a,b\n1,2\n", None, 2, "no units row"),
        ("a,b\nV,V\n", None, 3, "no data rows"),
        ("a,b\n", (("a", "V"), ("b", "V")), 2, "no data rows"),
        ("a,,b\nV,V,V\n1,2,3\n", None, 1, "empty column name"),
        ("a,b\nV,V,V\n1,2\n", None, 2, "units row has 3 columns"),
        ("a,b\nV,V\n1,2\n", (("a", "V"),), 2, "sensors= gives 1"),
    ],
)
def test_csv_bad_file_names_file_and_line(tmp_path, text, sensors, line, why):
    path = csv_file(tmp_path, text)
    with pytest.raises(ValueError) as e:
        CSVReplay(path, sensors)
    msg = str(e.value)
    assert msg.startswith("%s line %d: " % (path, line)) and why in msg and "\n" not in msg


@pytest.mark.parametrize(
    "bad, why",
    [
        ("1,2,3", "expected 4 values, got 3"),
        ("1,2,abc,4", "'abc' is not a finite number"),
        ("1,2,nan,4", "'nan' is not a finite number"),
        ("1,2,-inf,4", "'-inf' is not a finite number"),
    ],
)
def test_csv_malformed_row(tmp_path, bad, why):
    path = csv_file(tmp_path, "timestamp,a,b,c\nms,V,V,V\n0,1,2,3\n\n%s\n9,9,9,9\n" % bad)
    s = CSVReplay(path)
    w = Window(s.sensors, 10, 5)
    s.read(w)
    with pytest.raises(ValueError) as e:
        s.read(w)
    assert str(e.value) == "%s line 5: %s" % (path, why)  # line 4 is blank
    assert w.rows == 1  # the bad row was not counted


def test_csv_window_of_another_width(tmp_path):
    s = CSVReplay(csv_file(tmp_path, "a,b\nV,V\n1,2\n"))
    with pytest.raises(ValueError, match="2 columns"):
        s.read(Window((("a", "V"),), 10, 1))


def test_csv_missing_file(tmp_path):
    with pytest.raises(OSError):
        CSVReplay(str(tmp_path / "nope.csv"))
