"""Installing uingest the MicroPython way. `mip` (the unix port's own, the code a board runs for
`mip.install(URL)`) installs firmware/package.json from a web server: here the checkout served over a local HTTP
server, as a repository host would serve it. The README's own `mpremote mip install firmware/package.json` line,
run by mpremote's mip code from the checkout against a stand-in for a board's filesystem. And
firmware/manifest.py, the file a user includes in their own firmware build to freeze uingest, names every
firmware module (test_mpy_cross.py compiles each of them for the ESP32's architecture, as a frozen build does)."""

import functools
import http.server
import json
import os
import re
import subprocess
import threading

import pytest

from conftest import FIRMWARE, ROOT
from uingest_tools import mpytools
from uingest_tools.bundle import firmware_sources


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


@pytest.fixture
def served_checkout():
    """The checkout over HTTP on 127.0.0.1 (a free port); yields its base URL."""
    handler = functools.partial(_Quiet, directory=ROOT)
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield "http://127.0.0.1:%d" % server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()


def _tree(folder):
    found = (os.path.relpath(os.path.join(p, n), folder) for p, _, names in os.walk(folder) for n in names)
    return sorted(f.replace(os.sep, "/") for f in found)


def _pyproject_version():
    with open(os.path.join(ROOT, "pyproject.toml")) as f:
        return re.search(r'^version = "([^"]+)"', f.read(), re.M).group(1)


def test_mip_on_the_unix_port_installs_the_package_from_a_web_server(mpy, served_checkout, tmp_path):
    lib = tmp_path / "lib"
    proc = subprocess.run(
        [mpy.exe, "-m", "mip", "install", "--target", str(lib), served_checkout + "/firmware/package.json"],
        env=mpytools.unix_port_env(HOME=str(tmp_path)),  # only the port's frozen modules (mip): nothing of ours
        cwd=str(tmp_path),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0 and "Done" in proc.stdout, proc.stdout + proc.stderr
    sources = [s.replace(os.sep, "/") for s in firmware_sources()]
    assert _tree(lib) == sorted(sources)  # every firmware module, nothing else
    for rel in sources:
        with open(os.path.join(FIRMWARE, rel), "rb") as f:
            assert (lib / rel).read_bytes() == f.read(), rel  # byte-identical
    modules = sorted(s[:-3].replace("/", ".") for s in sources if not s.endswith("__init__.py"))
    out = mpy.run_program("import_modules.py", *modules, heap="1M", path=str(lib), cwd=str(tmp_path))
    assert out.stdout.decode().strip() == "True"  # all import; the viper kernels compile from source too


def _run_manifest(path):
    """firmware/manifest.py executed with stand-ins for the manifest commands: (metadata, [package calls])."""
    calls = {"metadata": [], "package": [], "other": []}

    def command(name):
        return lambda *args, **kwargs: calls[name].append((args, kwargs))

    names = {"metadata": command("metadata"), "package": command("package")}
    for other in ("module", "include", "require", "freeze", "options", "add_library", "python_module"):
        names[other] = command("other")
    with open(path) as f:
        exec(compile(f.read(), path, "exec"), names)
    return calls


def test_the_freeze_manifest_names_every_firmware_module():
    manifest = os.path.join(FIRMWARE, "manifest.py")
    calls = _run_manifest(manifest)
    assert calls["other"] == []  # nothing but the package: the board's own manifest brings the port's modules
    frozen = []
    for args, kwargs in calls["package"]:
        package = args[0]
        base = os.path.join(os.path.dirname(manifest), kwargs.get("base_path", "."))
        files = args[1] if len(args) > 1 else kwargs.get("files")
        assert files is None  # the whole package: a new module cannot be left out
        for p, _, names in os.walk(os.path.join(base, package)):
            frozen += [os.path.relpath(os.path.join(p, n), base) for n in names if n.endswith(".py")]
    assert sorted(frozen) == sorted(firmware_sources())
    ((_, meta),) = calls["metadata"]
    with open(os.path.join(FIRMWARE, "package.json")) as f:
        assert meta["version"] == json.load(f)["version"] == _pyproject_version()


class _BoardFilesystem:
    """What mpremote's mip needs of a board (its transport), on a folder standing for the board's filesystem: a
    board whose sys.path is an ESP32's."""

    def __init__(self, root):
        self.root = root

    def _local(self, path):
        return os.path.join(self.root, path.lstrip("/"))

    def exec(self, code):
        pass

    def eval(self, expression):
        assert expression == "sys.path", expression
        return ["", ".frozen", "/lib"]

    def fs_exists(self, path):
        return os.path.exists(self._local(path))

    def fs_mkdir(self, path):
        os.mkdir(self._local(path))

    def fs_writefile(self, path, data, progress_callback=None):
        with open(self._local(path), "wb") as f:
            f.write(data)

    def fs_hashfile(self, path, algo):
        raise FileNotFoundError(path)


def _readme_block_on_a_board():
    """The shell lines of the README's "the MicroPython way" block (under "On a board")."""
    with open(os.path.join(ROOT, "README.md")) as f:
        readme = f.read()
    block = re.search(r"```sh\n\s*(mpremote mip install .*?)```", readme, re.S)
    assert block, "the README's mpremote block"
    return [line.split("#")[0].split() for line in block.group(1).splitlines() if line.strip()]


def test_the_readmes_mpremote_mip_command_installs_the_package_into_lib(tmp_path, monkeypatch, capsys):
    # the README's line as mpremote parses it and runs it, from a clone, against a board's filesystem
    from mpremote.main import argparse_mip
    from mpremote.mip import do_mip

    lines = _readme_block_on_a_board()
    mip = lines[0]
    assert mip[:3] == ["mpremote", "mip", "install"], mip
    board = tmp_path / "board"
    board.mkdir()

    class State:
        transport = _BoardFilesystem(str(board))

        def did_action(self):
            pass

        def ensure_raw_repl(self):
            pass

    monkeypatch.chdir(ROOT)
    do_mip(State(), argparse_mip().parse_args(mip[2:]))
    assert "Done" in capsys.readouterr().out
    sources = [s.replace(os.sep, "/") for s in firmware_sources()]
    assert _tree(board) == sorted("lib/" + s for s in sources)  # every firmware module in /lib, nothing else
    for rel in sources:
        with open(os.path.join(FIRMWARE, rel), "rb") as f:
            assert (board / "lib" / rel).read_bytes() == f.read(), rel
    # what else the board needs, from the same block: main.py, a board file and the config at its root
    copies = {line[-1]: line[-2] for line in lines if line[1:2] == ["cp"]}
    assert set(copies) == {":main.py", ":board.py", ":config.json"}, copies
    for dst in (":main.py", ":board.py"):
        assert os.path.isfile(os.path.join(ROOT, copies[dst])), copies[dst]  # in the checkout, as written
