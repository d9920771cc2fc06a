"""`make demo`, the README's main job, end to end in temp folders."""

from helpers import read_index
from uingest_tools import demo


def test_demo_runs_the_app_and_stores_both_labels_and_one_recording_asked_for(tmp_path, capsys):
    data = tmp_path / "dataset"
    assert demo.main([str(data), str(tmp_path / "device")]) == 0
    out = capsys.readouterr().out
    assert "label: now wave" in out and "stored this run, per label" in out
    assert '/start-sampling: {"success": true' in out
    records = read_index(data)
    streamed = [rec["label"] for rec in records if rec["category"] == "training"]
    assert len(streamed) == 10 and set(streamed) == {"idle", "wave"}
    # the sample the collector asked the board for, through its Studio-compatible API
    [asked] = [rec for rec in records if rec["category"] == "testing"]
    assert asked["label"] == "knock" and asked["rows"] == 100 and asked["signature"] == "valid"
