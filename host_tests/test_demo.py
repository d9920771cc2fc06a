"""`make demo`, the README's main job, end to end in temp folders."""

import json
import subprocess
import urllib.parse
import urllib.request

from conftest import ROOT
from helpers import read_index
from uingest_tools import demo


def test_demo_runs_the_app_and_stores_both_labels_and_one_recording_asked_for(tmp_path, capsys, monkeypatch):
    looked = []  # what the dashboard answered while the demo kept the collector running (make demo KEEP=1)

    def look(server, url):
        parts = urllib.parse.urlsplit(url)
        key = urllib.parse.parse_qs(parts.query)["key"][0]
        base = "%s://%s" % (parts.scheme, parts.netloc)
        with urllib.request.urlopen(base + "/api/dashboard/summary?key=" + key, timeout=10) as r:
            looked.append(json.load(r))
        assert server.poll() is None  # still running after its URL was printed

    monkeypatch.setattr(demo, "wait_until_stopped", look)
    data = tmp_path / "dataset"
    assert demo.main(["--keep", str(data), str(tmp_path / "device")]) == 0
    out = capsys.readouterr().out
    assert "label: now wave" in out and "stored this run, per label" in out
    assert '/start-sampling: {"success": true' in out
    records = read_index(data)
    streamed = [rec["label"] for rec in records if rec["category"] == "training"]
    assert len(streamed) == 10 and set(streamed) == {"idle", "wave"}
    # the sample the collector asked the board for, through its Studio-compatible API
    [asked] = [rec for rec in records if rec["category"] == "testing"]
    assert asked["label"] == "knock" and asked["rows"] == 100 and asked["signature"] == "valid"
    # it ends with the dashboard's URL holding the demo key, the collector still serving what was stored
    last = out.rstrip("\n").splitlines()[-1]
    assert "/?key=%s " % demo.DEMO_API_KEY in last and "Ctrl-C" in last, last
    assert [summary["total"] for summary in looked] == [11]


def test_without_keep_the_last_line_says_how_to_keep_the_collector_running():
    line = demo.dashboard_line("http://127.0.0.1:4810", keep=False)
    assert line.startswith("demo: dashboard: http://127.0.0.1:4810/?key=%s " % demo.DEMO_API_KEY)
    assert "make demo KEEP=1" in line


def test_first_time_setup_says_what_it_installs():
    # make -n: the recipes printed, nothing run; -B: as on a fresh clone, where neither stamp exists yet
    proc = subprocess.run(
        ["make", "-n", "-B", ".venv/.installed", ".venv/node/.installed"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert proc.returncode == 0, proc.stderr
    said = [line for line in proc.stdout.splitlines() if line.startswith("echo ")]
    assert len(said) == 2, proc.stdout
    assert "requirements-dev.txt" in said[0] and "MicroPython unix port" in said[0] and "-e ." in said[0]
    assert "edge-impulse-linux" in said[1] and ".venv/node" in said[1]
