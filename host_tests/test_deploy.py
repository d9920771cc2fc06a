"""`uingest deploy` without a board: --dry-run for every board, --target-dir
(the bundle then runs the app on the MicroPython unix port against `uingest
serve`), the real mpremote against an emulated board (the unix port behind a
pseudo-terminal), the .mpy version check with fake mpremotes, one-line errors.
Also the mip manifest firmware/package.json."""

import json
import os
import pty
import re
import select
import shlex
import subprocess
import sys
import threading
import tty

import pytest

from conftest import FIRMWARE, ROOT
from helpers import read_index
from uingest import config as config_mod
from uingest_tools import bundle, deploy, mpytools
from uingest_tools.acquisition import decode, verify_signature
from uingest_tools.serve import ServerThread, create_app

API_KEY = "ei_deploy_test_key_7"
HMAC_KEY = "deploy-hmac-secret"
WIFI_PASSWORD = "wifi-pw-never-printed"
ESP32_BOARDS = ["esp32-devkitc-mpu6050", "esp32-inmp441", "esp32-s3-devkitc-1", "m5stack-atom-matrix"]
MPREMOTE = mpytools.find("mpremote")


def sys_mpy(version, sub, arch):
    """sys.implementation._mpy as a MicroPython with this .mpy version and arch reports it."""
    return version | sub << 8 | deploy.MPY_ARCHS.index(arch) << 10


def write_config(path, board, **kw):
    cfg = {
        "board": board,
        "url": "http://192.168.1.20:4810",  # a laptop running `uingest serve`: no CA file needed
        "wifi_ssid": "lab",
        "wifi_password": WIFI_PASSWORD,
        "api_key": API_KEY,
        "hmac_key": HMAC_KEY,
        "labels": ["idle", "wave"],
        "window_ms": 100,
        "sample_rate_hz": 200,
        "device_name": "deploy-test",
        "timeout_ms": 2000,
    }
    cfg.update(kw)
    path.write_text(json.dumps(cfg))
    return str(path)


def shipped_files(config=True):
    """What deploy must put on a board: every firmware module as .mpy, main.py, board.py, config.json."""
    files = {rel[:-3] + ".mpy" for rel in bundle.firmware_sources()}
    return files | {"main.py", "board.py"} | ({"config.json"} if config else set())


def listed(out):
    """(files with sizes, mpremote commands) from deploy's output."""
    files = dict((m.group(2), int(m.group(1))) for m in re.finditer(r"^ +(\d+)  (\S+)$", out, re.M))
    commands = [shlex.split(line[4:]) for line in out.splitlines() if line.startswith("  $ mpremote ")]
    return files, commands


def no_runner(args, cwd):
    raise AssertionError("a dry run ran mpremote %s" % args)


def no_secrets(text):
    return API_KEY not in text and HMAC_KEY not in text and WIFI_PASSWORD not in text


def test_every_board_has_a_board_json_with_its_arch():
    boards = sorted(n for n in os.listdir(os.path.join(ROOT, "boards")) if not n.startswith("."))
    assert deploy.known_boards() == boards
    for name in boards:
        info = deploy.load_board(name)
        assert info["arch"] == ("host" if name == "unix-sim" else "xtensawin")
        assert info["port"] == ("unix" if name == "unix-sim" else "esp32")


# -- --dry-run -------------------------------------------------------------------------------------


@pytest.mark.parametrize("board", ESP32_BOARDS + ["unix-sim"])
def test_dry_run_lists_every_file_and_mpremote_command(board, tmp_path, capsys):
    cfg = write_config(tmp_path / "config.json", board)
    assert deploy.main(["--board", board, "--config", cfg, "--dry-run"], runner=no_runner) == 0
    out = capsys.readouterr().out
    files, commands = listed(out)
    assert set(files) == shipped_files()
    assert "uingest/sensors/imu.mpy" in files and "uingest/_kernels.mpy" in files  # viper kernels: native build
    assert all(size > 0 for size in files.values())
    arch = "host" if board == "unix-sim" else "xtensawin"
    assert "mpy-cross -march=%s" % arch in out and ".mpy v6.3" in out
    assert no_secrets(out)
    # the mpremote commands, in order
    assert commands[0] == ["mpremote", "connect", "list"]
    assert all(c[1:3] == ["connect", "PORT"] for c in commands[1:])
    steps = [c[3:] for c in commands[1:]]
    assert steps[0] == ["exec", deploy.QUERY]
    assert steps[1] == ["rm", "-r", ":uingest"]
    assert steps[2:4] == [["mkdir", ":uingest"], ["mkdir", ":uingest/sensors"]]
    copied = {}
    for s in steps[4:-1]:
        assert s[:2] == ["cp", "-f"]
        for src in s[2:-1]:
            dest = s[-1] + os.path.basename(src) if s[-1].endswith("/") else s[-1]
            copied[src] = dest
    assert copied == {f: ":" + f for f in files}  # every listed file, to the same path on the board
    assert steps[-1] == ["reset"]
    assert out.rstrip().endswith("dry run: no device was touched")


def test_dry_run_with_a_port_and_no_config_keeps_the_boards_config(capsys):
    assert deploy.main(["--board", "esp32-s3-devkitc-1", "--port", "/dev/ttyACM0", "--dry-run"], runner=no_runner) == 0
    out = capsys.readouterr().out
    files, commands = listed(out)
    assert set(files) == shipped_files(config=False)
    assert "no --config: the config.json already there is kept" in out
    assert all(c[1:3] == ["connect", "/dev/ttyACM0"] for c in commands)  # no `connect list`


def test_dry_run_with_romfs_lists_the_image_and_its_steps(capsys):
    assert deploy.main(["--board", "m5stack-atom-matrix", "--romfs", "--dry-run"], runner=no_runner) == 0
    out = capsys.readouterr().out
    files, commands = listed(out)
    assert list(files) == ["uingest.romfs", "main.py", "board.py"] and files["uingest.romfs"] > 20000
    steps = [c[3:] for c in commands[1:]]
    assert steps[:3] == [["exec", deploy.QUERY], ["exec", deploy.ROMFS_QUERY], ["romfs", "deploy", "uingest.romfs"]]
    assert ["cp", "-f", "main.py", ":main.py"] in steps and not any(":uingest/" in s[-1] for s in steps)


def test_the_configs_ca_file_is_shipped_from_next_to_the_config(tmp_path, capsys):
    cfg = write_config(tmp_path / "config.json", "esp32-devkitc-mpu6050", url="https://ingestion.edgeimpulse.com")
    argv = ["--board", "esp32-devkitc-mpu6050", "--config", cfg, "--dry-run"]
    assert deploy.main(argv, runner=no_runner) == 2  # the config names no CA file: an https url needs one
    assert "ca_file: an https url needs the server's CA certificate" in capsys.readouterr().err

    cfg = write_config(
        tmp_path / "config.json", "esp32-devkitc-mpu6050", url="https://ingestion.edgeimpulse.com", ca_file="ca.der"
    )
    assert deploy.main(argv, runner=no_runner) == 2  # named, but not there
    err = capsys.readouterr().err
    assert err.startswith("deploy: %s names ca_file 'ca.der', not found next to it: `uingest ca " % cfg), err

    (tmp_path / "ca.der").write_bytes(b"0\x82 a DER certificate")
    assert deploy.main(argv, runner=no_runner) == 0
    out = capsys.readouterr().out
    files, commands = listed(out)
    assert set(files) == shipped_files() | {"ca.der"}
    assert ["mpremote", "connect", "PORT", "cp", "-f", "ca.der", ":ca.der"] in commands
    assert "ca_file ca.der: the server's CA certificate, from %s" % (tmp_path / "ca.der") in out


@pytest.mark.parametrize("name", ["certs/ca.der", "../ca.der", "/certs/ca.der", ".."])
def test_a_ca_file_outside_the_boards_root_is_refused(name, tmp_path, capsys):
    (tmp_path / "certs").mkdir()
    (tmp_path / "certs" / "ca.der").write_bytes(b"0")
    (tmp_path.parent / "ca.der").write_bytes(b"0")
    https = "https://ingestion.edgeimpulse.com"
    cfg = write_config(tmp_path / "config.json", "esp32-s3-devkitc-1", url=https, ca_file=name)
    assert deploy.main(["--board", "esp32-s3-devkitc-1", "--config", cfg, "--dry-run"], runner=no_runner) == 2
    assert capsys.readouterr().err == (
        "deploy: %s: ca_file %r: name a file at the board's root, next to config.json (like ca.der)\n" % (cfg, name)
    )


def test_an_http_url_needs_no_ca_file_and_ships_none(tmp_path, capsys):
    # the template names ca.der; a user who points url at a laptop's `uingest serve` may leave it
    cfg = write_config(tmp_path / "config.json", "esp32-s3-devkitc-1", ca_file="ca.der")
    assert deploy.main(["--board", "esp32-s3-devkitc-1", "--config", cfg, "--dry-run"], runner=no_runner) == 0
    assert set(listed(capsys.readouterr().out)[0]) == shipped_files()


def test_dry_run_into_a_folder_writes_nothing(tmp_path, capsys):
    cfg = write_config(tmp_path / "c.json", "unix-sim")
    target = tmp_path / "dev"
    assert deploy.main(["--board", "unix-sim", "--config", cfg, "--target-dir", str(target), "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert set(listed(out)[0]) == shipped_files()
    assert not target.exists() and "dry run: nothing was written" in out


# -- the bundle as shipped runs ---------------------------------------------------------------------


def run_app(mpy, device_dir, windows):
    """The installed app, as a board runs it: main.py from the device root."""
    env = mpytools.unix_port_env(str(device_dir))
    return subprocess.run(
        [mpy.exe, "-X", "heapsize=128K", "main.py", "config.json", str(windows)],
        cwd=str(device_dir),
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def check_stored(data, windows):
    entries = read_index(data)
    assert len(entries) == windows
    for e in entries:
        assert e["device_type"] == "UINGEST_UNIX_SIM" and e["device_name"] == "deploy-test"
        assert e["signature"] == "valid" and e["rows"] == 20
        with open(os.path.join(data, e["file"]), "rb") as f:
            body = f.read()
        assert verify_signature(body, "cbor", HMAC_KEY)
        assert len(decode(body, "cbor")["payload"]["values"]) == 20


def tree(d):
    return {os.path.relpath(os.path.join(p, n), d).replace(os.sep, "/") for p, _, names in os.walk(d) for n in names}


def test_target_dir_bundle_runs_the_app_against_uingest_serve(mpy, tmp_path, capsys):
    dev = tmp_path / "device"
    (dev / "uingest").mkdir(parents=True)
    (dev / "uingest" / "app.py").write_text("raise ImportError('stale source: must be removed')\n")
    (dev / "queue").mkdir()  # the board's own data stays
    data = str(tmp_path / "data")
    srv = ServerThread(create_app(data, api_key=API_KEY, hmac_key=HMAC_KEY)).start()
    try:
        cfg = write_config(tmp_path / "c.json", "unix-sim", url=srv.url)
        assert deploy.main(["--board", "unix-sim", "--config", cfg, "--target-dir", str(dev)]) == 0
        assert tree(dev) == shipped_files()
        assert (dev / "queue").is_dir()
        assert os.stat(dev / "config.json").st_mode & 0o077 == 0  # secrets: owner only
        with open(dev / "board.py") as f, open(os.path.join(ROOT, "boards", "unix-sim", "board.py")) as g:
            assert f.read() == g.read()
        proc = run_app(mpy, dev, 3)
    finally:
        srv.stop()
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    check_stored(data, 3)
    assert no_secrets(capsys.readouterr().out + proc.stdout)


class EmulatedBoard:
    """The MicroPython unix port behind a pseudo-terminal: to mpremote, a board
    on a serial port (raw REPL, exec, files), with `flash` as its filesystem.
    The unix port exits on a soft reset (Ctrl-D in the raw REPL) where a board
    reboots: then this starts it again and says 'soft reboot' as a board does."""

    def __init__(self, exe, flash):
        self.exe = exe
        self.flash = str(flash)
        self.reboots = 0

    def _start(self):
        master, slave = pty.openpty()
        tty.setraw(slave)
        self._proc = subprocess.Popen(
            [self.exe], stdin=slave, stdout=slave, stderr=slave, cwd=self.flash, start_new_session=True
        )
        os.close(slave)
        self._mp = master

    def __enter__(self):
        self._host, self._host_slave = pty.openpty()  # mpremote opens the slave; kept open here too
        tty.setraw(self._host_slave)
        self.port = os.ttyname(self._host_slave)
        self._start()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._relay, daemon=True)
        self._thread.start()
        return self

    def _relay(self):
        while not self._stop.is_set():
            if self._proc.poll() is not None:
                os.close(self._mp)
                os.write(self._host, b"soft reboot\r\n")
                self._start()
                self.reboots += 1
                os.write(self._mp, b"\r\x01")  # back into the raw REPL, as mpremote left it
            ready, _, _ = select.select([self._mp, self._host], [], [], 0.02)
            for fd in ready:
                try:
                    data = os.read(fd, 4096)
                except OSError:
                    continue
                os.write(self._host if fd == self._mp else self._mp, data)

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join(5)
        self._proc.kill()
        self._proc.wait(5)
        for fd in (self._mp, self._host, self._host_slave):
            os.close(fd)


def test_deploy_with_mpremote_to_an_emulated_board_then_the_app_runs(mpy, tmp_path, capsys):
    flash = tmp_path / "flash"
    (flash / "uingest").mkdir(parents=True)
    (flash / "uingest" / "http.py").write_text("raise ImportError('stale source: must be removed')\n")
    data = str(tmp_path / "data")
    srv = ServerThread(create_app(data, api_key=API_KEY, hmac_key=HMAC_KEY)).start()
    try:
        cfg = write_config(tmp_path / "c.json", "unix-sim", url=srv.url)
        with EmulatedBoard(mpy.exe, flash) as board:
            rc = deploy.main(["--board", "unix-sim", "--port", board.port, "--config", cfg])
            out = capsys.readouterr()
            assert rc == 0, out.err
            assert board.reboots >= 9  # mpremote soft-resets the board at each of its 9 commands
        assert tree(flash) == shipped_files()
        for rel in shipped_files():
            with open(flash / rel, "rb") as f:
                if rel.endswith(".mpy"):
                    assert f.read(2) == b"M\x06"
                elif rel == "main.py":
                    assert f.read() == open(os.path.join(FIRMWARE, "main.py"), "rb").read()
        proc = run_app(mpy, flash, 2)
    finally:
        srv.stop()
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    check_stored(data, 2)
    assert "deploy: done: %d files on %s, board reset" % (len(shipped_files()), board.port) in out.out
    assert no_secrets(out.out + out.err)


def test_mpremote_for_an_esp32_refuses_the_emulated_unix_board(mpy, tmp_path, capsys):
    with EmulatedBoard(mpy.exe, tmp_path) as board:
        rc = deploy.main(["--board", "esp32-devkitc-mpu6050", "--port", board.port])
    err = capsys.readouterr().err.strip()
    assert rc == 1
    assert err == (
        "deploy: the board on %s is a linux board (sys.platform); esp32-devkitc-mpu6050 needs esp32: "
        "wrong --board or --port?" % board.port
    )
    assert os.listdir(tmp_path) == []


def test_a_port_that_cannot_be_opened_is_one_line(tmp_path, capsys):
    rc = deploy.main(["--board", "esp32-inmp441", "--port", str(tmp_path / "ttyUSB9")])
    err = capsys.readouterr().err.strip()
    assert rc == 1 and "\n" not in err
    port = tmp_path / "ttyUSB9"
    assert err == "deploy: no serial port %s: give --port one that `mpremote connect list` lists" % port


def test_a_busy_port_is_one_line_that_says_to_close_the_other_program(capsys):
    # /dev/null is there but no serial port: mpremote says "failed to access", as for a port another program has
    rc = deploy.main(["--board", "esp32-inmp441", "--port", "/dev/null"])
    err = capsys.readouterr().err.strip()
    assert rc == 1 and "\n" not in err
    assert err.startswith("deploy: cannot open /dev/null: another program has it") and "close that" in err


# -- the .mpy version check -----------------------------------------------------------------------

KERNELS = "uingest/_kernels.mpy"
NATIVE_63 = deploy.MpyNeeds(6, 3, "xtensawin", KERNELS)


@pytest.mark.parametrize(
    "board_mpy, needs, problem",
    [
        (sys_mpy(6, 3, "xtensawin"), NATIVE_63, None),
        (
            sys_mpy(6, 2, "xtensawin"),
            NATIVE_63,
            "deploy: the board runs MicroPython with .mpy v6.2; this build needs v6.3: update its firmware",
        ),
        (
            sys_mpy(5, 0, "xtensawin"),
            NATIVE_63,
            "deploy: the board runs MicroPython with .mpy v5.0; this build needs v6.3: update its firmware",
        ),
        (
            sys_mpy(6, 3, "xtensawin"),
            deploy.MpyNeeds(6, 2, "xtensawin", KERNELS),
            "deploy: the board runs MicroPython with .mpy v6.3, newer than this build's v6.2: update mpy-cross",
        ),
        (
            sys_mpy(7, 0, "xtensawin"),
            NATIVE_63,
            "deploy: the board runs MicroPython with .mpy v7.0, newer than this build's v6.3: update mpy-cross",
        ),
        (
            sys_mpy(6, 3, "xtensa"),
            NATIVE_63,
            "deploy: the board's CPU is xtensa; this build is for xtensawin: is --board right?",
        ),
        (
            sys_mpy(6, 3, "none"),
            NATIVE_63,
            "deploy: the board's MicroPython cannot load native code; this build has xtensawin code in " + KERNELS,
        ),
        (0, NATIVE_63, "deploy: the board's MicroPython does not report sys.implementation._mpy: update its firmware"),
        # bytecode only: any v6.x loads it, whatever the CPU
        (sys_mpy(6, 1, "armv7emsp"), deploy.MpyNeeds(6, None, None, None), None),
        (sys_mpy(6, 3, "none"), deploy.MpyNeeds(6, None, None, None), None),
        # MicroPython's ARM rule: a board runs native code for its own and older ARM cores
        (sys_mpy(6, 3, "armv7emsp"), deploy.MpyNeeds(6, 3, "armv6m", "x.mpy"), None),
        (
            sys_mpy(6, 3, "armv6m"),
            deploy.MpyNeeds(6, 3, "armv7emsp", "x.mpy"),
            "deploy: the board's CPU is armv6m; this build is for armv7emsp: is --board right?",
        ),
    ],
)
def test_mpy_compatibility_rule(board_mpy, needs, problem):
    assert deploy.mpy_problem(board_mpy, needs) == problem


def test_the_build_needs_what_mpy_cross_writes(mpy, tmp_path):
    out = subprocess.run([mpytools.mpy_cross(), "--version"], capture_output=True, text=True).stdout
    written = re.search(r"mpy v(\d+)\.(\d+)", out).groups()
    for march in ("xtensawin", "host", None):
        d = tmp_path / str(march)
        files = [f for f in bundle.build(str(d), march) if f.endswith(".mpy")]
        needs = deploy.build_needs(files, str(d))
        assert needs.version == int(written[0])
        if march == "xtensawin":
            assert needs == (int(written[0]), int(written[1]), "xtensawin", KERNELS)
        elif march is None:
            assert needs == (int(written[0]), None, None, None)  # no native code: any v6.x
        else:  # the host build: the unix port running these tests loads it
            sys_mpy_here = subprocess.run(
                [mpy.exe, "-c", "import sys; print(sys.implementation._mpy)"],
                capture_output=True,
                text=True,
            ).stdout
            assert deploy.mpy_problem(int(sys_mpy_here), needs) is None


class FakeMpremote:
    """A runner standing in for mpremote: answers `connect list` and the
    query, records every command."""

    def __init__(
        self, ports="/dev/ttyS0 None 0000:0000 None None\n", platform="esp32", mpy=None, uingest=True, romfs=False
    ):
        self.ports = ports
        self.answer = "%s %d %d\n" % (platform, sys_mpy(6, 3, "xtensawin") if mpy is None else mpy, int(uingest))
        self.romfs = romfs
        self.calls = []

    def __call__(self, args, cwd):
        self.calls.append(args)
        if args == ["connect", "list"]:
            return 0, self.ports
        if args[2:4] == ["exec", deploy.ROMFS_QUERY]:
            return 0, "romfs %d\n" % self.romfs
        if args[2] == "exec":
            return 0, self.answer
        if args[2:4] == ["romfs", "deploy"]:
            image = os.path.join(cwd, args[4])
            with open(image, "rb") as f:
                assert f.read(3) == b"\xd2\xcd\x31", "not a ROMFS image"  # VfsRom's header
        if args[2] == "cp":
            for src in args[4:-1]:  # the staged files, relative to mpremote's folder
                assert os.path.isfile(os.path.join(cwd, src)), src
        return 0, ""


USB = "/dev/ttyS0 None 0000:0000 None None\n/dev/ttyUSB0 0001 10c4:ea60 Silicon_Labs CP2102\n"


def test_no_board_on_any_serial_port(tmp_path, capsys):
    fake = FakeMpremote()  # only a built-in serial port, no USB
    assert deploy.main(["--board", "esp32-devkitc-mpu6050"], runner=fake) == 1
    assert capsys.readouterr().err == deploy.NO_BOARD + "\n"
    assert deploy.NO_BOARD == "deploy: no board found on any serial port (connect it, or give --port)"
    assert fake.calls == [["connect", "list"]]


def test_an_old_firmware_stops_the_deploy_before_anything_is_copied(capsys):
    fake = FakeMpremote(ports=USB, mpy=sys_mpy(6, 2, "xtensawin"))
    assert deploy.main(["--board", "esp32-s3-devkitc-1"], runner=fake) == 1
    assert capsys.readouterr().err == (
        "deploy: the board runs MicroPython with .mpy v6.2; this build needs v6.3: update its firmware\n"
    )
    assert fake.calls == [["connect", "list"], ["connect", "/dev/ttyUSB0", "exec", deploy.QUERY]]


def test_a_good_board_gets_every_file_then_a_reset(tmp_path, capsys):
    fake = FakeMpremote(ports=USB, uingest=False)
    cfg = write_config(tmp_path / "c.json", "m5stack-atom-matrix")
    assert deploy.main(["--board", "m5stack-atom-matrix", "--config", cfg], runner=fake) == 0
    steps = [c[2:] for c in fake.calls[1:]]
    assert all(c[:2] == ["connect", "/dev/ttyUSB0"] for c in fake.calls[1:])
    assert ["rm", "-r", ":uingest"] not in steps  # the board had none
    assert steps[-1] == ["reset"]
    copied = {src for s in steps if s[0] == "cp" for src in s[2:-1]}
    assert copied == shipped_files()
    assert no_secrets(capsys.readouterr().out)


def test_romfs_puts_uingest_in_the_partition_and_the_rest_on_the_filesystem(tmp_path, capsys):
    fake = FakeMpremote(ports=USB, romfs=True)
    cfg = write_config(tmp_path / "c.json", "esp32-devkitc-mpu6050")
    assert deploy.main(["--board", "esp32-devkitc-mpu6050", "--config", cfg, "--romfs"], runner=fake) == 0
    steps = [c[2:] for c in fake.calls[1:]]
    assert steps[:4] == [
        ["exec", deploy.QUERY],
        ["exec", deploy.ROMFS_QUERY],
        ["romfs", "deploy", "uingest.romfs"],
        ["rm", "-r", ":uingest"],  # a uingest/ on the filesystem would shadow /rom's
    ]
    copied = {src for s in steps if s[0] == "cp" for src in s[2:-1]}
    assert copied == {"main.py", "board.py", "config.json"} and steps[-1] == ["reset"]
    assert no_secrets(capsys.readouterr().out)


def test_romfs_on_a_firmware_without_a_partition_stops_before_anything_is_written(capsys):
    fake = FakeMpremote(ports=USB, romfs=False)
    assert deploy.main(["--board", "esp32-s3-devkitc-1", "--romfs"], runner=fake) == 1
    assert capsys.readouterr().err == deploy.NO_ROMFS + "\n"
    assert [c[2:4] for c in fake.calls[1:]] == [["exec", deploy.QUERY], ["exec", deploy.ROMFS_QUERY]]


def test_romfs_to_the_emulated_board_with_real_mpremote_is_refused_in_one_line(mpy, tmp_path, capsys):
    # the unix port has VfsRom but no ROMFS partition (vfs.rom_ioctl): nothing may be written
    with EmulatedBoard(mpy.exe, tmp_path) as board:
        rc = deploy.main(["--board", "unix-sim", "--port", board.port, "--romfs"])
    assert rc == 1 and capsys.readouterr().err == deploy.NO_ROMFS + "\n"
    assert os.listdir(tmp_path) == []


def test_romfs_target_dir_image_runs_the_app_in_place_in_64k(mpy, tmp_path, capsys):
    """--romfs --target-dir: the image, main.py and board.py; mounted at /rom
    as a board's firmware does (romboot.py on the unix port), the app runs from
    it with the free heap of a 64K heap and nothing of uingest on the filesystem."""
    dev = tmp_path / "device"
    dev.mkdir()
    data = str(tmp_path / "data")
    srv = ServerThread(create_app(data, api_key=API_KEY, hmac_key=HMAC_KEY)).start()
    try:
        cfg = write_config(tmp_path / "c.json", "unix-sim", url=srv.url)
        assert deploy.main(["--board", "unix-sim", "--config", cfg, "--target-dir", str(dev), "--romfs"]) == 0
        assert tree(dev) == {"uingest.romfs", "main.py", "board.py", "config.json"}
        env = mpytools.unix_port_env(str(dev))
        args = bundle.romboot_args(mpy.exe, str(dev / "uingest.romfs"), 64, "main.py", "config.json", "3")
        proc = subprocess.run(args, cwd=str(dev), env=env, capture_output=True, text=True, timeout=60)
    finally:
        srv.stop()
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    check_stored(data, 3)
    assert no_secrets(capsys.readouterr().out + proc.stdout)


def test_the_default_runner_calls_the_mpremote_executable(tmp_path, monkeypatch, capsys):
    log = tmp_path / "calls.jsonl"
    script = tmp_path / "mpremote"
    script.write_text(
        "#!%s\nimport json, os, sys\nargs = sys.argv[1:]\n"
        "open(%r, 'a').write(json.dumps([args, sorted(os.listdir('.'))]) + '\\n')\n"
        "if args == ['connect', 'list']:\n    print(%r)\n"
        "elif args[2] == 'exec':\n    print('esp32 %d 1')\n"
        % (sys.executable, str(log), USB, sys_mpy(6, 1, "xtensawin"))
    )
    script.chmod(0o755)
    monkeypatch.setenv("UINGEST_MPREMOTE", str(script))
    assert deploy.main(["--board", "esp32-devkitc-mpu6050"]) == 1
    assert capsys.readouterr().err == (
        "deploy: the board runs MicroPython with .mpy v6.1; this build needs v6.3: update its firmware\n"
    )
    calls = [json.loads(line) for line in log.read_text().splitlines()]
    assert [c[0] for c in calls] == [["connect", "list"], ["connect", "/dev/ttyUSB0", "exec", deploy.QUERY]]
    assert calls[1][1] == ["board.py", "main.py", "uingest"]  # mpremote runs in the staging folder


def test_several_boards_the_first_is_used_and_named(capsys):
    fake = FakeMpremote(ports=USB + "/dev/ttyUSB1 0002 1a86:7523 QinHeng CH340\n")
    assert deploy.main(["--board", "esp32-inmp441"], runner=fake) == 0
    assert "deploy: 2 boards found (/dev/ttyUSB0, /dev/ttyUSB1): using /dev/ttyUSB0" in capsys.readouterr().out


# -- one-line errors --------------------------------------------------------------------------------


def test_unknown_board_lists_the_known_ones(capsys):
    assert deploy.main(["--board", "esp8266-nodemcu", "--dry-run"], runner=no_runner) == 2
    err = capsys.readouterr().err
    assert err == "deploy: unknown board 'esp8266-nodemcu' (known: %s)\n" % ", ".join(deploy.known_boards())
    assert "unix-sim" in err and "esp32-devkitc-mpu6050" in err


def test_missing_config_file(tmp_path, capsys):
    path = str(tmp_path / "nope.json")
    assert deploy.main(["--board", "unix-sim", "--config", path, "--dry-run"], runner=no_runner) == 2
    assert capsys.readouterr().err == "deploy: config file not found: %s\n" % path


def test_invalid_config_prints_each_problem_and_no_secret(tmp_path, capsys):
    bad = tmp_path / "bad.json"
    raw = {
        "board": "esp32-devkitc-mpu6050",
        "api_key": "not-an-ei-key-" + API_KEY,  # wrong: shown as (hidden)
        "hmac_key": HMAC_KEY,
        "wifi_password": 12345,
        "labels": [],
        "formta": "cbor",
    }
    bad.write_text("// a comment line\n" + json.dumps(raw))
    assert deploy.main(["--board", "esp32-devkitc-mpu6050", "--config", str(bad), "--dry-run"], runner=no_runner) == 2
    err = capsys.readouterr().err.splitlines()
    with pytest.raises(config_mod.ConfigError) as e:
        config_mod.loads(bad.read_text())
    assert len(err) == len(e.value.problems) == 4  # api_key, wifi_password, labels, the unknown field
    assert all(line.startswith("deploy: %s: " % bad) for line in err)
    assert any("api_key: expected" in line and "(hidden)" in line for line in err)
    assert any("unknown field formta" in line for line in err)
    assert no_secrets("\n".join(err)) and "12345" not in "\n".join(err)


def test_config_not_json_and_config_for_another_board(tmp_path, capsys):
    broken = tmp_path / "broken.json"
    broken.write_text('{"api_key": "%s",' % API_KEY)
    assert deploy.main(["--board", "unix-sim", "--config", str(broken), "--dry-run"], runner=no_runner) == 2
    err = capsys.readouterr().err
    assert err.startswith("deploy: %s: not valid JSON" % broken) and err.count("\n") == 1 and no_secrets(err)
    other = write_config(tmp_path / "other.json", "unix-sim")
    assert deploy.main(["--board", "esp32-inmp441", "--config", other, "--dry-run"], runner=no_runner) == 2
    assert capsys.readouterr().err == "deploy: %s: board is 'unix-sim', but --board is 'esp32-inmp441'\n" % other


# -- the mip manifest --------------------------------------------------------------------------------


def manifest():
    with open(os.path.join(FIRMWARE, "package.json")) as f:
        return json.load(f)


def test_mip_manifest_lists_exactly_the_firmware_files():
    m = manifest()
    assert isinstance(m["version"], str) and m["version"]
    sources = bundle.firmware_sources()  # every .py under firmware/uingest, relative to firmware/
    dests = [d for d, _ in m["urls"]]
    srcs = [s for _, s in m["urls"]]
    assert len(dests) == len(set(dests))
    assert sorted(dests) == sorted(s.replace(os.sep, "/") for s in sources)  # no more, no fewer
    for dest, src in m["urls"]:
        assert dest.startswith("uingest/") and dest.endswith(".py")
        assert not src.startswith(("/", "http:", "https:", "github:")) and ".." not in src  # relative to package.json
        assert os.path.isfile(os.path.join(FIRMWARE, *src.split("/"))), src
        assert src == dest
    assert sorted(srcs) == sorted(dests)


def test_mip_manifest_matches_the_tools_version():
    with open(os.path.join(ROOT, "pyproject.toml")) as f:
        version = re.search(r'^version = "([^"]+)"', f.read(), re.M).group(1)
    assert manifest()["version"] == version


def test_mpremote_mip_installs_the_package_and_it_imports(mpy, tmp_path):
    flash = tmp_path / "flash"
    flash.mkdir()
    with EmulatedBoard(mpy.exe, flash) as board:
        proc = subprocess.run(
            [MPREMOTE, "connect", board.port, "mip", "install", "--target", "lib", "firmware/package.json"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=120,
        )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert tree(flash / "lib") == {s.replace(os.sep, "/") for s in bundle.firmware_sources()}
    modules = sorted(s[:-3].replace("/", ".") for s in tree(flash / "lib") if not s.endswith("__init__.py"))
    proc = mpy.run_program("import_modules.py", *modules, heap="1M", path=str(flash / "lib"), cwd=str(flash))
    out = proc.stdout.decode()
    assert out.strip() == "True"  # the viper kernels compile from source on the board too
