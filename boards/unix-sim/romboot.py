# What a board whose firmware has a ROMFS partition does at boot, on the unix
# port: the firmware's .mpy files sit in a ROMFS image mounted at /rom, and
# MicroPython runs their bytecode in place instead of copying it into the heap.
#
#   micropython -X heapsize=H romboot.py IMAGE FREE SCRIPT [ARGS...]
#
# or, as bundle.romboot_args runs it, compiled to DIR/romboot.mpy so that its
# own parse leaves no holes in the heap the program gets:
#
#   micropython -X heapsize=H -c "import sys; sys.path[0] = DIR; import romboot" IMAGE FREE SCRIPT [ARGS...]
#
# A board maps the partition from flash; the unix port has no such memory, so
# the image is read into one buffer at the bottom of the heap before anything
# else. FREE (bytes, 0 for no limit) is what a fresh heap of the size being
# claimed has free: the heap left over is cut down to at most that, so the
# program runs with no more room than it would have on such a board.
# SCRIPT is a .py file (compiled from source, as the port runs a script) or a
# module name on the path (a .mpy, loaded into the heap).
import gc
import os
import sys

import vfs

_size = os.stat(sys.argv[1])[6]
_image = bytearray(_size)
with open(sys.argv[1], "rb") as _f:
    _f.readinto(_image)
vfs.mount(vfs.VfsRom(_image), "/rom")  # pyright: ignore[reportAttributeAccessIssue] (not in the ESP32 stubs)
# romboot's own folder is first on the path (put there by the unix port,
# resolved, so not always as typed; or by the -c line above): /rom takes its
# place, and a script's own folder comes next, as the port would have put it
# for that script.
sys.path[0] = "/rom"
if sys.argv[3].endswith(".py"):
    sys.path.insert(1, sys.argv[3].rpartition("/")[0])
_want = int(sys.argv[2])
_script = sys.argv[3]
del sys.argv[:3]
gc.collect()
_pad = None
if _want:
    if gc.mem_free() < _want:
        print(
            "romboot: %d bytes free after the %d-byte image, fewer than %d: raise -X heapsize"
            % (gc.mem_free(), _size, _want)
        )
        sys.exit(3)
    _pad = bytearray(gc.mem_free() - _want)  # held to the end: it takes at least that many bytes
    gc.collect()
print("romboot: image %d bytes at /rom, %d bytes of heap free" % (_size, gc.mem_free()))
if _script.endswith(".py"):
    with open(_script) as _f:
        _source = _f.read()
    _code = compile(_source, _script, "exec")
    _source = None
    gc.collect()
    exec(_code, {"__name__": "__main__", "__file__": _script})
else:
    __import__(_script)
