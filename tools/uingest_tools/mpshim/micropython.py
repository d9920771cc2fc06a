"""CPython stand-in for MicroPython's `micropython` module (host tests only)."""


def const(x):
    return x


def _identity(f):
    return f


# Code under these decorators runs as plain Python here; viper-only builtins
# (ptr8, ptr16) do not exist, so firmware keeps a portable path for CPython.
native = viper = _identity


def mem_info(*args):
    pass


def opt_level(*args):
    return 0
