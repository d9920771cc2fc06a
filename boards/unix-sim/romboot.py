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

_held = []  # the image and the pad, for as long as the program runs


def _boot():
    # In a function: its locals are not names (qstrs) in the heap's string
    # pool, which a board's boot, compiled into the firmware, does not fill.
    argv = sys.argv
    size = os.stat(argv[1])[6]
    image = bytearray(size)
    with open(argv[1], "rb") as f:
        f.readinto(image)
    vfs.mount(vfs.VfsRom(image), "/rom")  # pyright: ignore[reportAttributeAccessIssue] (not in the ESP32 stubs)
    _held.append(image)
    # romboot's own folder is first on the path (put there by the unix port,
    # resolved, so not always as typed; or by the -c line above): /rom takes
    # its place, and a script's own folder comes next, as the port would have
    # put it for that script.
    sys.path[0] = "/rom"
    script = argv[3]
    if script.endswith(".py"):
        sys.path.insert(1, script.rpartition("/")[0])
    want = int(argv[2])
    del argv[:3]
    gc.collect()
    if want:
        if gc.mem_free() < want:
            print(
                "romboot: %d bytes free after the %d-byte image, fewer than %d: raise -X heapsize"
                % (gc.mem_free(), size, want)
            )
            sys.exit(3)
        _held.append(bytearray(gc.mem_free() - want))  # held to the end: it takes at least that many bytes
        gc.collect()
    print("romboot: image %d bytes at /rom, %d bytes of heap free" % (size, gc.mem_free()))
    if script.endswith(".py"):
        with open(script) as f:
            code = compile(f.read(), script, "exec")
        gc.collect()
        exec(code, {"__name__": "__main__", "__file__": script})
    else:
        __import__(script)


_boot()
