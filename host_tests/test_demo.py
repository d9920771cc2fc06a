"""`make demo`, the README's main job, end to end in temp folders."""

from helpers import read_index
from uingest_tools import demo


def test_demo_runs_the_app_and_stores_both_labels(tmp_path, capsys):
    data = tmp_path / "dataset"
    assert demo.main([str(data), str(tmp_path / "device")]) == 0
    out = capsys.readouterr().out
    assert "label: now wave" in out and "stored this run, per label" in out
    labels = [rec["label"] for rec in read_index(data)]
    assert len(labels) == 10 and set(labels) == {"idle", "wave"}
