"""Type check: pyright, with the config in pyproject.toml ([tool.pyright]),
checks firmware/, boards/ and the MicroPython programs the tests run
(host_tests/mp_programs/) against the MicroPython ESP32 stubs
(micropython-esp32-stubs, pinned in requirements-dev.txt) and finds nothing.

The stubs' own reduced stdlib replaces CPython's (--typeshedpath: the folder
they are installed in), so `time.ticks_us`, `os.ilistdir`, `machine.I2C` and
the viper builtins (`ptr8`, `ptr16`) are what a board has. Each remaining
`# pyright: ignore[rule]` in the firmware is narrow and must still be needed
(reportUnnecessaryTypeIgnoreComment)."""

import glob
import json
import os
import shutil
import subprocess
import sys
import sysconfig

import pytest

from conftest import ROOT
from uingest_tools import mpytools

SITE = sysconfig.get_paths()["purelib"]


def pyright(*files):
    """Run pyright with the project's config; returns its JSON report."""
    exe = mpytools.find("pyright")  # beside this Python, else on PATH
    if shutil.which(exe) is None or not os.path.exists(os.path.join(SITE, "machine.pyi")):
        pytest.fail("pyright or micropython-esp32-stubs is not installed: run `make test`")
    args = [exe, "--outputjson", "-p", os.path.join(ROOT, "pyproject.toml")]
    args += ["--pythonpath", sys.executable, "--typeshedpath", SITE, *files]
    # node from PATH (pyright's own JavaScript ships in the wheel); no version check online
    env = dict(os.environ, PYRIGHT_PYTHON_IGNORE_WARNINGS="1")
    proc = subprocess.run(args, cwd=ROOT, capture_output=True, text=True, timeout=600, env=env)
    try:
        return json.loads(proc.stdout)
    except ValueError:
        raise AssertionError("pyright failed (exit %d): %s" % (proc.returncode, (proc.stderr or proc.stdout)[-2000:]))


def problems(report):
    return [
        "%s:%d: %s (%s)"
        % (
            os.path.relpath(d["file"], ROOT),
            d["range"]["start"]["line"] + 1,
            d["message"].split("\n")[0],
            d.get("rule", ""),
        )
        for d in report["generalDiagnostics"]
        if d["severity"] in ("error", "warning")
    ]


def test_firmware_and_boards_type_check_against_the_esp32_stubs():
    report = pyright()
    found = problems(report)
    assert found == [], "\n".join(found)
    assert report["summary"]["errorCount"] == 0
    checked = glob.glob(os.path.join(ROOT, "firmware", "**", "*.py"), recursive=True)
    checked += glob.glob(os.path.join(ROOT, "boards", "*", "*.py"))
    checked += glob.glob(os.path.join(ROOT, "host_tests", "mp_programs", "*.py"))
    assert report["summary"]["filesAnalyzed"] == len(checked)  # every file, none skipped


def test_the_checker_sees_a_board_not_cpython(tmp_path):
    # MicroPython names resolve; a call a board would reject is an error
    probe = tmp_path / "probe.py"
    probe.write_text(
        "import os\nimport time\n\nfrom machine import I2C\n\n"
        "t = time.ticks_add(time.ticks_us(), 10)\n"
        "entries = os.ilistdir('.')\n"
        "p = ptr8(bytearray(4))  # noqa: F821\n"
        "I2C(0).readfrom_mem(0x68)\n"
    )
    found = problems(pyright(str(probe)))
    assert len(found) == 1 and found[0].endswith(
        "probe.py:9: Expected 2 more positional arguments (reportCallIssue)"
    ), found
