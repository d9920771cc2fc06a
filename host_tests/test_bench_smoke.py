"""A quick run of `uingest bench`, so the benchmark programs cannot rot.
The figures are not judged here: they belong in the README."""

import re
import subprocess
import sys
import tempfile

import pytest

from uingest_tools import bench
from uingest_tools.bundle import build


def test_bench_runs_and_prints_every_table():
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "uingest_tools.cli",
            "bench",
            "--repeats",
            "3",
            "--uploads",
            "5",
            "--sampler-seconds",
            "1",
            "--link-windows",
            "3",
            "--devices",
            "2",
            "--device-windows",
            "2",
            "--load-devices",
            "4",
            "--idle-connections",
            "6",
            "--large-window-mb",
            "2",
            "--app-windows",
            "2",
            "--open-loop-rate",
            "40",
            "--open-loop-seconds",
            "1",
            # the heap searches of the whole app with remote management and TLS take minutes: `make bench` runs
            # them; remote management and TLS themselves are test_remote's and test_tls's
            "--quick",
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    out = proc.stdout
    # micropython-lib's cbor2 and hmac are optional: the row when they are installed, else the line saying how
    baselines = bench.find_baselines()
    baseline = "micropython-lib cbor2 + hmac" if baselines else bench.BASELINE_HINT
    app_path = "where the app runs it" if baselines and bench.find_requests(baselines) else bench.REQUESTS_HINT
    for needle in (
        baseline,
        app_path,
        "json.dumps + uingest hmac",
        "16 kHz int16 audio",
        "minimal responder",
        "uingest serve",
        "sampler at 100 Hz",
        "sampler at 1000 Hz",
        "streamed from flash and uploaded",
        "run in place from ROMFS",
        "whole app (main.py on the unix-sim board",
        "round trip (a latency proxy)",
        "uingest serve: 2 devices x 2",
    ):
        assert needle in out, needle

    # the serve-load lines: 2 devices, then 4, then 4 with 6 idle connections held open
    load = re.compile(
        r"uingest serve: (\d+) devices x (\d+) signed 200x3 windows, a kept-alive connection each \((\d+) opened\)"
        r"(?:, data folder on disk)?: "
        r"(\d+) of (\d+) accepted, (\d+) windows/s, latency p50 ([\d.]+) ms p99 ([\d.]+) ms, server peak RSS (\d+) MB"
        r"(?:.*with (\d+) idle connections held open \((\d+) silent, (\d+) kept alive after one request\): "
        r"(\d+) held by the server at the start, (\d+) open at the end \((\d+) held by the server\), "
        r"\d+ re-opened, (\d+) refused)?"
    )
    runs = [m.groups() for m in load.finditer(out)]
    assert [(r[0], r[9]) for r in runs] == [("2", None), ("4", None), ("4", "6"), ("4", None)], out[-3000:]
    assert "opened), data folder on disk: " in out
    for devices, per_device, opened, accepted, sent, rate, p50, p99, rss, *_ in runs:
        assert int(sent) == int(devices) * int(per_device) == int(accepted)
        assert int(opened) == int(devices)  # each device's connection stayed kept alive
        assert int(rate) > 0 and 0 < float(p50) <= float(p99) and int(rss) > 0
    total, silent, kept, at_start, at_end, held_at_end, refused = map(int, runs[2][9:])
    assert (total, silent, kept, refused) == (6, 3, 3, 0)
    assert at_start == total and at_end == total and held_at_end == total

    # the open-loop lines: the 4 devices at 10 windows/s each for 1 s, in memory then on disk
    paced = re.compile(
        r"uingest serve, open loop: (\d+) devices each posting ([\d.]+) signed 200x3 windows/s on a kept-alive "
        r"connection \((\d+) opened\)(, data folder on disk)?: (\d+) windows/s offered, (\d+) achieved \((\d+) of "
        r"(\d+) accepted\), latency from the time each was due p50 ([\d.]+) ms p99 ([\d.]+) ms max ([\d.]+) ms, "
        r"\d+ sent late, server peak RSS (\d+) MB"
    )
    paced_runs = [m.groups() for m in paced.finditer(out)]
    assert [(r[0], r[1], r[3]) for r in paced_runs] == [("4", "10", None), ("4", "10", ", data folder on disk")], out
    for _, _, opened, _, offered, achieved, accepted, sent, p50, p99, peak, rss in paced_runs:
        assert opened == "4" and offered == "40" and accepted == sent == "40" and int(achieved) > 0
        assert 0 <= float(p50) <= float(p99) <= float(peak) and int(rss) > 0

    large = re.search(
        r"uingest serve: one (\d+) MB float32 window \(status (\d+)\) stored in [\d.]+ s, "
        r"the server grew by (-?\d+) MB \(([\d.-]+)x the body\); "
        r"10 devices' small posts meanwhile: p50 ([\d.]+) ms p99 ([\d.]+) ms",
        out,
    )
    assert large, out[-2000:]
    assert large.group(1) == "2" and large.group(2) == "200"
    assert float(large.group(4)) < 4 and 0 < float(large.group(5)) <= float(large.group(6))


def test_the_app_path_row_runs_when_its_baselines_are_there():
    """The app's per-window path against cbor2 + hmac + requests, a few windows: the row's shape, not its figures."""
    baselines = bench.find_baselines()
    if baselines is None or bench.find_requests(baselines) is None:
        pytest.skip(bench.REQUESTS_HINT)
    with tempfile.TemporaryDirectory() as tmp:
        build(tmp, march="host")
        line = bench.app_path_line(tmp, baselines, windows=3, repeats=1)
    m = re.search(
        r"the app's path .* (\d+) windows/s; micropython-lib cbor2 \+ hmac \+ (u?requests) \(.*\) (\d+) windows/s: "
        r"([\d.]+)x \(target 20x\); without the network: (\d+) vs (\d+) windows/s",
        line,
    )
    assert m, line
    assert all(float(m.group(k)) > 0 for k in (1, 3, 4, 5, 6)), line
    assert "cbor2.dumps with the placeholder" in line and ".post " in line, line
