"""`pip install .` as a user does it: the wheel built from this checkout, installed into a fresh venv in a
temporary folder outside the checkout, and every command run from there (cwd outside the checkout, no
PYTHONPATH). It shows that the dependencies are declared, that the firmware and the board files are in the
wheel, and that nothing is read from the checkout (host_tests/, firmware/, boards/) at run time.

Dependencies come from the package index (pip's cache makes a repeated run take seconds), held to the versions
requirements-dev.txt pins so the run is the one the rest of the suite tests. Without a reachable index (and no
cached copy) the test is skipped, saying so; CI reaches the index."""

import json
import os
import re
import subprocess
import sys
import zipfile

import pytest

from conftest import ROOT
from uingest_tools import bundle
from uingest_tools.acquisition import decode
from uingest_tools.loopback import start_serve

API_KEY = "ei_wheel_test"
NO_INDEX = ("NewConnectionError", "Temporary failure in name resolution", "Network is unreachable", "ProxyError")


def _pip(*args, cwd):
    proc = subprocess.run(
        [sys.executable, "-m", "pip", "--disable-pip-version-check", "--retries", "1", "--timeout", "20", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=600,
    )
    if proc.returncode != 0 and any(s in proc.stdout + proc.stderr for s in NO_INDEX):
        pytest.skip("the package index cannot be reached: %s" % proc.stderr.strip().splitlines()[-1])
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    """(the wheel's path, the venv's bin folder, a work folder outside the checkout, the environment)."""
    top = tmp_path_factory.mktemp("wheel")
    assert not str(top).startswith(ROOT)
    dist = top / "dist"
    _pip("wheel", ROOT, "--no-deps", "--wheel-dir", str(dist), "--quiet", cwd=str(top))
    (wheel,) = dist.glob("uingest_tools-*.whl")
    venv = top / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    python = venv / "bin" / "python"
    # pip of this suite's venv installs into the fresh one (--python): no ensurepip copy per run
    constraints = os.path.join(ROOT, "requirements-dev.txt")
    _pip("--python", str(python), "install", "--quiet", "--constraint", constraints, str(wheel), cwd=str(top))
    work = top / "work"
    work.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "UINGEST_", "VIRTUAL_ENV"))}
    env["PATH"] = os.pathsep.join([str(venv / "bin"), env.get("PATH", "")])
    return wheel, venv / "bin", work, env


def run(installed, *args, timeout=120, check=True, **kw):
    _, bin_dir, work, env = installed
    proc = subprocess.run(
        [str(bin_dir / "uingest"), *args],
        cwd=str(work),
        env=dict(env, **kw),
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    if check:
        assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc


def test_the_wheel_holds_the_firmware_and_every_board(installed):
    names = set(zipfile.ZipFile(installed[0]).namelist())
    firmware = bundle.firmware_sources() + ["main.py", "package.json", "config.example.json", "manifest.py"]
    for rel in firmware:
        assert "uingest_tools/firmware/" + rel.replace(os.sep, "/") in names, rel
    for board in os.listdir(os.path.join(ROOT, "boards")):
        for f in os.listdir(os.path.join(ROOT, "boards", board)):
            if f.endswith((".py", ".json")):
                assert "uingest_tools/boards/%s/%s" % (board, f) in names
    assert any(n.startswith("uingest_tools/bench_programs/") for n in names)
    assert any(n.startswith("uingest_tools/dashboard_assets/") for n in names)
    assert not any(n.startswith(("host_tests/", "firmware/", "boards/")) for n in names)


def test_the_installed_tools_use_their_own_files(installed):
    _, bin_dir, work, env = installed
    proc = subprocess.run(
        [
            str(bin_dir / "python"),
            "-c",
            "from uingest_tools import bundle; print(bundle.FIRMWARE); print(bundle.BOARDS)",
        ],
        cwd=str(work),
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    venv = str(bin_dir.parent)
    for folder in proc.stdout.split():
        assert folder.startswith(venv) and os.path.isdir(folder), folder


def test_version_and_help(installed):
    help_text = run(installed, "--help").stdout
    for command in ("serve", "simulate", "deploy", "inspect", "relay", "ca", "bench"):
        assert command in help_text
    assert "--version" in help_text
    with open(os.path.join(ROOT, "pyproject.toml")) as f:
        version = re.search(r'^version = "([^"]+)"', f.read(), re.M).group(1)
    assert run(installed, "--version").stdout == "uingest %s\n" % version  # the installed distribution's


def test_serve_simulate_and_inspect(installed):
    _, bin_dir, work, env = installed
    data = work / "dataset"  # serve's default data folder, in its cwd
    server = start_serve(
        command=[str(bin_dir / "uingest"), "serve"],
        cwd=str(work),
        env=dict(env, UINGEST_API_KEY=API_KEY),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        for fmt, heap in (("cbor", "64K"), ("json", "128K")):
            args = ["--url", server.url, "--label", "wave-" + fmt, "--format", fmt, "--windows", "2", "--heap", heap]
            proc = run(installed, "simulate", *args, "--quiet", UINGEST_API_KEY=API_KEY)
            assert "2/2 windows accepted" in proc.stdout, proc.stdout + proc.stderr
    finally:
        server.terminate()
        server.wait(timeout=30)
    files = sorted((data / "training").iterdir())
    assert sorted(f.suffix for f in files) == [".cbor", ".cbor", ".json", ".json"]
    for f in files:
        assert decode(f.read_bytes(), f.suffix[1:])["payload"]["values"]
    proc = run(installed, "inspect", "--json", *map(str, files))
    facts = json.loads(proc.stdout)
    assert [fact["rows"] for fact in facts] == [200] * 4


def test_deploy_dry_run(installed):
    work = installed[2]
    config = {
        "board": "esp32-devkitc-mpu6050",
        "wifi_ssid": "net",
        "wifi_password": "secret-password",
        "api_key": "ei_0123456789abcdef",
        "hmac_key": None,
        "url": "http://192.168.1.20:4810",
        "labels": ["idle"],
        "label": "idle",
        "ca_file": None,
    }
    (work / "config.json").write_text(json.dumps(config))
    proc = run(installed, "deploy", "--board", "esp32-devkitc-mpu6050", "--config", "config.json", "--dry-run")
    out = proc.stdout
    assert "config config.json: valid for esp32-devkitc-mpu6050" in out
    assert "uingest/app.mpy" in out and "board.py" in out and "dry run: no device was touched" in out
    assert "secret-password" not in out + proc.stderr


def test_a_short_bench(installed):
    small = "--repeats 1 --uploads 2 --sampler-seconds 1 --link-windows 1 --devices 1 --device-windows 1"
    small += " --load-devices 1 --idle-connections 2 --large-window-mb 1 --open-loop-rate 10 --open-loop-seconds 1"
    small += " --quick"  # bench_smoke runs the rest
    proc = run(installed, "bench", *small.split(), timeout=300)
    for needle in ("uingest CBOR", "minimal responder", "sampler at 100 Hz", "run in place from ROMFS", "whole app"):
        assert needle in proc.stdout, needle
