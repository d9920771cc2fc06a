"""A quick run of `uingest bench`, so the benchmark programs cannot rot.
The figures are not judged here: they belong in the README."""

import subprocess
import sys

from uingest_tools import bench


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
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    out = proc.stdout
    # micropython-lib's cbor2 and hmac are optional: the row when they are installed, else the line saying how
    baseline = "micropython-lib cbor2 + hmac" if bench.find_baselines() else bench.BASELINE_HINT
    for needle in (
        baseline,
        "json.dumps + uingest hmac",
        "16 kHz int16 audio",
        "minimal responder",
        "uingest serve",
        "sampler at 100 Hz",
        "streamed from flash and uploaded",
        "run in place from ROMFS",
        "whole app (main.py on the unix-sim board",
        "round trip (a latency proxy)",
        "uingest serve: 2 devices x 2",
    ):
        assert needle in out, needle
