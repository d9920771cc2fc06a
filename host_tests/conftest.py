"""Shared set-up: the CPython shim, the firmware on sys.path, and runners for
the MicroPython programs the tests run (mp_programs/): inside the real
MicroPython unix port, and here on CPython."""

import gc
import os
import runpy
import shutil
import subprocess
import sys

import pytest

from uingest_tools import mpytools

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
FIRMWARE = os.path.join(ROOT, "firmware")
MP_PROGRAMS = os.path.join(HERE, "mp_programs")  # the MicroPython programs the tests run

sys.path.insert(0, HERE)
from uingest_tools import mpshim  # noqa: E402

mpshim.install()
if FIRMWARE not in sys.path:
    sys.path.insert(0, FIRMWARE)


@pytest.fixture(autouse=True, scope="module")
def _firmware_collections_scan_only_this_module():
    """The firmware calls gc.collect() a few times a window (a board's heap is small). On CPython, late in the
    suite, that is a full pass over everything the process has made (seconds a test: test_store_damage's cases
    took 3 s each in the suite, 0.3 s alone). What is alive when a module starts is frozen, so those passes
    scan what the module makes; it is collected once here and unfrozen after, so no garbage is kept."""
    gc.collect()
    gc.freeze()
    yield
    gc.unfreeze()


def run_on_cpython(program, *args):
    """A program of mp_programs/ run here, on the shim, with args as
    sys.argv[1:] as MicroPython would see them (but __name__ is not
    "__main__"): its globals when it is done."""
    file = os.path.join(MP_PROGRAMS, program)
    argv = sys.argv
    sys.argv = [file, *map(str, args)]
    try:
        return runpy.run_path(file, run_name="__cpython__")
    finally:
        sys.argv = argv


class MicroPython:
    """Runs a program on the unix port with the firmware package importable."""

    def __init__(self, exe):
        self.exe = exe

    def run_program(self, program, *args, heap="64K", stdin=b"", path=FIRMWARE, timeout=120, check=True, cwd=ROOT):
        """A program file (a name in mp_programs/, or a path) with args as
        sys.argv[1:]. MicroPython puts the program's folder first on sys.path."""
        file = os.path.join(MP_PROGRAMS, program)  # an absolute program stays as it is
        env = mpytools.unix_port_env(path)
        heap_args = ["-X", "heapsize=" + heap] if heap else []
        argv = [self.exe, *heap_args, file, *map(str, args)]
        proc = subprocess.run(argv, input=stdin, capture_output=True, env=env, timeout=timeout, cwd=cwd)
        if check and proc.returncode != 0:
            raise AssertionError(
                "micropython exited %d\n--- stderr\n%s\n--- stdout\n%s"
                % (proc.returncode, proc.stderr.decode(errors="replace"), proc.stdout[-2000:].decode(errors="replace"))
            )
        return proc


@pytest.fixture(scope="session")
def bundle(tmp_path_factory):
    """The firmware as shipped: .mpy files for this CPU (viper kernels
    included), plus the test helpers compiled alongside."""
    from uingest_tools import bundle as b

    out = str(tmp_path_factory.mktemp("bundle"))
    b.build(out, march="host")
    for helper in ("sample_windows.py",):
        proc = b.compile_file(os.path.join(HERE, helper), os.path.join(out, helper[:-3] + ".mpy"))
        assert proc.returncode == 0, proc.stderr
    return out


@pytest.fixture(scope="session")
def firmware(bundle):
    """The shipped firmware bundle (a folder of .mpy files and main.py)."""
    return bundle


@pytest.fixture(scope="session")
def romfs(bundle, tmp_path_factory):
    """The bundle's uingest/ as a ROMFS image file (what a board with a ROMFS
    partition runs in place); boards/unix-sim/romboot.py mounts it."""
    from uingest_tools import bundle as b

    path = str(tmp_path_factory.mktemp("romfs") / "uingest.romfs")
    with open(path, "wb") as f:
        f.write(b.romfs_image(bundle))
    return path


@pytest.fixture(scope="session")
def mpy():
    exe = mpytools.micropython()
    if shutil.which(exe) is None:
        pytest.fail("the micropython unix port is not installed: run `make test`")
    return MicroPython(exe)
