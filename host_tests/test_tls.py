"""uingest.http over TLS: the firmware posts to `uingest serve` running https with
certificates made here by trustme, both on CPython (through the shim) and
inside the MicroPython unix port (mbedTLS). The same scenario script runs on
both interpreters."""

import json
import os
import signal
import ssl
import subprocess

import pytest
import trustme

from conftest import FIRMWARE, HERE, run_on_cpython
from helpers import read_index
from uingest_tools.acquisition import decode, verify_signature
from uingest_tools.loopback import start_serve
from uingest_tools.serve import ServerThread, create_app

KEY = "ei_tls_api_key_0123"
HKEY = "tls-hmac-key"
UNVERIFIED = "TLS certificate verification failed"


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    """Paths of: the right CA (PEM and DER), a second, wrong CA, a server
    certificate for 127.0.0.1/localhost and one for another name only (both
    issued by the right CA; certificate chain and key in one PEM file)."""
    d = tmp_path_factory.mktemp("pki")
    ca, wrong = trustme.CA(), trustme.CA()  # ECDSA P-256: mbedTLS takes it
    paths = {name: str(d / name) for name in ("ca.pem", "ca.der", "wrong.pem", "server.pem", "other.pem")}
    ca.cert_pem.write_to_path(paths["ca.pem"])
    with open(paths["ca.der"], "wb") as f:
        f.write(ssl.PEM_cert_to_DER_cert(ca.cert_pem.bytes().decode()))
    wrong.cert_pem.write_to_path(paths["wrong.pem"])
    ca.issue_cert("127.0.0.1", "localhost").private_key_and_cert_chain_pem.write_to_path(paths["server.pem"])
    ca.issue_cert("other.example").private_key_and_cert_chain_pem.write_to_path(paths["other.pem"])
    return paths


class Served:
    def __init__(self, certfile, data_dir):
        self.data_dir = data_dir
        self.srv = ServerThread(create_app(data_dir, api_key=KEY, hmac_key=HKEY), ssl_certfile=certfile).start()
        self.url = self.srv.url
        assert self.url.startswith("https://127.0.0.1:")

    def index(self):
        return read_index(self.data_dir)

    def files(self):
        return [os.path.join(r, n) for r, _, names in os.walk(self.data_dir) for n in names]

    def stored(self, rec):
        with open(os.path.join(self.data_dir, rec["file"]), "rb") as f:
            return f.read()


@pytest.fixture
def server(pki, tmp_path):
    s = Served(pki["server.pem"], str(tmp_path / "data"))
    yield s
    s.srv.stop()


# One window, posted once per step [url, ca_file, insecure] through a new
# Client each time; the window is the caller's and must come out unchanged.
SCENARIO = "post_window_steps.py"


@pytest.fixture(params=["cpython", "micropython"])
def run(request):
    """run(steps) -> the result of mp_programs/post_window_steps.py, on one interpreter."""

    if request.param == "cpython":

        def on_cpython(steps):
            g = run_on_cpython(SCENARIO, json.dumps(steps), KEY, HKEY)  # the firmware on the shim
            return json.loads(json.dumps(g["result"]))

        return on_cpython
    mpy = request.getfixturevalue("mpy")

    def on_micropython(steps):
        proc = mpy.run_program(SCENARIO, json.dumps(steps), KEY, HKEY, path=FIRMWARE + ":" + HERE, heap="256K")
        return json.loads(proc.stdout.decode().strip().splitlines()[-1])

    return on_micropython


def assert_stored(server, rec, detail, values):
    assert rec["file"].endswith("/" + detail) and rec["label"] == "tls" and rec["signature"] == "valid"
    body = server.stored(rec)
    assert verify_signature(body, "cbor", HKEY)
    stored = [v for row in decode(body, "cbor")["payload"]["values"] for v in row]
    assert stored == pytest.approx(values)


@pytest.mark.parametrize("ca", ["ca.pem", "ca.der"])
def test_right_ca_is_accepted_and_stored(run, server, pki, ca):
    r = run([[server.url, pki[ca], False]])
    [[kind, status, detail]] = r["outcomes"]
    assert (kind, status) == ("ACCEPTED", 200)
    [rec] = server.index()
    assert_stored(server, rec, detail, r["values"])


def test_wrong_ca_is_retry_and_the_window_is_kept(run, server, pki):
    r = run([[server.url, pki["wrong.pem"], False]])
    assert r["outcomes"] == [["RETRY", 0, UNVERIFIED]]
    assert server.index() == [] and server.files() == []
    # The caller still has its window: unchanged, and it goes through on a
    # retry once the client trusts the right CA.
    r = run([[server.url, pki["wrong.pem"], False], [server.url, pki["ca.pem"], False]])
    assert r["unchanged"] is True
    (fail, ok) = r["outcomes"]
    assert fail == ["RETRY", 0, UNVERIFIED]
    assert ok[:2] == ["ACCEPTED", 200]
    [rec] = server.index()  # the failed post stored nothing
    assert_stored(server, rec, ok[2], r["values"])


def test_insecure_skips_verification(run, server, pki):
    r = run([[server.url, pki["wrong.pem"], True]])
    [[kind, status, detail]] = r["outcomes"]
    assert (kind, status) == ("ACCEPTED", 200)
    [rec] = server.index()
    assert_stored(server, rec, detail, r["values"])


def test_verification_is_on_by_default(run, server):
    # No ca_file: the system's CAs (CPython) or none at all (MicroPython);
    # neither trusts the test CA.
    r = run([[server.url, None, False]])
    assert r["outcomes"] == [["RETRY", 0, UNVERIFIED]]
    assert server.index() == [] and server.files() == []


def test_the_host_name_is_checked(run, pki, tmp_path):
    other = Served(pki["other.pem"], str(tmp_path / "other"))  # right CA, certificate for other.example
    try:
        r = run([[other.url, pki["ca.pem"], False]])
    finally:
        other.srv.stop()
    assert r["outcomes"] == [["RETRY", 0, UNVERIFIED]]
    assert other.index() == []


def test_serve_command_line_over_tls(pki, tmp_path):
    cert, key = str(tmp_path / "cert.pem"), str(tmp_path / "key.pem")
    with open(pki["server.pem"]) as f:
        pem = f.read()
    split = pem.index("-----BEGIN CERTIFICATE-----")
    with open(key, "w") as f:
        f.write(pem[:split])
    with open(cert, "w") as f:
        f.write(pem[split:])
    env = dict(os.environ, UINGEST_API_KEY=KEY)
    ctx = ssl.create_default_context(cafile=pki["ca.pem"])
    args = ("--data-dir", str(tmp_path / "data"), "--ssl-certfile", cert, "--ssl-keyfile", key)
    proc = start_serve(*args, ssl_context=ctx, env=env, stderr=subprocess.PIPE)  # waits for /api/health over TLS
    try:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=15) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        proc.stderr.close()


# -- `uingest ca`: the root a board needs, fetched and checked on the computer ---------------------


@pytest.fixture(scope="module")
def chained(tmp_path_factory):
    """A server whose certificate comes from an intermediate CA, as public
    servers' do: (root PEM path, root DER bytes, the served server)."""
    d = tmp_path_factory.mktemp("chain")
    root = trustme.CA()
    intermediate = root.create_child_ca()
    intermediate.issue_cert("127.0.0.1", "localhost").private_key_and_cert_chain_pem.write_to_path(str(d / "srv.pem"))
    root.cert_pem.write_to_path(str(d / "root.pem"))
    served = Served(str(d / "srv.pem"), str(d / "data"))
    yield str(d / "root.pem"), ssl.PEM_cert_to_DER_cert(root.cert_pem.bytes().decode()), served
    served.srv.stop()


def test_ca_writes_the_root_of_the_servers_chain_and_a_board_verifies_with_it(chained, tmp_path, capsys, mpy):
    from uingest_tools import ca

    root_pem, root_der, served = chained
    out = str(tmp_path / "ca.der")
    assert ca.main([served.url, "--trust", root_pem, "--out", out]) == 0
    with open(out, "rb") as f:
        assert f.read() == root_der  # the root, not the intermediate the server sent
    line = capsys.readouterr().out.strip()
    assert line.startswith("ca: wrote %s (%d bytes): " % (out, len(root_der))) and "127.0.0.1's chain" in line
    assert line.endswith('keep it next to config.json, with "ca_file": "ca.der" there')
    # the firmware on the unix port (mbedTLS) verifies the server with that file
    steps = json.dumps([[served.url, out, False]])
    proc = mpy.run_program(SCENARIO, steps, KEY, HKEY, path=FIRMWARE + ":" + HERE, heap="256K")
    [[kind, status, _]] = json.loads(proc.stdout.decode().strip().splitlines()[-1])["outcomes"]
    assert (kind, status) == ("ACCEPTED", 200)


def test_ca_refuses_a_server_the_trust_store_does_not_vouch_for(chained, pki, tmp_path, capsys):
    from uingest_tools import ca

    _, _, served = chained
    out = tmp_path / "ca.der"
    assert ca.main([served.url, "--trust", pki["wrong.pem"], "--out", str(out)]) == 1
    err = capsys.readouterr().err
    assert err.startswith(
        "ca: %s: the server's certificate does not verify against %s: " % (served.url, pki["wrong.pem"])
    )
    assert len(err.strip().splitlines()) == 1 and not out.exists()


@pytest.mark.parametrize(
    "url,problem",
    [("http://127.0.0.1:1", "expected an https://host[:port] URL"), ("https://127.0.0.1:1", "cannot connect")],
)
def test_ca_bad_url_or_no_server_is_one_line(url, problem, tmp_path, capsys):
    from uingest_tools import ca

    assert ca.main([url, "--out", str(tmp_path / "ca.der")]) == 1
    err = capsys.readouterr().err.strip()
    assert problem in err and len(err.splitlines()) == 1
