"""``meshprop train``'s run folder: a folder holding a run is refused unless
``--resume`` or ``--overwrite`` is given, ``--resume`` checks the typed options against the
saved configuration and continues bit-identically, ``run.json`` lets ``evaluate`` detect a
folder whose files come from different runs, and SIGINT/SIGTERM leave a resumable run."""

from __future__ import annotations

import json
import os
import signal
import threading
import time
from pathlib import Path

import pytest

from killing import signal_this_process_when
from meshprop.cli import main
from meshprop.runs.folder import STATE_FILE, check_run_folder, verify_run_folder
from meshprop.training import load_training_state

RUN = ["train", "--samples", "100", "--epochs", "4", "--no-progress"]


def cli(capsys, *argv) -> tuple[int, str, str]:
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def same_run(a: Path, b: Path) -> None:
    assert (a / "checkpoint" / "model.safetensors").read_bytes() == (
        b / "checkpoint" / "model.safetensors"
    ).read_bytes()
    assert (a / "metrics.csv").read_bytes() == (b / "metrics.csv").read_bytes()
    ma, mb = (json.loads((d / "metrics.json").read_text()) for d in (a, b))
    for m in (ma, mb):
        m.pop("written"), m["history"].pop("wall_time_s")
    assert ma == mb


@pytest.mark.slow
def test_a_folder_holding_a_run_is_refused_unless_resume_or_overwrite(capsys, tmp_path):
    out = tmp_path / "run"
    assert cli(capsys, *RUN, "--out", out)[0] == 0
    assert verify_run_folder(out)["complete"] is True
    before = (out / "run.json").read_bytes()
    code, _, err = cli(capsys, *RUN, "--out", out)
    assert code == 2 and err.count("\n") == 1
    assert "already holds a finished run: give --resume to continue it, --overwrite" in err
    assert (out / "run.json").read_bytes() == before  # nothing touched
    code, _, err = cli(capsys, *RUN, "--out", out, "--resume", "--overwrite")
    assert code == 2 and "give --resume or --overwrite, not both" in err
    # --overwrite replaces the run (a new run id); other flags apply
    assert cli(capsys, *RUN, "--epochs", "2", "--out", out, "--overwrite")[0] == 0
    manifest = verify_run_folder(out)
    assert manifest["run_id"] != json.loads(before)["run_id"]
    assert len(json.loads((out / "metrics.json").read_text())["history"]["epochs"]) == 2
    # a folder holding other files is never a run folder, not even for --overwrite
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("precious")
    for extra in ([], ["--overwrite"], ["--resume"]):
        code, _, err = cli(capsys, *RUN, "--out", tmp_path / "mine", *extra)
        assert code == 2 and "holds files that are not a meshprop run (notes.txt)" in err
    (tmp_path / "file").write_text("x")
    code, _, err = cli(capsys, *RUN, "--out", tmp_path / "file")
    assert code == 2 and "is an existing file, not a folder" in err
    code, _, err = cli(capsys, *RUN, "--out", tmp_path / "new", "--checkpoint-every", "-1")
    assert code == 2 and "--checkpoint-every must be >= 0" in err
    assert check_run_folder(tmp_path / "missing", resume=True) == "resume"


@pytest.mark.slow
def test_resume_checks_the_typed_options_and_takes_the_others_from_the_run(capsys, tmp_path):
    out = tmp_path / "run"
    assert cli(capsys, *RUN, "--hidden", "3", "--out", out)[0] == 0
    code, _, err = cli(capsys, *RUN, "--hidden", "4", "--lr", "0.5", "--out", out, "--resume")
    assert code == 2 and err.count("\n") == 1
    assert "--hidden 4 (the run: 3), --lr 0.5 (the run: 0.01)" in err
    code, _, err = cli(capsys, "train", "--out", out, "--resume", "--no-progress")
    assert code == 0, err
    assert json.loads((out / "metrics.json").read_text())["config"]["hidden"] == 3
    verify_run_folder(out)


@pytest.mark.slow
def test_verify_run_folder_detects_files_of_another_run(capsys, tmp_path):
    for name, epochs in (("a", "3"), ("b", "4")):
        assert cli(capsys, *RUN, "--epochs", epochs, "--out", tmp_path / name)[0] == 0
    a, b = tmp_path / "a", tmp_path / "b"
    assert verify_run_folder(a / "checkpoint")["run_id"] == verify_run_folder(a)["run_id"]
    (a / "metrics.json").write_bytes((b / "metrics.json").read_bytes())  # a mix of two runs
    with pytest.raises(ValueError, match=r"metrics.json is not the file run \w{8} wrote"):
        verify_run_folder(a / "checkpoint" / "model.json")
    (b / "curves.png").unlink()
    with pytest.raises(ValueError, match=r"curves.png: missing"):
        verify_run_folder(b)
    manifest = json.loads((b / "run.json").read_text())
    (b / "run.json").write_text(json.dumps({**manifest, "complete": False}))
    with pytest.raises(ValueError, match=r"did not finish .* --resume"):
        verify_run_folder(b)
    assert verify_run_folder(tmp_path) is None  # no manifest: not a run folder of this version
    # evaluate and predict refuse the mixed folder with one line, before reading the data
    (tmp_path / "x.csv").write_text("x,y\n0.1,0.2\n")
    for argv in (["evaluate"], ["predict", "--data", tmp_path / "x.csv"]):
        code, out, err = cli(capsys, *argv, a / "checkpoint")
        assert code == 2 and err.count("\n") == 1 and out == ""
        assert "metrics.json is not the file run" in err and "the run folder mixes runs" in err


@pytest.mark.slow
def test_resuming_a_run_killed_between_epochs_is_bit_identical(capsys, tmp_path):
    reference, out = tmp_path / "reference", tmp_path / "run"
    argv = [*RUN, "--epochs", "6", "--val-size", "0.2", "--patience", "9"]
    assert cli(capsys, *argv, "--out", reference)[0] == 0
    assert cli(capsys, *argv, "--out", out, "--checkpoint-every", "2")[0] == 0
    # the state after epoch 4 (every 2 epochs), as a kill after epoch 5 would leave it
    state = load_training_state(out / STATE_FILE)
    assert state["epoch"] == 6
    saved = tmp_path / "state-epoch-4.pt"
    assert cli(capsys, *argv, "--epochs", "4", "--out", tmp_path / "four")[0] == 0
    saved.write_bytes((tmp_path / "four" / STATE_FILE).read_bytes())
    (out / STATE_FILE).write_bytes(saved.read_bytes())
    (out / "run.json").unlink()
    assert load_training_state(out / STATE_FILE)["epoch"] == 4
    code, _, err = cli(capsys, *argv, "--out", out, "--resume")
    assert code == 0, err
    same_run(out, reference)
    verify_run_folder(out)


@pytest.mark.slow  # a run interrupted and resumed (the quick tier has none)
@pytest.mark.parametrize("signum", [signal.SIGINT])  # SIGTERM: the same path (test below)
def test_a_signal_saves_prints_one_line_and_the_run_resumes_identically(capsys, tmp_path, signum):
    """A real signal, sent to this process (the command runs in it: a SIGKILLed process is
    tests/test_kill_resume.py's) once training has logged its first epoch: the state saved,
    one line saying how to resume, the exit status of the signal, the run marked unfinished;
    ``--resume`` then gives the run never interrupted."""
    argv = ["train", "--samples", "200", "--epochs", "30", "--no-progress", "--batch-size", "16"]
    out = tmp_path / "run"

    # training has started once its first epoch is logged
    watcher = signal_this_process_when((out / "metrics.csv").exists, signum)
    code, _, err = cli(capsys, *argv, "--out", out)
    watcher.join(timeout=120)
    assert code == 128 + signum, err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert err.startswith("interrupted at epoch ")
    assert err.rstrip().endswith(f"resume with: meshprop train --out {out} --resume")
    state = load_training_state(out / STATE_FILE)
    assert state["epoch"] < 30
    assert json.loads((out / "run.json").read_text())["complete"] is False
    code, _, err = cli(capsys, "train", "--out", out, "--resume", "--no-progress")
    assert code == 0, err
    assert cli(capsys, *argv, "--out", tmp_path / "reference")[0] == 0
    same_run(out, tmp_path / "reference")


def test_sigterm_takes_the_path_of_sigint_and_exits_143():
    """The handler both signals share, in this process: SIGTERM sets the stop request that
    ``meshprop train`` (and every command) polls, whose exit status is 128 + 15; the run
    above is stopped by a real SIGINT through the same request."""
    from meshprop.commands.interrupts import stop_on_signals

    assert threading.current_thread() is threading.main_thread()  # else the handler is not set
    for signum, code in ((signal.SIGTERM, 143), (signal.SIGINT, 130)):
        with stop_on_signals() as stop:
            assert not stop
            os.kill(os.getpid(), signum)
            time.sleep(0.01)  # the handler runs between two bytecodes of this thread
            assert stop() and stop.exit_code == code and stop.name == signal.Signals(signum).name


def test_a_run_failing_before_its_first_state_leaves_no_run_behind(capsys, tmp_path):
    data = tmp_path / "d.csv"
    data.write_text("a,b,t\n1,2,0\n3,nan,1\n4,5,0\n")
    out = tmp_path / "run"
    for _ in range(2):  # the same command again gets the same error, not "already holds"
        code, _, err = cli(capsys, *RUN, "--data", data, "--target", "t", "--out", out)
        assert code == 2 and "row 2 holds 'nan'" in err
        assert not out.exists()


def test_run_folder_of_any_command_refuses_another_run_and_lists_its_files(tmp_path):
    """``RunFolder``, what every command writes through, without training anything."""
    from meshprop.runs.folder import UNITS_FILE, RunFolder

    out = tmp_path / "run"
    folder = RunFolder.check(out, "reproduce structure")
    assert folder.mode == "new" and not out.exists()  # the check writes nothing
    folder.start({"seeds": 2})
    assert json.loads((out / "run.json").read_text())["complete"] is False
    calls = []
    assert folder.unit("a", lambda: calls.append("a") or {"accuracy": 0.5}) == {"accuracy": 0.5}
    folder.write_text("structure.md", "table\n")
    folder.finish(folder.path(UNITS_FILE))
    manifest = verify_run_folder(out)
    assert manifest["command"] == "reproduce structure"
    assert set(manifest["files"]) == {"config.json", "structure.md", UNITS_FILE}
    with pytest.raises(ValueError, match="already holds a finished run: give --resume"):
        RunFolder.check(out, "reproduce structure")
    with pytest.raises(ValueError, match="holds a run of `meshprop reproduce structure`"):
        RunFolder.check(out, "timeseries", resume=True)
    resumed = RunFolder.check(out, "reproduce structure", resume=True)
    assert resumed.saved_config()["seeds"] == 2
    assert resumed.unit("a", lambda: calls.append("again") or {}) == {"accuracy": 0.5}
    assert calls == ["a"]  # a unit saved by the run is not computed again
    RunFolder.check(out, "reproduce structure", overwrite=True).start({"seeds": 3})
    assert not (out / "structure.md").exists() and not (out / UNITS_FILE).exists()
    # a run failing before it saved any state leaves nothing behind
    fresh = RunFolder.check(tmp_path / "fresh", "timeseries")
    fresh.start({})
    fresh.discard_unstarted("training-state.pt")
    assert not (tmp_path / "fresh").exists()


def test_a_sweep_interrupted_by_a_signal_keeps_its_units_and_says_how_to_resume(tmp_path, capsys):
    """``run_command`` with ``at_once``: the first SIGINT ends the work where it is, the units
    done stay saved, one line says how to resume, the status is 130; ``--resume`` then
    computes only the units not done."""
    import argparse
    import threading

    from meshprop.commands.runner import run_command
    from meshprop.runs.folder import UNITS_FILE
    from meshprop.runs.timeseries import TimeseriesConfig

    assert threading.current_thread() is threading.main_thread()  # else no handler is set
    out = tmp_path / "sweep"
    computed = []

    def work(config, folder, stop) -> int:
        for k in range(3):

            def unit(k=k):
                computed.append(k)
                if k == 1 and not folder.resuming:
                    os.kill(os.getpid(), signal.SIGINT)
                    time.sleep(1)  # interrupted here
                return {"k": k}

            folder.unit(f"unit-{k}", unit)
        folder.finish(folder.path(UNITS_FILE))
        return 0

    def args(**flags) -> argparse.Namespace:
        base = {"out": str(out), "resume": False, "overwrite": False, "threads": 1}
        return argparse.Namespace(**{**base, **flags, "dataset": "mackey-glass"})

    assert run_command(args(), "demo", TimeseriesConfig, work, state=UNITS_FILE) == 130
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"resume with: meshprop demo --out {out} --resume" in err
    assert json.loads((out / UNITS_FILE).read_text())["units"] == {"unit-0": {"k": 0}}
    assert run_command(args(resume=True), "demo", TimeseriesConfig, work, state=UNITS_FILE) == 0
    assert computed == [0, 1, 1, 2] and verify_run_folder(out)["command"] == "demo"
