"""The CPython shim: just what the firmware imports that CPython lacks, so
firmware modules run on a PC (the host tests, `uingest deploy`'s config check,
the serve benchmark).

install() puts this folder on sys.path (its micropython.py then imports as
`micropython`), adds time.ticks_* to `time` and os.ilistdir to `os`.
"""

import os
import sys
import time

_HERE = os.path.dirname(os.path.abspath(__file__))
_TICKS_PERIOD = 1 << 30  # MicroPython's ticks wrap at 2**30 on every port
_TICKS_HALF = _TICKS_PERIOD // 2


def ticks_ms():
    return time.monotonic_ns() // 1_000_000 % _TICKS_PERIOD


def ticks_us():
    return time.monotonic_ns() // 1_000 % _TICKS_PERIOD


def ticks_add(ticks, delta):
    return (ticks + delta) % _TICKS_PERIOD


def ticks_diff(a, b):
    return (a - b + _TICKS_HALF) % _TICKS_PERIOD - _TICKS_HALF


def sleep_ms(ms):
    time.sleep(ms / 1000)


def sleep_us(us):
    time.sleep(us / 1_000_000)


def ilistdir(path="."):
    """MicroPython's os.ilistdir: (name, type, inode, size) without a list."""
    with os.scandir(path) as it:
        for e in it:
            st = e.stat(follow_symlinks=False)
            yield (e.name, 0x4000 if e.is_dir() else 0x8000, e.inode(), st.st_size)


def _no_heap():
    return 0  # CPython has no MicroPython heap to report


def install():
    import gc

    for name in ("mem_free", "mem_alloc"):
        if not hasattr(gc, name):
            setattr(gc, name, _no_heap)
    if not hasattr(os, "ilistdir"):
        os.ilistdir = ilistdir
    if _HERE not in sys.path:
        sys.path.insert(0, _HERE)
    for f in (ticks_ms, ticks_us, ticks_add, ticks_diff, sleep_ms, sleep_us):
        if not hasattr(time, f.__name__):
            setattr(time, f.__name__, f)
