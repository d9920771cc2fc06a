"""Shared set-up: the CPython shim, the firmware on sys.path, and a runner
that executes scripts inside the real MicroPython unix port."""

import os
import shutil
import subprocess
import sys

import pytest

from uingest_tools import mpytools

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
FIRMWARE = os.path.join(ROOT, "firmware")

sys.path.insert(0, HERE)
import mpshim  # noqa: E402

mpshim.install()
if FIRMWARE not in sys.path:
    sys.path.insert(0, FIRMWARE)


class MicroPython:
    """Runs a script on the unix port with the firmware package importable."""

    def __init__(self, exe):
        self.exe = exe

    def run(self, script, heap="64K", stdin=b"", path=FIRMWARE, timeout=120, check=True, cwd=ROOT):
        env = dict(os.environ, MICROPYPATH=path + os.pathsep + ".frozen")
        args = [self.exe, "-X", "heapsize=" + heap, "-c", script] if heap else [self.exe, "-c", script]
        proc = subprocess.run(args, input=stdin, capture_output=True, env=env, timeout=timeout, cwd=cwd)
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
