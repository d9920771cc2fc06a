"""The sensor drivers inside the MicroPython unix port: the scenario of
mp_programs/sensor_scenario.py (every driver against the fakes of fake_hw.py)
prints the same bytes there as under CPython."""

import contextlib
import io

from conftest import FIRMWARE, HERE, run_on_cpython
from helpers import csv_file

# -- the same scenarios inside MicroPython ------------------------------------------------------------------


def scenario_files(tmp_path):
    """The paths mp_programs/sensor_scenario.py takes: a good CSV file and a bad one."""
    csv = csv_file(tmp_path, "timestamp,a,b\nms,V,A\n0,1.5,-2\n1,0.25,3e2\n2,-1,0\n")
    bad = csv_file(tmp_path, "a,b\n1,2\n", "bad.csv")
    return csv, bad


def test_scenario_same_bytes_on_micropython(mpy, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # sim.setup() counts boots in a file in the current folder
    files = scenario_files(tmp_path)
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        run_on_cpython("sensor_scenario.py", *files)
    want = out.getvalue()
    # 256K: this checks correctness, not a memory budget
    got = mpy.run_program("sensor_scenario.py", *files, path=FIRMWARE + ":" + HERE, heap="256K", cwd=str(tmp_path))
    got = got.stdout.decode()
    assert got == want
    lines = want.split("\n")
    assert lines[0] == "writes 6b=01 6c=00 19=09 1a=03 1b=00 1c=00"
    assert lines[2] == "writes 6b=01 6c=00 19=01 1a=01 1b=18 1c=18"
    assert lines[4] == "writes 6b=01 6c=00 19=13 1a=04 1b=08 1c=08 1d=04"
    assert lines[6:9] == ["ValueError True True True 0", "ValueError True True True 0", "OSError True True True 0"]
    assert "csv error PATH line 2: no units row" in want
    assert "synthetic imu True" in want and "synthetic audio True" in want
    assert "sim SyntheticIMU None None None" in want and want.count("adc 3 ") == 2
