"""``meshprop reproduce online``: the grid read from the method registry, equal-time cells,
the table and plot, resuming cell by cell, and what it refuses (tiny grids)."""

from __future__ import annotations

import json
import os
import signal

import pytest

import meshprop as mp
from meshprop.cli import main
from meshprop.commands import online_study
from meshprop.commands.online_study import StudyConfig, cell_config, cells_of, method_labels, solved
from meshprop.runs.online import run_online
from meshprop.runs.online_config import OnlineConfig

TINY = ["--lengths", "2", "--seeds", "1", "--budget", "0.02", "--max-ticks", "40",
        "--test-ticks", "20"]  # fmt: skip


def test_the_methods_are_the_registry_s_online_ones_and_full_bptt() -> None:
    labels = method_labels()
    expected = [m for m in mp.ONLINE_METHODS if m != "tbptt"]
    assert set(expected) <= set(labels) and labels[-1] == "bptt"
    if "tbptt" in mp.ONLINE_METHODS:
        assert {"tbptt-half", "tbptt-full"} <= set(labels)
    assert len(labels) == len(mp.ONLINE_METHODS) + 2  # tbptt twice, and full bptt


def test_a_cell_sets_the_task_s_length_and_the_tbptt_windows() -> None:
    recall = cell_config("delayed-recall", 40, "tbptt-half", 1, 500)
    assert (recall.delay, recall.truncation, recall.seed) == (40, 20, 1)
    assert (recall.topology, recall.hidden) == ("chain", 60)  # the task's default network
    assert cell_config("copy", 20, "tbptt-full", 0, 500).truncation == 20
    assert cell_config("adding", 10, "fop", 0, 500).length == 10
    mg = cell_config("mackey-glass", 20, "bptt", 0, 500)
    assert (mg.horizon, mg.method, mg.start) == (20, "bptt", "linear")


def test_a_time_budget_stops_training() -> None:
    args = OnlineConfig(delay=2, train_ticks=50, test_ticks=20)
    assert run_online(args, progress=False, budget=0.0)[0].metrics["train_ticks"] == 0
    assert run_online(args, progress=False, budget=60.0)[0].metrics["train_ticks"] == 50


def test_solved_follows_the_stated_bars() -> None:
    def m(metric, value, **baselines):
        return {"metric": metric, f"test_{metric}": value, "baselines": baselines}

    assert solved(m("accuracy", 0.95, chance=0.5)) and not solved(m("accuracy", 0.94, chance=0.5))
    assert solved(m("mse", 0.01, mean=0.16)) and not solved(m("mse", 0.02, mean=0.16))
    assert solved(m("nmse", 1e-6, persistence=0.02, ridge_ar5=2e-6))
    assert not solved(m("nmse", 3e-6, persistence=0.02, ridge_ar5=2e-6))


@pytest.mark.parametrize(
    ("extra", "message"),
    [(["--methods", "rtrl"], "unknown method 'rtrl'"), (["--budget", "0"], "--budget must be")],
)
def test_bad_grids_are_refused_before_any_cell(tmp_path, capsys, extra, message) -> None:
    assert main(["reproduce", "online", *TINY, *extra, "--out", str(tmp_path / "s")]) != 0
    assert message in capsys.readouterr().err
    assert not (tmp_path / "s" / "results.json").exists()


def test_reproduce_online_one_cell(tmp_path, capsys) -> None:
    out = tmp_path / "one"
    argv = ["reproduce", "online", *TINY, "--tasks", "copy", "--methods", "snap", "--out",
            str(out)]  # fmt: skip
    assert main(argv) == 0
    (record,) = json.loads((out / "results.json").read_text())
    assert record["cell"] == ["copy", 2, "snap", 0] and record["method"] == "snap"
    assert {"test_accuracy", "baselines", "ticks_per_second"} <= set(record)
    assert "| 2 | " in (out / "table.md").read_text() and (out / "study.png").exists()
    capsys.readouterr()


@pytest.mark.slow
def test_reproduce_online_tiny_grid_and_resume(tmp_path, capsys) -> None:
    out = tmp_path / "study"
    argv = ["reproduce", "online", *TINY, "--tasks", "delayed-recall", "adding",
            "--methods", "fop", "tbptt-half", "--out", str(out)]  # fmt: skip
    assert main(argv) == 0
    results = json.loads((out / "results.json").read_text())
    assert [r["cell"] for r in results] == [
        ["delayed-recall", 2, "fop", 0], ["delayed-recall", 2, "tbptt-half", 0],
        ["adding", 2, "fop", 0], ["adding", 2, "tbptt-half", 0],
    ]  # fmt: skip
    assert all(r["budget"] == 0.02 and r["train_ticks"] <= 40 for r in results)
    table = (out / "table.md").read_text()
    assert "**delayed-recall** (test accuracy; n = delay)" in table and "| 2 | " in table
    assert "chance 0.5" in table and "mean " in table and "/s)" in table
    assert (out / "study.png").stat().st_size > 0
    # --resume keeps the finished cells (one marked here) and runs only the new seed
    units = json.loads((out / "units.json").read_text())
    (first,) = [u for u in units["units"].values() if u["cell"] == results[0]["cell"]]
    first["test_accuracy"] = 0.125
    (out / "units.json").write_text(json.dumps(units))
    more = [a if a != "1" else "2" for a in argv]  # --seeds 2
    assert main([*more, "--resume"]) == 0
    resumed = json.loads((out / "results.json").read_text())
    assert len(resumed) == 8 and resumed[0]["test_accuracy"] == 0.125
    assert sorted(r["cell"][3] for r in resumed[4:]) == [1, 1, 1, 1]
    assert "4 cells taken from the run's saved units" in (out / "table.md").read_text()
    # another budget is another study: nothing is reused
    other = [a if a != "0.02" else "0.03" for a in argv]
    assert main([*other, "--resume"]) == 0
    assert all(r["budget"] == 0.03 for r in json.loads((out / "results.json").read_text()))
    capsys.readouterr()


def test_the_full_grid_is_every_task_length_method_and_seed() -> None:
    args = StudyConfig(tasks=["delayed-recall", "copy", "adding", "mackey-glass"],
                       lengths=[10, 20, 40, 80], methods=None, seeds=3, budget=8.0,
                       max_ticks=1000, test_ticks=None)  # fmt: skip
    cells = cells_of(args)
    assert len(cells) == 4 * 4 * len(method_labels()) * 3


@pytest.mark.subprocess
def test_two_workers_give_the_cells_of_one(tmp_path, capsys) -> None:
    """With a budget that outlasts the stream every cell trains on all of it, so the cells run
    by two worker processes equal those run in this process."""
    argv = ["reproduce", "online", "--lengths", "2", "--seeds", "1", "--budget", "60",
            "--max-ticks", "30", "--test-ticks", "20", "--tasks", "delayed-recall",
            "--methods", "fop", "uoro"]  # fmt: skip
    assert main([*argv, "--out", str(tmp_path / "one")]) == 0
    assert main([*argv, "--workers", "2", "--out", str(tmp_path / "two")]) == 0
    one, two = (json.loads((tmp_path / d / "results.json").read_text()) for d in ("one", "two"))
    assert [r["cell"] for r in one] == [r["cell"] for r in two]
    assert [r["test_accuracy"] for r in one] == [r["test_accuracy"] for r in two]
    assert all(r["train_ticks"] == 30 for r in one + two)
    capsys.readouterr()


def test_a_second_run_is_refused_and_resume_after_a_cut_keeps_the_cells(
    tmp_path, capsys, monkeypatch
) -> None:
    """A SIGINT while the second cell starts: one line saying how to resume, exit 130, the
    first cell saved as a unit.  The same command again is refused (one line); ``--resume``
    runs only the cell not done and keeps the saved one."""
    out = tmp_path / "study"
    argv = ["reproduce", "online", *TINY, "--tasks", "delayed-recall", "--methods", "fop",
            "uoro", "--out", str(out)]  # fmt: skip
    run_cell, started = online_study._run_cell, []

    def cut_at_the_second(item):
        started.append(item[0])
        if len(started) == 2:
            os.kill(os.getpid(), signal.SIGINT)
        return run_cell(item)

    monkeypatch.setattr(online_study, "_run_cell", cut_at_the_second)
    assert main(argv) == 130
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "resume with: meshprop reproduce online --out" in err[0], err
    units = json.loads((out / "units.json").read_text())["units"]
    assert [u["cell"] for u in units.values()] == [["delayed-recall", 2, "fop", 0]]
    assert json.loads((out / "run.json").read_text())["complete"] is False
    assert main(argv) == 2
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert "already holds an unfinished run: give --resume to continue it" in line
    ((key, unit),) = units.items()
    unit["test_accuracy"] = 0.125  # marked: a cell run again would not keep it
    (out / "units.json").write_text(json.dumps({"units": {key: unit}}))
    assert main([*argv, "--resume"]) == 0
    assert [c[2] for c in started] == ["fop", "uoro", "uoro"]
    results = json.loads((out / "results.json").read_text())
    assert [r["cell"][2] for r in results] == ["fop", "uoro"]
    assert results[0]["test_accuracy"] == 0.125
    manifest = json.loads((out / "run.json").read_text())
    assert manifest["complete"] is True
    assert {"config.json", "units.json", "results.json", "table.md", "study.png"} <= set(
        manifest["files"]
    )
    assert main(argv) == 2  # a finished study is not run over either
    assert "already holds a finished run" in capsys.readouterr().err
