"""uingest.window.Window: preallocated rows, clear errors."""

import pytest

from uingest.window import Window

IMU = [("accX", "m/s2"), ("accY", "m/s2"), ("accZ", "m/s2")]


def test_append_rows_and_clear():
    w = Window(IMU, 10, 4)
    assert w.rows == 0 and len(w.samples) == 12
    w.append(1.5, 2.5, -3.25)
    w.append(0, 0, 9.5)
    assert w.rows == 2 and len(w) == 2
    assert list(w.samples[:6]) == [1.5, 2.5, -3.25, 0, 0, 9.5]
    w.clear()
    assert w.rows == 0
    w.append(7, 8, 9)
    assert list(w.samples[:3]) == [7, 8, 9]


def test_full_window_raises():
    w = Window(IMU, 10, 1)
    w.append(1, 2, 3)
    with pytest.raises(IndexError, match="full"):
        w.append(1, 2, 3)
    assert w.rows == 1


@pytest.mark.parametrize("row", [(1,), (1, 2), (1, 2, 3, 4), (1, 2, 3, 4, 5, 6, 7, 8)])
def test_wrong_width_raises_and_adds_nothing(row):
    w = Window(IMU, 10, 2)
    with pytest.raises(ValueError, match="3 sensors"):
        w.append(*row)
    assert w.rows == 0


@pytest.mark.parametrize("width", range(1, 10))
def test_every_width_up_to_nine(width):
    w = Window([("s%d" % i, "V") for i in range(width)], 1, 2)
    w.append(*range(width))
    w.append(*range(10, 10 + width))
    assert list(w.samples) == list(range(width)) + list(range(10, 10 + width))


def test_int16_window_and_range():
    w = Window([("audio", "wav")], 0.0625, 3, typecode="h")
    w.append(-32768)
    w.append(32767)
    with pytest.raises(ValueError, match="int16"):
        w.append(32768)
    assert list(w.samples[:2]) == [-32768, 32767] and w.rows == 2


def test_clear_with_a_capacity_fills_part_of_the_samples():
    w = Window((("x", "u"),), 1, 4, "h")
    w.clear(2)  # the last, shorter chunk of a window recorded to flash
    w.append(1)
    w.append(2)
    with pytest.raises(IndexError):
        w.append(3)
    assert len(w.samples) == 4 and w.free_rows() == 0
    w.clear(4)
    assert w.capacity == 4 and w.rows == 0
    for bad in (0, 5):
        with pytest.raises(ValueError, match="capacity: expected 1..4 rows"):
            w.clear(bad)
    assert w.capacity == 4


def test_direct_fill_and_commit():
    w = Window([("audio", "wav")], 0.0625, 4, typecode="h")
    w.samples[0] = 5
    w.samples[1] = 6
    w.commit(2)
    assert w.rows == 2 and w.free_rows() == 2
    with pytest.raises(ValueError, match="commit"):
        w.commit(3)


@pytest.mark.parametrize(
    "kwargs,field",
    [
        (dict(sensors=[]), "sensors"),
        (dict(sensors="accX"), "sensors"),
        (dict(sensors=[("accX",)]), r"sensors\[0\]"),
        (dict(sensors=[("accX", 5)]), r"sensors\[0\] units"),
        (dict(sensors=[("", "m/s2")]), r"sensors\[0\] name"),
        (dict(interval_ms=0), "interval_ms"),
        (dict(interval_ms=-1), "interval_ms"),
        (dict(interval_ms="10"), "interval_ms"),
        (dict(capacity=0), "capacity"),
        (dict(typecode="d"), "typecode"),
    ],
)
def test_bad_arguments_name_the_field(kwargs, field):
    args = dict(sensors=IMU, interval_ms=10, capacity=4)
    args.update(kwargs)
    with pytest.raises(ValueError, match=field):
        Window(**args)


def test_a_window_needs_its_own_size_once_on_micropython(mpy):
    """1 s of 16 kHz int16 audio is 32000 bytes, and making the window
    allocates just that: no copy of the samples on the way, which would need
    64 KB at once. GC off, so garbage counts as allocated too."""
    used, n = map(int, mpy.run_program("window_allocation.py", heap="256K").stdout.split())
    assert n == 16000
    assert 32000 <= used < 32000 + 1024, used  # the rest: the Window object and its attributes
