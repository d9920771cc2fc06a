"""A quick run of `uingest bench`, so the benchmark programs cannot rot.
The figures are not judged here: they belong in the README."""

import io
import os
import pty
import re
import subprocess
import sys
import tempfile
import threading
import time

import pytest

from uingest_tools import bench
from uingest_tools.bundle import build


def run_on_a_terminal(args, timeout):
    """args with stderr on a pseudo-terminal (as in a shell: the progress bar is drawn there) and stdout a pipe read
    line by line: (exit status, stdout, stderr, [seconds after the start at which each stdout line arrived])."""
    master, slave = pty.openpty()
    start = time.monotonic()
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=slave, text=True)
    os.close(slave)
    chunks = []

    def drain():  # the terminal's buffer is small: a bar not read would stop the bench
        while True:
            try:
                chunk = os.read(master, 4096)
            except OSError:  # EIO: the bench closed its end
                return
            if not chunk:
                return
            chunks.append(chunk)

    reader = threading.Thread(target=drain, daemon=True)
    reader.start()
    killer = threading.Timer(timeout, proc.kill)
    killer.start()
    lines, arrived = [], []
    try:
        for line in proc.stdout:
            lines.append(line)
            arrived.append(time.monotonic() - start)
        rc = proc.wait()
    finally:
        killer.cancel()
        reader.join(10)
        os.close(master)
    return rc, "".join(lines), b"".join(chunks).decode(errors="replace"), arrived


def test_bench_runs_and_prints_every_table():
    rc, out, err, arrived = run_on_a_terminal(
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
        timeout=300,
    )
    assert rc == 0, err[-2000:]
    # each line printed as it is measured: the table's head long before the last serve line (the open-loop runs
    # alone take 2 s of wall-clock time after it); a progress bar on the terminal, cleared at the end
    assert out.startswith("uingest bench, ") and arrived[-1] - arrived[0] > 2, arrived
    bars = re.findall(r"bench \[[#.]{30}\] (\d+)/(\d+)", err)
    assert bars and bars[0][0] == "0" and bars[-1][0] == bars[-1][1], err[-2000:]
    assert err.split("\r")[-1].strip() == "", err[-500:]
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
        r"10 devices' small posts meanwhile: (?:p50 ([\d.]+) ms p99 ([\d.]+) ms|none overlapped it)",
        out,
    )
    assert large, out[-2000:]
    assert large.group(1) == "2" and large.group(2) == "200"
    # a 2 MB window may be stored before any small post overlaps it (it printed nan for them)
    assert float(large.group(4)) < 4 and (large.group(5) is None or 0 < float(large.group(5)) <= float(large.group(6)))


class Terminal(io.StringIO):
    def isatty(self):
        return True


def test_each_result_is_printed_as_soon_as_it_is_measured_with_a_bar_on_a_terminal():
    out, err = Terminal(), Terminal()
    seen = []  # (step, what stdout held, the bar on the terminal) while each step measured

    def step(name, lines):
        def measure():
            seen.append((name, out.getvalue(), err.getvalue().rsplit("\r", 1)[-1].strip()))
            return lines

        return name, measure

    bench.run_steps([step("first", ["first line"]), step("second", ["second line", ""]), step("third", [])], out, err)
    assert seen[0][:2] == ("first", "") and seen[0][2].endswith("] 0/3 first")
    assert seen[1][:2] == ("second", "first line\n") and seen[1][2].endswith("] 1/3 second")
    assert seen[2][:2] == ("third", "first line\nsecond line\n\n") and seen[2][2].endswith("] 2/3 third")
    assert out.getvalue() == "first line\nsecond line\n\n"
    assert "] 3/3" in err.getvalue() and err.getvalue().split("\r")[-1].strip() == ""  # cleared at the end
    # not on a terminal: no bar, the same lines
    out, err = io.StringIO(), io.StringIO()
    bench.run_steps([step("first", ["first line"])], out, err)
    assert out.getvalue() == "first line\n" and err.getvalue() == ""


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
