"""Cross-compile the firmware package to .mpy with mpy-cross.

march=None builds portable bytecode: the viper kernels (native code) are left
out and the firmware uses its portable path. Any other march (xtensawin for
ESP32/ESP32-S3, host for the unix port here) includes them.
"""

from __future__ import annotations

import os
import shutil
import subprocess

from . import mpytools


def sources_root() -> str:
    """The folder holding firmware/ (the uingest package, main.py, package.json, manifest.py, the config
    template) and boards/ (one folder per board): this package's own folder in an installed wheel (pyproject.toml
    maps both into it as package data), else the checkout it sits in (an editable install, as `make test` makes),
    whose files are then the ones every command uses."""
    here = os.path.dirname(os.path.abspath(__file__))
    if os.path.isdir(os.path.join(here, "firmware", "uingest")):
        return here
    return os.path.dirname(os.path.dirname(here))


FIRMWARE = os.path.join(sources_root(), "firmware")
BOARDS = os.path.join(sources_root(), "boards")
NATIVE_MODULES = {"_kernels.py", "_json_kernel.py"}


def firmware_sources(root: str = FIRMWARE) -> list[str]:
    """Every .py under firmware/uingest, relative to firmware/."""
    out = []
    for dirpath, _, files in os.walk(os.path.join(root, "uingest")):
        for f in sorted(files):
            if f.endswith(".py"):
                out.append(os.path.relpath(os.path.join(dirpath, f), root))
    return sorted(out)


def compile_file(src: str, dst: str, march: str | None = None) -> subprocess.CompletedProcess:
    args = [mpytools.mpy_cross()]
    if march:
        args.append("-march=" + march)
    # -s keeps the package-relative name in tracebacks
    args += ["-s", os.path.relpath(src, FIRMWARE) if src.startswith(FIRMWARE) else os.path.basename(src)]
    args += ["-o", dst, src]
    return subprocess.run(args, capture_output=True, text=True)


def build(out_dir: str, march: str | None = None) -> list[str]:
    """Compile firmware/uingest into out_dir/uingest/*.mpy and copy main.py;
    returns the files written."""
    written = []
    for rel in firmware_sources():
        if march is None and os.path.basename(rel) in NATIVE_MODULES:
            continue
        dst = os.path.join(out_dir, rel[:-3] + ".mpy")
        os.makedirs(os.path.dirname(dst), exist_ok=True)
        proc = compile_file(os.path.join(FIRMWARE, rel), dst, march)
        if proc.returncode != 0:
            raise RuntimeError("mpy-cross failed on %s: %s" % (rel, proc.stderr.strip()))
        written.append(dst)
    # main.py stays source: the board runs main.py itself after boot
    shutil.copyfile(os.path.join(FIRMWARE, "main.py"), os.path.join(out_dir, "main.py"))
    written.append(os.path.join(out_dir, "main.py"))
    return written


# -- ROMFS ------------------------------------------------------------------------------------------
# On a board whose MicroPython has a ROMFS partition (MICROPY_VFS_ROM, 1.25+), the
# firmware's .mpy files run in place from flash: their bytecode never enters the heap.
ROMBOOT = os.path.join(BOARDS, "unix-sim", "romboot.py")


def romfs_image(bundle_dir: str) -> bytes:
    """A ROMFS image (MicroPython's VfsRom format, written with mpremote's
    writer) holding bundle_dir/uingest as /uingest: what `mpremote romfs
    deploy` puts in a board's ROMFS partition, mounted there at /rom."""
    from mpremote.romfs import VfsRomWriter

    rom = VfsRomWriter()

    def add(folder: str) -> None:
        for name in sorted(os.listdir(folder)):
            path = os.path.join(folder, name)
            if os.path.isdir(path):
                rom.opendir(name)
                add(path)
                rom.closedir()
            elif name.endswith(".mpy"):
                with open(path, "rb") as f:
                    rom.mkfile(name, f.read())

    rom.opendir("uingest")
    add(os.path.join(bundle_dir, "uingest"))
    rom.closedir()
    return rom.finalise()


_fresh_free: dict[tuple[str, int], int] = {}


def fresh_free(exe: str, heap_kb: int) -> int:
    """Bytes free in a fresh unix-port process with -X heapsize=heap_kb K."""
    key = (exe, heap_kb)
    if key not in _fresh_free:
        out = subprocess.run(
            [exe, "-X", "heapsize=%dK" % heap_kb, "-c", "import gc; gc.collect(); print(gc.mem_free())"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        _fresh_free[key] = int(out.split()[-1])
    return _fresh_free[key]


_romboot_dir: list[str] = []


def _romboot_module() -> str:
    """The folder of romboot.py compiled to .mpy (once per process): run from
    source, its parse and compile would leave holes all over the small heap it
    then hands to the program, which a board's boot does not."""
    if not _romboot_dir:
        import atexit
        import tempfile

        folder = tempfile.mkdtemp(prefix="uingest-romboot-")
        atexit.register(shutil.rmtree, folder, True)
        proc = compile_file(ROMBOOT, os.path.join(folder, "romboot.mpy"))
        if proc.returncode != 0:
            raise RuntimeError("mpy-cross failed on romboot.py: %s" % proc.stderr.strip())
        _romboot_dir.append(folder)
    return _romboot_dir[0]


def romboot_args(exe: str, image_path: str, heap_kb: int, script: str, *args: str) -> list[str]:
    """The unix-port command line that runs script with the firmware executed
    in place from the ROMFS image, and no more free heap than a fresh
    heap_kb K heap has (romboot holds the rest). The heap is made larger
    by the image (a board keeps it in flash) and 8K for romboot's own code
    and the bigger allocation table, which romboot then gives away."""
    size_kb = (os.path.getsize(image_path) + 1023) // 1024
    return [
        exe,
        "-X",
        "heapsize=%dK" % (heap_kb + size_kb + 8),
        "-c",
        "import sys; sys.path[0] = %r; import romboot" % _romboot_module(),
        image_path,
        str(fresh_free(exe, heap_kb)),
        script,
        *args,
    ]
