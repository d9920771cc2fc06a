"""The boards (boards/<name>/board.py): they compile for the ESP32, import
without hardware (also inside MicroPython), and their setup() builds the right
sensor, LED and button on a fake `machine` module."""

import glob
import importlib.util
import math
import os
import sys
import types

import pytest

from conftest import ROOT
from fake_hw import PWR_MGMT_1, FakeI2C, FakeI2S
from helpers import G, csv_file, rows_of
from uingest.sensors import sim, synthetic, tone
from uingest.sensors.csv_replay import CSVReplay
from uingest.sensors.hardware import Hardware
from uingest.sensors.i2s_mic import I2SMic
from uingest.sensors.imu import MPU6050, MPU6886
from uingest.window import Window
from uingest_tools import bundle

BOARDS = sorted(glob.glob(os.path.join(ROOT, "boards", "*", "board.py")))


# -- boards -------------------------------------------------------------------------------------------------


def board_name(path):
    return os.path.basename(os.path.dirname(path))


def load_board(path):
    spec = importlib.util.spec_from_file_location("board_" + board_name(path).replace("-", "_"), path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_the_boards_are_there():
    assert {board_name(p) for p in BOARDS} >= {
        "esp32-devkitc-mpu6050",
        "esp32-s3-devkitc-1",
        "m5stack-atom-matrix",
        "esp32-inmp441",
        "unix-sim",
    }


@pytest.mark.parametrize("path", BOARDS, ids=board_name)
def test_board_compiles_for_xtensawin(tmp_path, path):
    proc = bundle.compile_file(path, str(tmp_path / "board.mpy"), "xtensawin")
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "board.mpy").read_bytes()[:2] == b"M\x06"


@pytest.mark.parametrize("path", BOARDS, ids=board_name)
def test_board_imports_without_hardware(monkeypatch, path):
    # None in sys.modules makes `import machine` fail: importing a board must not need it
    monkeypatch.setitem(sys.modules, "machine", None)
    monkeypatch.setitem(sys.modules, "neopixel", None)
    mod = load_board(path)
    assert isinstance(mod.DESCRIPTION, str) and mod.DESCRIPTION and "\n" not in mod.DESCRIPTION
    assert isinstance(mod.DEVICE_TYPE, str) and mod.DEVICE_TYPE.isupper() and " " not in mod.DEVICE_TYPE
    assert isinstance(mod.PINS, dict) and all(isinstance(v, int) for v in mod.PINS.values())
    assert callable(mod.setup)


def test_boards_import_on_micropython(mpy):
    out = mpy.run_program("exec_board_files.py", *BOARDS).stdout.decode().split("\n")[:-1]
    assert [line.split()[0] for line in out] == [load_board(p).DEVICE_TYPE for p in BOARDS]


class FakePin:
    IN, OUT, PULL_UP = 1, 3, 2

    def __init__(self, pin, mode=None, pull=None):
        self.pin, self.mode, self.pull = pin, mode, pull

    def value(self):
        return 1


class FakeNeoPixel:
    def __init__(self, pin, n):
        self.pin, self.pixels, self.writes = pin, [(9, 9, 9)] * n, 0

    def __setitem__(self, i, color):
        self.pixels[i] = color

    def fill(self, color):
        self.pixels = [color] * len(self.pixels)

    def write(self):
        self.writes += 1


def fake_machine(who_am_i):
    m = types.ModuleType("machine")

    class I2C(FakeI2C):
        made = []

        def __init__(self, i2c_id, sda, scl, freq=400000):
            super().__init__()
            self.args = (i2c_id, sda.pin, scl.pin, freq)
            self.add(0x68, who_am_i)
            I2C.made.append(self)

    class I2S(FakeI2S):
        RX, MONO = 1, 0
        made = []

        def __init__(self, i2s_id, **kw):
            super().__init__([0])
            self.kw = kw
            I2S.made.append(self)

    m.Pin, m.I2C, m.I2S = FakePin, I2C, I2S
    return m


HARDWARE = {
    # board: (WHO_AM_I of the fake chip, sensor class, I2C (sda, scl), LED (pin, pixels, index), button pin)
    "esp32-devkitc-mpu6050": (0x68, MPU6050, (21, 22), None, None),
    "esp32-s3-devkitc-1": (0x68, MPU6050, (8, 9), (48, 1, 0), 0),
    "m5stack-atom-matrix": (0x19, MPU6886, (25, 21), (27, 25, 12), 39),
    "esp32-inmp441": (None, I2SMic, None, None, None),
}


@pytest.mark.parametrize("name", sorted(HARDWARE))
def test_board_setup_with_fake_hardware(monkeypatch, name):
    who, cls, i2c_pins, led, button = HARDWARE[name]
    machine = fake_machine(who)
    neopixel = types.ModuleType("neopixel")
    neopixel.NeoPixel = FakeNeoPixel
    monkeypatch.setitem(sys.modules, "machine", machine)
    monkeypatch.setitem(sys.modules, "neopixel", neopixel)
    mod = load_board(os.path.join(ROOT, "boards", name, "board.py"))
    assert not machine.I2C.made and not machine.I2S.made  # nothing built at import
    hw = mod.setup({"sample_rate_hz": 16000 if cls is I2SMic else 100, "label": "idle"})
    assert isinstance(hw, Hardware) and type(hw.sensor) is cls
    assert isinstance(hw.wdt_timeout_ms, int) and hw.wdt_timeout_ms >= 10000
    if i2c_pins:
        (bus,) = machine.I2C.made
        assert bus.args[1:3] == i2c_pins and bus.args[3] == 400000
        assert bus.writes[0] == (0x68, PWR_MGMT_1, b"\x01") and hw.sensor.rate_hz == 100
    else:
        (i2s,) = machine.I2S.made
        kw = dict(i2s.kw, sck=i2s.kw["sck"].pin, ws=i2s.kw["ws"].pin, sd=i2s.kw["sd"].pin)
        assert {k: kw[k] for k in ("sck", "ws", "sd", "bits", "rate", "mode", "format")} == {
            "sck": 14,
            "ws": 15,
            "sd": 32,
            "bits": 32,
            "rate": 16000,
            "mode": machine.I2S.RX,
            "format": machine.I2S.MONO,
        }
        assert hw.sensor.shift == 16 and hw.sensor.typecode == "h"
    if led is None:
        assert hw.led is None
    else:
        pin, n, index = led
        np = hw.led._np
        assert np.pin.pin == pin and len(np.pixels) == n and set(np.pixels) == {(0, 0, 0)}
        hw.led.on()
        assert np.pixels[index] != (0, 0, 0) and max(np.pixels[index]) <= 32  # dim
        assert sum(p != (0, 0, 0) for p in np.pixels) == 1
        hw.led.off()
        assert set(np.pixels) == {(0, 0, 0)}
    if button is None:
        assert hw.button is None
    else:
        assert hw.button.pin == button and hw.button.mode == FakePin.IN


def test_board_setup_reports_a_missing_imu(monkeypatch):
    machine = fake_machine(0x68)

    class NoDevice(machine.I2C):
        def __init__(self, *a, **kw):
            super().__init__(*a, **kw)
            self.devices.clear()

    machine.I2C = NoDevice
    monkeypatch.setitem(sys.modules, "machine", machine)
    mod = load_board(os.path.join(ROOT, "boards", "esp32-devkitc-mpu6050", "board.py"))
    with pytest.raises(OSError, match="MPU6050: no answer at I2C address 0x68"):
        mod.setup({"sample_rate_hz": 100, "label": "idle"})


def test_unix_sim_setup(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # sim.setup() counts boots in a file in the current folder
    mod = load_board(os.path.join(ROOT, "boards", "unix-sim", "board.py"))
    hw = mod.setup({"sample_rate_hz": 100, "label": "wave"})
    assert type(hw.sensor) is synthetic.SyntheticIMU and not hasattr(hw.sensor, "fill")  # sampled by read()
    assert (hw.led, hw.button, hw.wdt_timeout_ms) == (None, None, None)
    assert mod.SENSORS == hw.sensor.sensors
    hw = mod.setup({"sample_rate_hz": 16000, "label": "wave", "audio": True})
    assert type(hw.sensor) is tone.SyntheticAudio and hw.sensor.rate_hz == 16000
    path = csv_file(tmp_path, "timestamp,a\nms,V\n0,1\n")
    hw = mod.setup({"sample_rate_hz": 100, "label": "wave", "csv": path})
    assert type(hw.sensor) is CSVReplay and hw.sensor.sensors == (("a", "V"),)
    assert sim.setup({"sample_rate_hz": 100, "label": "x"}).sensor.label == "x"


def test_unix_sim_window_fill_keeps_the_simulator_formula():
    # boards/unix-sim/simulator.py: fill(window, w) is samples w*n.. with accZ marking w
    mod = load_board(os.path.join(ROOT, "boards", "unix-sim", "board.py"))
    s = mod.SyntheticIMU("circle", 100)
    w = Window(mod.SENSORS, 10, 200)
    s.fill(w, 7)
    seed = synthetic.label_seed("circle")
    f, amp = 1 + seed % 7 + 0.37, 1 + (seed >> 3) % 5
    assert (s.freq_hz, s.amp) == (pytest.approx(f), amp)
    for i, row in enumerate(rows_of(w)):
        t = 7 * 200 + i
        ph = 2 * math.pi * f * t / 100
        assert row == pytest.approx([amp * math.sin(ph), amp * math.cos(ph), G + 7 * 0.001], abs=1e-5)
