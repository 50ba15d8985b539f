"""Every long command resumes: ``meshprop reproduce structure``, ``fashion-mnist``, ``mnist1d``,
``iris`` and ``toys`` killed (SIGKILL, a real process) once they saved a unit of work, continued
with ``--resume``, write the results of the run never interrupted; the run folder rules they
share with
``meshprop train`` (a second run refused, ``--resume`` options checked, nothing written before
the inputs are checked).  ``meshprop timeseries``'s own kill test is in test_timeseries.py."""

from __future__ import annotations

import functools
import json

import pytest

from killing import kill_when
from meshprop.cli import main
from meshprop.experiment import mnist1d
from meshprop.experiment.compare import ConfigResult
from test_fashion_reproduce import _write_tiny_dataset

STRUCTURE = ["reproduce", "structure", "--datasets", "iris", "--densities", "1", "0.5",
             "--methods", "static", "--seeds", "2", "--hidden", "3", "--epochs", "3",
             "--no-progress"]  # fmt: skip


def _units(out) -> int:
    try:
        return len(json.loads((out / "units.json").read_text())["units"])
    except (OSError, ValueError, KeyError):
        return 0


@pytest.mark.subprocess
def test_structure_killed_and_resumed_equals_the_uninterrupted_sweep(tmp_path) -> None:
    out = tmp_path / "killed"
    status = kill_when([*STRUCTURE, "--out", str(out)], lambda: _units(out) >= 1, tmp_path / "log")
    assert status == -9 and 1 <= _units(out) < 4
    assert not json.loads((out / "run.json").read_text())["complete"]
    assert main([*STRUCTURE, "--out", str(out), "--resume"]) == 0
    assert main([*STRUCTURE, "--out", str(tmp_path / "whole")]) == 0
    for name in ("structure.json", "structure.md"):
        assert (out / name).read_bytes() == (tmp_path / "whole" / name).read_bytes(), name
    manifest = json.loads((out / "run.json").read_text())
    assert manifest["complete"] and manifest["command"] == "reproduce structure"
    assert set(manifest["files"]) == {
        "config.json", "units.json", "structure.json", "structure.md", "structure-iris.png"
    }  # fmt: skip


@pytest.mark.subprocess
def test_fashion_killed_and_resumed_equals_the_uninterrupted_run(tmp_path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    _write_tiny_dataset(data)
    argv = ["reproduce", "fashion-mnist", "--runs", "2", "--epochs", "1", "--cae-epochs", "1",
            "--data-dir", str(data), "--cache-dir", str(tmp_path / "cache"),
            "--no-progress"]  # fmt: skip
    out = tmp_path / "killed"
    # a new interpreter: the autoencoder trains on two threads (tests/killing.py)
    status = kill_when(
        [*argv, "--out", str(out)], lambda: _units(out) >= 1, tmp_path / "log", fresh=True
    )
    assert status == -9 and 1 <= _units(out) < 8
    assert main([*argv, "--out", str(out), "--resume"]) == 0
    assert main([*argv, "--out", str(tmp_path / "whole")]) == 0
    resumed = json.loads((out / "details.json").read_text())
    whole = json.loads((tmp_path / "whole" / "details.json").read_text())
    assert (out / "results.json").read_bytes() == (tmp_path / "whole" / "results.json").read_bytes()
    for a, b in zip(resumed["configs"], whole["configs"], strict=True):
        assert a["max_weight_difference"] == b["max_weight_difference"]
        assert a["compare_accuracy"] == b["compare_accuracy"]


def test_sweep_folder_rules(tmp_path, capsys) -> None:
    out = tmp_path / "sweep"
    argv = [*STRUCTURE[:-5], "--seeds", "1", "--epochs", "1", "--hidden", "2", "--no-progress"]
    assert main([*argv, "--out", str(out)]) == 0
    first = (out / "structure.json").read_bytes()
    assert main([*argv, "--out", str(out)]) == 2
    assert "already holds a finished run" in capsys.readouterr().err
    assert main([*argv, "--out", str(out), "--resume", "--seeds", "2"]) == 2
    assert "--seeds 2 (the run: 1)" in capsys.readouterr().err
    # --resume of a finished sweep: every unit is saved, nothing is trained, the same files
    assert main(["reproduce", "structure", "--out", str(out), "--resume", "--no-progress"]) == 0
    assert (out / "structure.json").read_bytes() == first
    # a bad setting in a --config file names the key and the file; nothing is written
    config = tmp_path / "sweep.toml"
    config.write_text("densities = [1.0, 1.5]\n")
    fresh = tmp_path / "fresh"
    assert main(["reproduce", "structure", "--config", str(config), "--out", str(fresh)]) == 2
    assert f"densities (in {config}) must be all in (0, 1]" in capsys.readouterr().err
    assert not fresh.exists()


def test_missing_fashion_data_writes_nothing(tmp_path, capsys) -> None:
    out = tmp_path / "o"
    argv = ["reproduce", "fashion-mnist", "--data-dir", str(tmp_path / "none"), "--out", str(out)]
    assert main(argv) == 2
    assert "make data" in capsys.readouterr().err and not out.exists()


def test_baselines_saved_by_an_interrupted_run_are_not_trained_again(monkeypatch) -> None:
    """``reproduce mnist1d`` resumes through the same memo as fashion-mnist's runs: a unit found
    in the saved units is taken as it is."""
    calls = []
    monkeypatch.setitem(
        mnist1d.BASELINES, "logreg", lambda data, seed: calls.append(seed) or (0.5, 7)
    )
    saved = {"logreg/seed-0": {"accuracy": 0.25, "params": 7, "seconds": 1.0}}

    def memo(key, compute):
        if key not in saved:
            saved[key] = compute()
        return saved[key]

    (result,) = mnist1d.run_baselines(None, 2, names=("logreg",), memo=memo)
    assert calls == [1] and isinstance(result, ConfigResult)
    assert result.accuracies == [0.25, 0.5] and set(saved) == {"logreg/seed-0", "logreg/seed-1"}


#: the sweeps killed after their first unit: the command (each unit a few tenths of a second, so
#: that the kill lands before the last one ends), its number of units and its results
SWEEPS = {
    "mnist1d": (["mnist1d", "--samples", "500", "--runs", "1", "--epochs", "15", "--compare",
                 "none", "--baselines"], 4, ("results.json", "results.md")),
    "iris": (["iris", "--seeds", "3", "--epochs", "15", "--compare", "none"], 3,
             ("iris.json", "iris.md")),
    "toys": (["toys", "--sets", "moons", "circles", "--epochs", "3", "--frames", "1"], 2,
             ("summary.json", "summary.md")),
}  # fmt: skip


@pytest.mark.subprocess
@pytest.mark.slow
@pytest.mark.parametrize("sweep", list(SWEEPS))
def test_a_sweep_killed_after_a_unit_resumes_to_the_same_results(tmp_path, monkeypatch, sweep):
    """``meshprop reproduce SWEEP`` killed (SIGKILL, a real process) once it saved its first
    unit: ``--resume`` runs the units not saved and writes the numbers of the run never
    interrupted, bit for bit (the wall times aside)."""
    argv, units, outputs = SWEEPS[sweep]
    command = ["reproduce", *argv, "--no-progress"]
    out, whole = tmp_path / "killed", tmp_path / "whole"
    status = kill_when([*command, "--out", str(out)], lambda: _units(out) >= 1, tmp_path / "log")
    assert status == -9 and 1 <= _units(out) < units, (tmp_path / "log").read_text()
    assert not json.loads((out / "run.json").read_text())["complete"]
    monkeypatch.setattr(mnist1d, "load", functools.cache(mnist1d.load))  # generated once here
    assert main([*command, "--out", str(out), "--resume"]) == 0
    assert main([*command, "--out", str(whole)]) == 0
    for name in outputs:
        got, expected = (out / name).read_text(), (whole / name).read_text()
        if name.endswith(".json"):
            got, expected = _without_times(json.loads(got)), _without_times(json.loads(expected))
        else:
            got, expected = _mask_times(got), _mask_times(expected)
        assert got == expected, name
    manifest = json.loads((out / "run.json").read_text())
    assert manifest["complete"] and manifest["command"] == f"reproduce {sweep}"
    assert set(manifest["files"]) == set(json.loads((whole / "run.json").read_text())["files"])


def _without_times(document):
    if isinstance(document, dict):
        return {k: _without_times(v) for k, v in document.items() if "time" not in k}
    if isinstance(document, list):
        return [_without_times(v) for v in document]
    return document


def _mask_times(text: str) -> str:
    import re

    return re.sub(r"\b\d+(\.\d+)? s\b", "T s", text)  # "12.3 s", and "wall time 2 s"
