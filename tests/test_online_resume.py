"""``meshprop online`` survives SIGINT/SIGTERM and SIGKILL: a run cut anywhere and continued with
``--resume`` ends with exactly the weights, learning curve and test metrics of the uninterrupted
run (every method), and the run folder's rules match ``meshprop train``'s."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from killing import signal_this_process_when
from meshprop.cli import main
from meshprop.runs.folder import RunFolder
from meshprop.runs.online import run_online
from meshprop.runs.online_config import OnlineConfig
from meshprop.runs.online_state import OnlineInterruptedError

SOURCE = str(Path(__file__).resolve().parents[1] / "src")
TIMING = ("train_seconds", "ticks_per_second", "peak_memory_mib")


def _args(**settings) -> OnlineConfig:
    return OnlineConfig(**settings)


def _folder(path: Path, resume: bool) -> RunFolder:
    """The run folder ``path`` as ``meshprop online`` checked it (new, or ``--resume``)."""
    return RunFolder(path, "online", "resume" if resume else "new", path.exists())


@pytest.mark.slow
@pytest.mark.parametrize(
    "settings",
    [
        {"method": "fop", "delay": 3, "hidden": 6, "train_ticks": 900},
        {"method": "fop", "delay": 3, "hidden": 6, "train_ticks": 900, "dtype": "float64"},
        {"method": "tbptt", "delay": 4, "hidden": 5, "train_ticks": 400},
        {"method": "bptt", "delay": 3, "hidden": 5, "train_ticks": 600},
        {"method": "fop", "task": "mackey-glass", "hidden": 5, "train_ticks": 700},
    ],
    ids=lambda s: "-".join(str(v) for v in s.values()),
)
def test_a_run_stopped_and_resumed_equals_one_run(tmp_path, settings) -> None:
    """Stopped (as by a signal) at two points, resumed twice: the same curve, metrics and
    weights as one run."""
    held_out = {} if settings.get("task") == "mackey-glass" else {"test_ticks": 200}
    settings = {**held_out, "log_every": 50, "checkpoint_every": 100, **settings}
    (whole, whole_net) = run_online(_args(**settings), progress=False)  # (no state saved)
    path = tmp_path / "online-state.pt"
    args = _args(**settings)
    assert args.train_ticks is not None
    polls = args.train_ticks // (args.sequence_length if args.method == "bptt" else 1)
    for stop_at in (int(0.37 * polls), int(0.33 * polls)):  # the second after the resume
        calls = {"n": 0}

        def stop(stop_at=stop_at, calls=calls) -> bool:
            calls["n"] += 1
            return calls["n"] >= stop_at

        folder = _folder(tmp_path, resume=path.exists())
        with pytest.raises(OnlineInterruptedError):
            run_online(_args(**settings), progress=False, folder=folder, stop_requested=stop)
    result, net = run_online(_args(**settings), progress=False, folder=_folder(tmp_path, True))
    assert result.curve == whole.curve
    assert {k: v for k, v in result.metrics.items() if k not in TIMING} == {
        k: v for k, v in whole.metrics.items() if k not in TIMING
    }
    assert torch.equal(net.A, whole_net.A)


def test_a_state_of_other_settings_is_refused(tmp_path) -> None:
    path = tmp_path / "online-state.pt"
    run_online(
        _args(train_ticks=120, hidden=4, checkpoint_every=50), False, _folder(tmp_path, False)
    )
    with pytest.raises(ValueError, match=r"saved by a run with other settings \(hidden\)"):
        run_online(_args(train_ticks=120, hidden=5), False, _folder(tmp_path, True))
    path.write_bytes(b"not a state")
    with pytest.raises(ValueError, match="not a readable online state"):
        run_online(_args(train_ticks=120, hidden=4), False, _folder(tmp_path, True))


@pytest.mark.slow
def test_the_run_folder_rules(tmp_path, capsys) -> None:
    out = tmp_path / "run"
    base = ["online", "--delay", "2", "--train-ticks", "300", "--test-ticks", "50",
            "--hidden", "4", "--no-progress", "--out", str(out)]  # fmt: skip
    assert main(base) == 0
    manifest = json.loads((out / "run.json").read_text())
    assert manifest["complete"] is True
    assert set(manifest["files"]) == {
        "config.json", "online-state.pt", "metrics.json", "curve.json", "learning_curve.png",
        "checkpoint/model.json", "checkpoint/model.safetensors",
    }  # fmt: skip
    first = (out / "metrics.json").read_text()
    capsys.readouterr()
    assert main(base) == 2  # a finished run is not overwritten silently
    assert "already holds a finished run" in capsys.readouterr().err
    assert main(["online", "--out", str(out), "--resume", "--hidden", "5"]) == 2
    assert "--hidden 5 (the run: 4)" in capsys.readouterr().err
    # --resume of a finished run: settings from config.json, nothing trained again
    assert main(["online", "--out", str(out), "--resume", "--no-progress"]) == 0
    again = json.loads((out / "metrics.json").read_text())
    assert again["test_accuracy"] == json.loads(first)["test_accuracy"]
    assert main([*base, "--overwrite", "--seed", "1"]) == 0
    assert json.loads((out / "config.json").read_text())["seed"] == 1
    stranger = tmp_path / "stranger"
    stranger.mkdir()
    (stranger / "notes.txt").write_text("mine")
    assert main(["online", "--out", str(stranger), "--no-progress"]) == 2
    assert (stranger / "notes.txt").read_text() == "mine"


def _arguments(out: Path, *extra: str, ticks: int = 30000, every: int = 500) -> list[str]:
    return ["online", "--delay", "3", "--hidden", "6", "--train-ticks", str(ticks),
            "--test-ticks", "300", "--log-every", "500", "--checkpoint-every", str(every),
            "--no-progress", "--out", str(out), *extra]  # fmt: skip


def _command(out: Path, *extra: str, ticks: int = 30000, every: int = 500) -> list[str]:
    return [sys.executable, "-m", "meshprop", *_arguments(out, *extra, ticks=ticks, every=every)]


def _env() -> dict[str, str]:
    path = os.pathsep.join(p for p in (SOURCE, os.environ.get("PYTHONPATH")) if p)
    return {**os.environ, "PYTHONPATH": path}


def _outputs(out: Path) -> tuple:
    metrics = json.loads((out / "metrics.json").read_text())
    weights = load_file(str(out / "checkpoint" / "model.safetensors"))["A"]
    return (
        {k: v for k, v in metrics.items() if k not in TIMING},
        (out / "curve.json").read_text(),
        weights,
    )


def _saved(out: Path) -> int:
    path = out / "online-state.pt"
    return path.stat().st_mtime_ns if path.exists() else 0


def _started(out: Path, before: int = 0, timeout: float = 60.0) -> None:
    """Wait for a state saved after ``before`` (the process is past start-up, training)."""
    deadline = time.monotonic() + timeout
    while _saved(out) <= before:
        if time.monotonic() > deadline:
            raise AssertionError("no state saved within the time limit")
        time.sleep(0.01)


def _start(command: list[str], stderr: Path) -> subprocess.Popen[bytes]:
    """Start ``command`` with its standard error in the file ``stderr``: a pipe nobody reads
    while the test waits would block the child once it fills."""
    with stderr.open("wb") as sink:  # the child keeps its own descriptor
        return subprocess.Popen(command, env=_env(), stdout=subprocess.DEVNULL, stderr=sink)


@pytest.mark.subprocess
def test_sigkill_at_a_random_moment_then_resume_equals_one_run(tmp_path) -> None:
    """One SIGKILL of a real process at a random moment after its first saved state; the
    uninterrupted reference and the resume run in this process (no second start-up)."""
    small = {"ticks": 3000, "every": 500}
    out = tmp_path / "killed"
    process = _start(_command(out, **small), tmp_path / "stderr-0.txt")
    _started(out)  # killed while training, not while starting
    time.sleep(random.Random(10).uniform(0.0, 0.3))
    assert process.poll() is None, "the run ended before it could be killed"
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert json.loads((out / "run.json").read_text())["complete"] is False
    assert main(_arguments(out, "--resume", **small)) == 0
    reference = tmp_path / "reference"
    assert main(_arguments(reference, **small)) == 0
    got, expected = _outputs(out), _outputs(reference)
    assert got[0] == expected[0] and got[1] == expected[1]
    assert torch.equal(got[2], expected[2])


# SIGTERM takes the same path, exit status 143 (test_run_folder.py, in-process)
@pytest.mark.slow  # a run interrupted (the quick tier has none)
@pytest.mark.parametrize(("signum", "code"), [(signal.SIGINT, 130)])
def test_a_signal_saves_says_how_to_resume_and_exits(tmp_path, capsys, signum, code) -> None:
    """A real signal, sent to this process (the command runs in it: no second start-up) once
    the run has saved its first state: the state saved, one line saying how to resume, the
    exit status of the signal, the run marked unfinished."""
    out = tmp_path / "run"

    watcher = signal_this_process_when(lambda: _saved(out) > 0, signum, timeout=60)
    assert main(_arguments(out)) == code
    watcher.join(timeout=60)
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and "resume with: meshprop online --out" in lines[0], err
    assert "Traceback" not in err
    state = torch.load(out / "online-state.pt", weights_only=True)
    assert 0 < state["tick"] < 30000
    assert json.loads((out / "run.json").read_text())["complete"] is False
