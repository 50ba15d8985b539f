"""Run logs: metrics.csv every epoch, TensorBoard with --tensorboard, the provenance in
config.json and at the start of the output, `meshprop --version` and `meshprop.__version__`."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from importlib.metadata import version

import pytest
import torch

import meshprop as mp
from meshprop.cli import main
from meshprop.runs.logs import EpochLog, git_revision, provenance

TRAIN = ["train", "--dataset", "iris", "--hidden", "3", "--epochs", "3", "--no-progress"]


@pytest.mark.slow
def test_metrics_csv_and_provenance_of_a_run(tmp_path, capsys):
    out = tmp_path / "run"
    assert main([*TRAIN, "--val-size", "0.2", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    metrics = json.loads((out / "metrics.json").read_text())
    with open(out / "metrics.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    history = metrics["history"]["epochs"]
    assert len(rows) == len(history) == 3
    for row, record in zip(rows, history, strict=True):
        assert set(row) == set(record)
        for key, value in record.items():
            assert float(row[key]) == value  # repr of a float round-trips exactly
    config = json.loads((out / "config.json").read_text())
    info = config["provenance"]
    assert info["seed"] == config["seed"] == 0
    assert info["torch"] == torch.__version__ and info["meshprop"] == version("meshprop")
    assert info["git_revision"] == git_revision()
    first_line = printed.splitlines()[0]
    assert first_line.startswith(f"meshprop {mp.__version__}, torch {torch.__version__}")
    assert "seed 0" in first_line
    # the saved config.json is still a valid --config file (the provenance is ignored)
    again = tmp_path / "again"
    assert (
        main(["train", "--config", str(out / "config.json"), "--no-progress", "--out", str(again)])
        == 0
    )
    assert (again / "metrics.csv").read_text() == (out / "metrics.csv").read_text()


def test_git_revision_is_none_outside_a_checkout(tmp_path):
    assert git_revision(tmp_path) is None
    revision = git_revision()
    assert revision is None or len(revision.removesuffix("+dirty")) == 40
    assert provenance(7)["seed"] == 7


@pytest.mark.slow
def test_tensorboard_writes_events(tmp_path):
    pytest.importorskip("tensorboard", reason="tensorboard: pip install 'meshprop[tensorboard]'")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    out = tmp_path / "run"
    assert main([*TRAIN, "--tensorboard", "--out", str(out)]) == 0
    events = EventAccumulator(str(out / "tensorboard"))
    events.Reload()
    losses = [e.value for e in events.Scalars("batch_loss")]
    history = json.loads((out / "metrics.json").read_text())["history"]["epochs"]
    assert losses == pytest.approx([r["batch_loss"] for r in history], rel=1e-6)  # float32 log
    assert [e.step for e in events.Scalars("batch_loss")] == [1, 2, 3]


def test_tensorboard_missing_is_one_clear_error(tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "tensorboard", None)  # import tensorboard → ImportError
    with pytest.raises(ValueError, match=r"pip install 'meshprop\[tensorboard\]'"):
        EpochLog(tmp_path, tensorboard=True)
    assert main([*TRAIN, "--tensorboard", "--out", str(tmp_path / "r")]) == 2
    assert "tensorboard package" in capsys.readouterr().err


@pytest.mark.subprocess
def test_version_from_package_metadata(capsys):
    assert mp.__version__ == version("meshprop")
    with pytest.raises(SystemExit) as stop:
        main(["--version"])
    assert stop.value.code == 0
    assert capsys.readouterr().out.strip() == f"meshprop {version('meshprop')}"
    result = subprocess.run(
        [sys.executable, "-m", "meshprop", "--version"], capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == f"meshprop {version('meshprop')}"


@pytest.mark.slow
def test_tensorboard_after_a_resume_shows_each_epoch_once(tmp_path):
    """A run killed after logging epochs 4 and 5 but saving its state at epoch 3 logs 4 and 5
    again when resumed: TensorBoard shows every epoch once, with the resumed run's values."""
    pytest.importorskip("tensorboard", reason="tensorboard: pip install 'meshprop[tensorboard]'")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    def record(epoch: int, value: float) -> dict[str, float]:
        return {"epoch": float(epoch), "batch_loss": value}

    killed = EpochLog(tmp_path, tensorboard=True)
    for epoch in range(1, 6):
        killed(epoch, None, record(epoch, 1.0 / epoch))
    killed.close()  # (a SIGKILL leaves the flushed events behind just the same)
    saved = [record(epoch, 1.0 / epoch) for epoch in range(1, 4)]
    resumed = EpochLog(tmp_path, tensorboard=True)
    resumed.restore(type("History", (), {"records": saved})())
    for epoch in range(4, 7):
        resumed(epoch, None, record(epoch, 10.0 + epoch))
    resumed.close()
    events = EventAccumulator(str(tmp_path / "tensorboard"))
    events.Reload()
    scalars = events.Scalars("batch_loss")
    assert [e.step for e in scalars] == [1, 2, 3, 4, 5, 6]
    assert [e.value for e in scalars] == pytest.approx([1.0, 0.5, 1 / 3, 14.0, 15.0, 16.0])
    with open(tmp_path / "metrics.csv", newline="") as handle:
        assert [float(row["epoch"]) for row in csv.DictReader(handle)] == [1, 2, 3, 4, 5, 6]
