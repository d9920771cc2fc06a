"""uingest inspect: summaries of files written by the firmware, by Edge Impulse's DataForwarder, and WAV files.

Expected numbers are computed here from the values that were generated, not from the files.
"""

import json
import math
import os
import shutil
import statistics
import struct
import subprocess
import sys
import wave

import pytest

from helpers import IEEE_FLOAT, PCM, wav_by_hand, wav_header
from uingest import message
from uingest.window import Window
from uingest_tools import inspect_samples as uinspect
from uingest_tools.serve import ServerThread, create_app

HERE = os.path.dirname(os.path.abspath(__file__))
FORWARD_JS = os.path.join(HERE, "ei_clients", "forward.js")
EI_LINUX = os.path.join(sys.prefix, "node", "edge-impulse-linux")  # .venv/node, installed by `make test`
FIXTURE = os.path.join(HERE, "fixtures", "dataforwarder-idle.json")
FIXTURE_KEY = "uingest-fixture-hmac-key"  # see fixtures/README.md

HMAC_KEY = "inspect-hmac-key"
IMU = [("accX", "m/s2"), ("accY", "m/s2"), ("gyrZ", "dps")]
ROWS = 150


def imu_window(rows=ROWS):
    w = Window(IMU, 10, rows)
    for i in range(rows):
        w.append(math.sin(i / 7) * 9.81, i * 0.01 - 1, 250 * math.cos(i / 11) + 3)
    return w


def columns(w):
    """Per axis, the float32 values the window holds."""
    n = len(w.sensors)
    flat = list(w.samples)[: len(w) * n]
    return [flat[i::n] for i in range(n)]


def g4(x):
    """x rounded to 4 significant digits, as a float."""
    return float("%.4g" % x)


def parse(out):
    """{file: {"fields": {key: text}, "axes": {name: (units, min, max, mean)}}} from inspect's text output."""
    result = {}
    block = None
    in_table = False
    for line in out.splitlines():
        if not line.startswith(" "):
            block = result[line] = {"fields": {}, "axes": {}}
            in_table = False
        elif line.split() == ["axis", "units", "min", "max", "mean"]:
            in_table = True
        elif in_table and not line.strip().startswith("plot:"):
            name, units, lo, hi, mean = line.split()
            block["axes"][name] = (units, float(lo), float(hi), float(mean))
        else:
            in_table = False
            key, _, value = line.strip().partition(": ")
            block["fields"][key] = value
    return result


def check_axes(summary, names_units, cols):
    assert list(summary["axes"]) == [n for n, _ in names_units]
    for (name, units), col in zip(names_units, cols):
        got = summary["axes"][name]
        assert got == (units, g4(min(col)), g4(max(col)), g4(statistics.fmean(col))), (name, got)


def run(capsys, *argv):
    rc = uinspect.main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return rc, out, err


@pytest.fixture
def firmware_files(tmp_path):
    w = imu_window()
    files = {}
    for fmt in ("cbor", "json"):
        path = tmp_path / ("idle.1.%s" % fmt)
        path.write_bytes(
            message.encode(w, fmt, hmac_key=HMAC_KEY, device_type="ESP32_DEVKITC", device_name="ac:87:a3:0a:2d:1b")
        )
        files[fmt] = path
    return w, files


def test_firmware_cbor_and_json_summaries(firmware_files, capsys):
    w, files = firmware_files
    rc, out, err = run(capsys, files["cbor"], files["json"], "--hmac-key", HMAC_KEY)
    assert (rc, err) == (0, "")
    summaries = parse(out)
    assert list(summaries) == [str(files["cbor"]), str(files["json"])]
    cols = columns(w)
    for fmt, path in files.items():
        s = summaries[str(path)]
        f = s["fields"]
        assert f["format"] == "%s data acquisition message, %d bytes" % (fmt.upper(), path.stat().st_size)
        assert f["device_name"] == "ac:87:a3:0a:2d:1b" and f["device_type"] == "ESP32_DEVKITC"
        assert f["sensors"] == "accX (m/s2), accY (m/s2), gyrZ (dps)"
        assert f["rows"] == str(ROWS)
        assert f["interval_ms"] == "10 (100 Hz)"
        assert f["duration"] == "1500 ms"
        assert f["signature"] == "valid"
        check_axes(s, IMU, cols)


def test_without_a_key_and_unsigned(tmp_path, firmware_files, capsys):
    w, files = firmware_files
    unsigned = tmp_path / "unsigned.cbor"
    unsigned.write_bytes(message.encode(w, "cbor", device_type="T"))
    rc, out, err = run(capsys, files["cbor"], unsigned)
    assert (rc, err) == (0, "")
    s = parse(out)
    assert s[str(files["cbor"])]["fields"]["signature"] == "HS256, not checked (give --hmac-key to verify)"
    assert s[str(unsigned)]["fields"]["signature"] == "none (unsigned)"
    assert s[str(unsigned)]["fields"]["device_name"] == "-"
    rc, out, err = run(capsys, unsigned, "--hmac-key", HMAC_KEY)
    assert (rc, err) == (0, "") and parse(out)[str(unsigned)]["fields"]["signature"] == "none (unsigned)"


def test_tampered_and_wrong_key_fail_verification(tmp_path, firmware_files, capsys):
    w, files = firmware_files
    cols = columns(w)
    # CBOR: one float32 value changed (the first gyrZ value, 253.0)
    raw = files["cbor"].read_bytes()
    old = b"\xfa" + struct.pack(">f", cols[2][0])
    assert raw.count(old) == 1
    tampered = tmp_path / "tampered.cbor"
    tampered.write_bytes(raw.replace(old, b"\xfa" + struct.pack(">f", 999.0)))
    # JSON: one number's text changed
    text = files["json"].read_bytes()
    assert text.count(b",253]") == 1
    tampered_json = tmp_path / "tampered.json"
    tampered_json.write_bytes(text.replace(b",253]", b",254]"))

    rc, out, err = run(capsys, tampered, tampered_json, files["cbor"], "--hmac-key", HMAC_KEY)
    assert rc == 1
    s = parse(out)
    assert s[str(tampered)]["fields"]["signature"] == "INVALID (does not match the HMAC key)"
    assert s[str(tampered_json)]["fields"]["signature"] == "INVALID (does not match the HMAC key)"
    assert s[str(files["cbor"])]["fields"]["signature"] == "valid"
    assert s[str(tampered)]["axes"]["gyrZ"][2] == 999.0  # the changed value is what the summary shows
    assert err.splitlines() == [
        "%s: signature INVALID (does not match the HMAC key)" % tampered,
        "%s: signature INVALID (does not match the HMAC key)" % tampered_json,
    ]

    rc, out, err = run(capsys, files["json"], "--hmac-key", HMAC_KEY + "x")
    assert rc == 1 and parse(out)[str(files["json"])]["fields"]["signature"] == "INVALID (does not match the HMAC key)"


def wav_file(path, channels, rate, frames):
    data = [[int(12000 * math.sin(i / (7 + c * 3)) + 100 * c) for c in range(channels)] for i in range(frames)]
    with wave.open(str(path), "wb") as w:
        w.setnchannels(channels)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(b"".join(struct.pack("<%dh" % channels, *row) for row in data))
    return [[row[c] for row in data] for c in range(channels)]


def test_wav_mono_and_stereo(tmp_path, capsys):
    mono = tmp_path / "noise.1.wav"
    mono_cols = wav_file(mono, 1, 16000, 8000)
    stereo = tmp_path / "stereo.wav"
    stereo_cols = wav_file(stereo, 2, 44100, 4410)
    rc, out, err = run(capsys, mono, stereo, "--hmac-key", HMAC_KEY)
    assert (rc, err) == (0, "")
    s = parse(out)
    f = s[str(mono)]["fields"]
    assert f["format"] == "WAV file, %d bytes" % mono.stat().st_size
    assert (f["device_name"], f["device_type"]) == ("-", "-")
    assert f["sensors"] == "audio (wav)" and f["rows"] == "8000"
    assert f["interval_ms"] == "0.0625 (16000 Hz)" and f["duration"] == "500 ms"
    assert f["signature"] == "n/a (WAV files carry no signature)"
    check_axes(s[str(mono)], [("audio", "wav")], mono_cols)
    f = s[str(stereo)]["fields"]
    assert f["sensors"] == "left (wav), right (wav)" and f["rows"] == "4410"
    assert f["interval_ms"] == "0.02268 (44100 Hz)" and f["duration"] == "100 ms"
    check_axes(s[str(stereo)], [("left", "wav"), ("right", "wav")], stereo_cols)


def tone(channels, frames, peak):
    """frames of one number per channel: a sine per channel, integers when peak is an int."""
    rows = [[peak * math.sin(i / (5 + 2 * c)) for c in range(channels)] for i in range(frames)]
    return [[int(v) for v in row] for row in rows] if isinstance(peak, int) else rows


def written_by_wave(path, bits, rate, frames):
    """A PCM WAV file written by Python's wave module (8-bit is unsigned on disk)."""
    with wave.open(str(path), "wb") as w:
        w.setnchannels(len(frames[0]))
        w.setsampwidth(bits // 8)
        w.setframerate(rate)
        if bits == 8:
            w.writeframes(bytes(v + 128 for row in frames for v in row))
        else:
            w.writeframes(b"".join(v.to_bytes(bits // 8, "little", signed=True) for row in frames for v in row))


@pytest.mark.parametrize(
    "name,bits,encoding,channels,extensible,by",
    [
        ("pcm8.wav", 8, "pcm", 1, False, "wave"),
        ("pcm16.wav", 16, "pcm", 2, False, "wave"),
        ("pcm24.wav", 24, "pcm", 1, False, "wave"),
        ("pcm32.wav", 32, "pcm", 3, False, "wave"),
        ("pcm24-hand.wav", 24, "pcm", 2, False, "hand"),
        ("float32.wav", 32, "float", 2, False, "hand"),
        ("ext-pcm24.wav", 24, "pcm", 2, True, "hand"),
        ("ext-float32.wav", 32, "float", 1, True, "hand"),
    ],
)
def test_wav_formats_are_read_and_plotted(tmp_path, capsys, name, bits, encoding, channels, extensible, by):
    rate, n = 8000, 400
    peak = 0.75 if encoding == "float" else (1 << (bits - 1)) - 1 - 3
    frames = tone(channels, n, peak)
    if encoding == "float":  # as float32 stores them
        frames = [[struct.unpack("<f", struct.pack("<f", v))[0] for v in row] for row in frames]
    path = tmp_path / name
    if by == "wave":
        written_by_wave(path, bits, rate, frames)
    else:
        path.write_bytes(wav_by_hand(IEEE_FLOAT if encoding == "float" else PCM, rate, bits, frames, extensible))
    cols = [[row[c] for row in frames] for c in range(channels)]
    png = tmp_path / (name + ".png")
    rc, out, err = run(capsys, path, "--plot", png)
    assert (rc, err) == (0, "")
    s = parse(out)[str(path)]
    kind = "float" if encoding == "float" else "PCM"
    assert s["fields"]["audio"] == "%d channel%s, 8000 Hz, %d-bit %s" % (channels, "s" * (channels > 1), bits, kind)
    assert s["fields"]["rows"] == str(n) and s["fields"]["duration"] == "50 ms"
    names = {1: ["audio"], 2: ["left", "right"], 3: ["ch0", "ch1", "ch2"]}[channels]
    check_axes(s, [(c, "wav") for c in names], cols)
    (width, height), size = png_size(png)
    assert height >= 150 * channels and size > 5000  # one subplot per channel
    rc, out, err = run(capsys, path, "--json")
    [j] = json.loads(out)
    assert j["wav"] == {"channels": channels, "sample_rate": rate, "bits": bits, "encoding": encoding}
    assert [(a["min"], a["max"]) for a in j["axes"]] == [(min(c), max(c)) for c in cols]


@pytest.mark.parametrize(
    "data,reason",
    [
        (wav_header(PCM, 2, 8000, 16, block_align=2) + bytes(8), "block align is 2; 2 channels of 16 bits need 4"),
        (wav_header(PCM, 1, 8000, 16, byte_rate=1000) + bytes(8), "byte rate is 1000; 8000 Hz x 2 bytes is 16000"),
        (wav_header(PCM, 1, 8000, 16, data_size=100) + bytes(8), "data chunk says 100 bytes; the file holds 8"),
        (wav_header(PCM, 2, 8000, 16, data_size=6) + bytes(6), "not a whole number of 4-byte frames"),
        (wav_header(IEEE_FLOAT, 1, 8000, 64, data_size=8) + bytes(8), "64-bit float WAV is not taken"),
        (wav_header(7, 1, 8000, 8, data_size=8) + bytes(8), "format code 0x0007 is not taken"),
        (wav_header(PCM, 0, 8000, 16, data_size=0, block_align=0), "WAV has 0 channels"),
    ],
)
def test_inconsistent_wav_headers_are_refused_with_the_reason(tmp_path, capsys, data, reason):
    path = tmp_path / "bad.wav"
    path.write_bytes(data)
    rc, out, err = run(capsys, path)
    assert rc == 1 and out == ""
    assert err.startswith("%s: not a data acquisition message: not a valid WAV file: " % path) and reason in err, err


def test_format_is_sniffed_without_a_known_extension(tmp_path, firmware_files, capsys):
    w, files = firmware_files
    cbor_bin = tmp_path / "sample.bin"
    cbor_bin.write_bytes(files["cbor"].read_bytes())
    json_txt = tmp_path / "sample.txt"
    json_txt.write_bytes(files["json"].read_bytes())
    wav_dat = tmp_path / "sample"
    wav_file(wav_dat, 1, 8000, 100)
    rc, out, err = run(capsys, cbor_bin, json_txt, wav_dat, "--hmac-key", HMAC_KEY)
    assert (rc, err) == (0, "")
    s = parse(out)
    assert s[str(cbor_bin)]["fields"]["format"].startswith("CBOR data acquisition message")
    assert s[str(json_txt)]["fields"]["format"].startswith("JSON data acquisition message")
    assert s[str(wav_dat)]["fields"]["format"].startswith("WAV file")
    assert s[str(cbor_bin)]["fields"]["signature"] == s[str(json_txt)]["fields"]["signature"] == "valid"


def test_malformed_files_one_line_each_and_the_rest_still_read(tmp_path, firmware_files, capsys):
    w, files = firmware_files
    good = files["cbor"]
    raw = good.read_bytes()
    bad = {
        "garbage.bin": (b"\x00\x01hello", "unknown format: not CBOR, JSON or WAV (by extension or content)"),
        "empty.cbor": (b"", "file is empty"),
        "cut.cbor": (raw[:-10], "not valid CBOR: "),
        "trailing.cbor": (raw + b"\x00", "1 bytes follow the CBOR message"),
        "nofields.json": (b'{"payload": {}}', "missing field: protected"),
        "badjson.json": (b'{"protected": ', "not valid JSON: "),
        "rows.json": (
            json.dumps(
                {
                    "protected": {"ver": "v1", "alg": "none"},
                    "signature": "0" * 64,
                    "payload": {
                        "device_type": "T",
                        "interval_ms": 10,
                        "sensors": [{"name": "a", "units": "x"}, {"name": "b", "units": "x"}],
                        "values": [[1, 2], [3]],
                    },
                }
            ).encode(),
            "payload.values[1] has 1 values, expected 2",
        ),
        "notwav.wav": (b"RIFF\x00\x00\x00\x00WAVEjunk", "not a valid WAV file: "),
        # 8-bit PCM is read now (test_wav_formats_are_read); 12-bit is not a format Edge Impulse takes
        "twelve.wav": (
            wav_header(PCM, 1, 8000, 12) + b"\x00" * 20,
            "not a valid WAV file: 12-bit PCM WAV is not taken",
        ),
    }
    paths = []
    for name, (data, _) in bad.items():
        p = tmp_path / name
        p.write_bytes(data)
        paths.append(p)
    missing = tmp_path / "missing.cbor"
    rc, out, err = run(capsys, *paths, good, missing, "--hmac-key", HMAC_KEY)
    assert rc == 1
    assert list(parse(out)) == [str(good)]
    lines = err.splitlines()
    assert len(lines) == len(bad) + 1, err
    for line, p, (_, reason) in zip(lines, paths, bad.values()):
        assert line.startswith("%s: not a data acquisition message: %s" % (p, reason)), line
    assert lines[-1] == "%s: cannot read: No such file or directory" % missing


def test_json_output(firmware_files, tmp_path, capsys):
    w, files = firmware_files
    garbage = tmp_path / "x.cbor"
    garbage.write_bytes(b"\xa1")
    rc, out, err = run(capsys, "--json", files["cbor"], garbage, "--hmac-key", HMAC_KEY)
    assert rc == 1 and err.startswith("%s: not a data acquisition message" % garbage)
    good, bad = json.loads(out)
    assert bad["file"] == str(garbage) and bad["error"].startswith("not a data acquisition message")
    assert good["rows"] == ROWS and good["interval_ms"] == 10 and good["rate_hz"] == 100.0
    assert good["duration_ms"] == 1500 and good["signature"] == "valid" and good["format"] == "cbor"
    assert good["sensors"] == [{"name": n, "units": u} for n, u in IMU]
    for axis, col in zip(good["axes"], columns(w)):  # CBOR float32 values are exact: full precision agrees
        assert (axis["min"], axis["max"], axis["mean"]) == (min(col), max(col), statistics.fmean(col))


def png_size(path):
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR"
    return struct.unpack(">II", data[16:24]), len(data)


def test_plot_writes_a_png(firmware_files, tmp_path, capsys):
    w, files = firmware_files
    out_png = tmp_path / "idle.png"
    rc, out, err = run(capsys, files["cbor"], "--plot", out_png)
    assert (rc, err) == (0, "")
    assert "  plot: %s" % out_png in out.splitlines()
    (width, height), size = png_size(out_png)
    assert width >= 800 and height >= 500 and size > 20000  # 3 subplots drawn at 100 dpi

    # several files: one PNG each, named after the file
    wav = tmp_path / "noise.wav"
    wav_file(wav, 1, 16000, 1600)
    rc, out, err = run(capsys, files["cbor"], files["json"], wav, "--plot", tmp_path / "p.png")
    assert (rc, err) == (0, "")
    for name in ("idle.1.cbor", "idle.1.json", "noise.wav"):
        (width, height), size = png_size(tmp_path / ("p-%s.png" % name))
        assert width >= 800 and height >= 250 and size > 10000


def test_help_has_an_example(capsys):
    with pytest.raises(SystemExit) as e:
        uinspect.main(["--help"])
    assert e.value.code == 0
    assert "uingest inspect --hmac-key" in capsys.readouterr().out
    with pytest.raises(SystemExit) as e:
        uinspect.main([])
    assert e.value.code == 2


# --- Edge Impulse's DataForwarder


def forwarder_rows(n):
    return [[round(math.sin(i / 5) * 9.81, 4), (i % 17) * 0.125 - 1, 9.80665] for i in range(n)]


def check_forwarder_summary(summary, rows):
    f = summary["fields"]
    assert f["format"].startswith("JSON data acquisition message")
    assert (f["device_name"], f["device_type"]) == ("ac:87:a3:0a:2d:1b", "LINUX_FORWARDER")
    assert f["sensors"] == "accX (m/s2), accY (m/s2), accZ (m/s2)"
    assert f["rows"] == str(len(rows)) and f["interval_ms"] == "10 (100 Hz)"
    assert f["duration"] == "%d ms" % (10 * len(rows))
    assert f["signature"] == "valid"
    assert f["iat"].isdigit()
    cols = [[r[i] for r in rows] for i in range(3)]
    check_axes(summary, [("accX", "m/s2"), ("accY", "m/s2"), ("accZ", "m/s2")], cols)


def test_dataforwarder_fixture(capsys):
    rc, out, err = run(capsys, FIXTURE, "--hmac-key", FIXTURE_KEY)
    assert (rc, err) == (0, "")
    check_forwarder_summary(parse(out)[FIXTURE], forwarder_rows(25))
    rc, out, err = run(capsys, FIXTURE, "--hmac-key", "not-the-key")
    assert rc == 1 and "INVALID" in err


def test_dataforwarder_live(tmp_path, capsys):
    node = shutil.which("node")
    if node is None or not os.path.isdir(EI_LINUX):
        pytest.fail("node and edge-impulse-linux (in .venv/node) are needed: run `make test`")
    data_dir = tmp_path / "data"
    rows = forwarder_rows(60)
    srv = ServerThread(create_app(str(data_dir), api_key="ei_k", hmac_key=HMAC_KEY)).start()
    try:
        job = {
            "server": srv.url,
            "apiKey": "ei_k",
            "hmacKey": HMAC_KEY,
            "deviceId": "ac:87:a3:0a:2d:1b",
            "deviceType": "LINUX_FORWARDER",
            "sensors": [{"name": n, "units": "m/s2"} for n in ("accX", "accY", "accZ")],
            "intervalMs": 10,
            "uploads": [{"category": "training", "label": "idle", "filename": "idle.01", "values": rows}],
        }
        proc = subprocess.run(
            [node, FORWARD_JS, EI_LINUX],
            input=json.dumps(job),
            capture_output=True,
            text=True,
            env=dict(os.environ, EI_HOST="localhost"),
            timeout=30,
        )
    finally:
        srv.stop()
    assert proc.returncode == 0, proc.stderr
    [result] = json.loads(proc.stdout)
    assert result["ok"], result
    path = str(data_dir / "training" / result["body"])
    rc, out, err = run(capsys, path, "--hmac-key", HMAC_KEY, "--plot", tmp_path / "fwd.png")
    assert (rc, err) == (0, "")
    check_forwarder_summary(parse(out)[path], rows)
    assert png_size(tmp_path / "fwd.png")[1] > 10000


def test_rounding_to_4_significant_digits():
    assert [uinspect.num(x) for x in (0.123456, 123456, 1.5e-7, -9.80665, 16000, 0.0625, 2e20)] == [
        "0.1235",
        "123500",
        "1.5e-07",
        "-9.807",
        "16000",
        "0.0625",
        "2e+20",
    ]


def test_module_runs_as_a_program(firmware_files):
    w, files = firmware_files
    proc = subprocess.run(
        [sys.executable, "-m", "uingest_tools.inspect_samples", str(files["cbor"]), "--hmac-key", "wrong"],
        capture_output=True,
        text=True,
        timeout=30,
        stdin=subprocess.DEVNULL,
    )
    assert proc.returncode == 1
    assert proc.stderr == "%s: signature INVALID (does not match the HMAC key)\n" % files["cbor"]
    assert "  signature: INVALID (does not match the HMAC key)" in proc.stdout.splitlines()
