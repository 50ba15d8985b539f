"""Kill real ``meshprop train`` processes with SIGKILL at random moments, resume each run until
it finishes, and check that every resumed run ends bit-identical to the uninterrupted run:
the same weights (``torch.equal``), the same ``metrics.csv`` bytes, the same
``metrics.json`` (all but its time stamps and wall time), and a consistent run folder.

Every process is started as ``meshprop train ... --out DIR --resume`` (a folder without a run
yet starts afresh) and killed at a random moment (:func:`plan_kills`): three quarters of a
run's kills come a random part of an epoch after a random epoch of the run has been logged
(epochs drawn in increasing order, so the run advances between kills: kills land between two
steps, inside a step, while the training state or the metrics are written), the others a random
delay after the process's first line (loading the data, training, writing the outputs,
resuming a finished run).  Epoch times come from the uninterrupted run.  After its kills a run
is resumed once more without a kill, to the end.  Epochs and delays are drawn from ``--seed``.

Run: PYTHONPATH=src python benchmarks/kill_resume.py --kills 100 --runs 4 --workers 2
(``tests/test_kill_resume.py`` runs it with three kills, the uninterrupted runs and the last
resume of each run in its own process: ``experiment(..., in_process=True)``).
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import torch
from safetensors.torch import load_file

import meshprop
from meshprop.runs.folder import STATE_FILE, verify_run_folder

#: the runs killed: early stopping on a validation split, and structural learning (SET)
CONFIGURATIONS: dict[str, list[str]] = {
    "early-stopping": ["--val-size", "0.2", "--patience", "4", "--lr", "0.05"],
    "set": ["--density", "0.5", "--structure", "set", "--update-every", "7"],
}
COMMON = ["--samples", "200", "--hidden", "5", "--batch-size", "16", "--no-progress"]


@dataclass
class Outcome:
    """One run killed ``len(delays)`` times and resumed to the end."""

    name: str
    out: Path
    delays: list[float] = field(default_factory=list)
    #: the epoch of the saved training state after each kill (-1: none yet)
    epochs_saved: list[int] = field(default_factory=list)
    finished_early: int = 0  # processes that ended before their kill came


def environment() -> dict[str, str]:
    """This checkout's meshprop first on the path of the child processes."""
    source = str(Path(meshprop.__file__).resolve().parents[1])
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([source, *filter(None, [env.get("PYTHONPATH")])])
    return env


def train_command(name: str, epochs: int, out: Path) -> list[str]:
    return [
        sys.executable,
        "-m",
        "meshprop",
        "train",
        *COMMON,
        "--epochs",
        str(epochs),
        *CONFIGURATIONS[name],
        "--out",
        str(out),
        "--resume",
    ]


@dataclass
class Child:
    """A started ``meshprop train`` process: its standard output is drained by a thread after
    the first line and its standard error goes to a temporary file, so that a child never
    blocks on a full pipe while it is watched or killed."""

    process: subprocess.Popen[str]
    ready: float  # when its first line came (time.perf_counter)
    stderr: IO[str]

    def wait(self, timeout: float | None = None) -> int:
        """The exit status (``subprocess.TimeoutExpired`` after ``timeout`` seconds)."""
        return self.process.wait(timeout)

    def kill(self) -> None:
        self.process.send_signal(signal.SIGKILL)
        self.process.wait()

    def errors(self) -> str:
        """Everything it wrote to standard error (call once it has ended)."""
        self.stderr.seek(0)
        text = self.stderr.read()
        self.stderr.close()
        return text


def start(command: list[str]) -> Child:
    """Start ``command`` and wait for its first line (printed once Python, torch and meshprop
    are imported, before the data is loaded)."""
    stderr = tempfile.TemporaryFile("w+")  # noqa: SIM115 (closed by Child.errors)
    process = subprocess.Popen(
        command, env=environment(), stdout=subprocess.PIPE, stderr=stderr, text=True
    )
    assert process.stdout is not None
    process.stdout.readline()
    ready = time.perf_counter()
    threading.Thread(target=process.stdout.read, daemon=True).start()  # to the end, unread
    return Child(process, ready, stderr)


@dataclass
class Timeline:
    """Seconds after an uninterrupted run's first line: its first saved epoch, the end of its
    training (``metrics.json`` written) and its end."""

    first_epoch: float
    trained: float
    end: float


def run_to_end(command: list[str], out: Path | None = None) -> Timeline:
    """Run ``command`` to its end (status 0 required), watching the run folder ``out``."""
    child = start(command)
    seen: dict[str, float] = {}
    while child.process.poll() is None:
        for name in (STATE_FILE, "metrics.json"):
            if out is not None and name not in seen and (out / name).exists():
                seen[name] = time.perf_counter() - child.ready
        time.sleep(0.01)
    end = time.perf_counter() - child.ready
    status, err = child.wait(), child.errors()
    if status != 0:
        raise RuntimeError(f"{' '.join(command)} failed ({status}): {err}")
    return Timeline(seen.get(STATE_FILE, 0.0), seen.get("metrics.json", end), end)


def run_in_process(command: list[str], out: Path | None = None) -> Timeline:
    """:func:`run_to_end` in this process: ``command``'s ``meshprop`` arguments through
    ``meshprop.cli.main`` (in the main thread, its standard output discarded), timed from the
    call (a process's first line comes once its imports are done, which this process has)."""
    from meshprop.cli import main

    seen: dict[str, float] = {}
    done = threading.Event()
    started = time.perf_counter()

    def watch() -> None:
        while not done.is_set():
            for name in (STATE_FILE, "metrics.json"):
                if out is not None and name not in seen and (out / name).exists():
                    seen[name] = time.perf_counter() - started
            time.sleep(0.01)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            status = main(command[3:])  # past python -m meshprop
    finally:
        done.set()
        watcher.join()
    end = time.perf_counter() - started
    if status != 0:
        raise RuntimeError(f"{' '.join(command)} failed ({status}) in this process")
    return Timeline(seen.get(STATE_FILE, 0.0), seen.get("metrics.json", end), end)


@dataclass
class Kill:
    """When to kill a process: ``delay`` seconds after its run folder's ``metrics.csv`` holds
    ``epochs`` rows (``None``: after its first line)."""

    delay: float
    epochs: int | None = None


def plan_kills(rng: random.Random, timeline: Timeline, epochs: int, kills: int) -> list[Kill]:
    """Three quarters of the kills inside the training: after a random epoch of the run (in
    increasing order, so the run advances between kills) plus a random part of an epoch; the
    rest anywhere in a process's life (loading the data, training, writing the outputs,
    resuming a finished run)."""
    targeted = kills - kills // 4
    epoch_time = (timeline.trained - timeline.first_epoch) / max(epochs - 1, 1)
    after = sorted(rng.randrange(0, epochs) for _ in range(targeted))
    plan = [Kill(rng.uniform(0.0, epoch_time), e) for e in after]
    return plan + [Kill(rng.uniform(0.0, timeline.end)) for _ in range(kills - targeted)]


def rows(path: Path) -> int:
    try:
        return max(0, len(path.read_text().splitlines()) - 1)
    except FileNotFoundError:
        return 0


def saved_epoch(out: Path) -> int:
    try:
        state = torch.load(out / STATE_FILE, map_location="cpu", weights_only=True)
    except (FileNotFoundError, RuntimeError, EOFError):
        return -1
    return int(state["epoch"])


def kill_as_planned(outcome: Outcome, command: list[str], kills: list[Kill]) -> None:
    """Start ``command`` once per kill and SIGKILL it as planned."""
    for kill in kills:
        child = start(command)
        if kill.epochs is not None:
            while child.process.poll() is None and rows(outcome.out / "metrics.csv") < kill.epochs:
                time.sleep(0.005)
        try:
            status = child.wait(timeout=kill.delay)
        except subprocess.TimeoutExpired:
            child.kill()
            child.errors()
        else:
            err = child.errors()
            if status != 0:
                raise RuntimeError(f"{' '.join(command)}: status {status}: {err}")
            outcome.finished_early += 1
        outcome.delays.append(kill.delay)
        outcome.epochs_saved.append(saved_epoch(outcome.out))


def kill_and_resume(outcome: Outcome, command: list[str], kills: list[Kill]) -> None:
    """Start ``command`` once per kill and SIGKILL it as planned, then run it to the end."""
    kill_as_planned(outcome, command, kills)
    run_to_end(command, outcome.out)


def comparable_metrics(out: Path) -> dict[str, Any]:
    """``metrics.json`` without what differs between two identical runs (time stamps)."""
    metrics = json.loads((out / "metrics.json").read_text())
    metrics.pop("written")
    metrics["history"].pop("wall_time_s")
    return metrics


def differences(out: Path, reference: Path) -> list[str]:
    """What differs between the run in ``out`` and the uninterrupted one (empty: nothing)."""
    problems = []
    try:
        verify_run_folder(out)
    except ValueError as error:
        problems.append(str(error))
    a = load_file(str(out / "checkpoint" / "model.safetensors"))
    b = load_file(str(reference / "checkpoint" / "model.safetensors"))
    if a.keys() != b.keys() or not all(torch.equal(a[k], b[k]) for k in a):
        problems.append("weights differ")
    if (out / "metrics.csv").read_bytes() != (reference / "metrics.csv").read_bytes():
        problems.append("metrics.csv differs")
    if comparable_metrics(out) != comparable_metrics(reference):
        problems.append("metrics.json differs")
    return problems


def experiment(
    root: Path,
    kills: int,
    runs: int,
    epochs: int,
    seed: int,
    workers: int,
    in_process: bool = False,
) -> tuple[list[Outcome], dict[str, Timeline], list[str]]:
    """Reference runs, then ``runs`` runs (alternating configurations) sharing ``kills``
    kills; returns the outcomes, the references' timelines and the problems found.

    ``in_process``: the uninterrupted runs and each run's last resume (after its kills) run in
    this process, one after the other (:func:`run_in_process`); only the killed runs are
    processes (``runs`` × 2 processes fewer, each an interpreter, torch and the plots)."""
    rng = random.Random(seed)
    names = list(CONFIGURATIONS)
    folders = [root / f"reference-{name}" for name in names]
    commands = [train_command(n, epochs, out) for n, out in zip(names, folders, strict=True)]
    if in_process:
        triples = zip(names, commands, folders, strict=True)
        timelines = {n: run_in_process(c, o) for n, c, o in triples}
    else:
        with ThreadPoolExecutor(max_workers=workers) as pool:
            timelines = dict(zip(names, pool.map(run_to_end, commands, folders), strict=True))
    plans = []
    for k in range(runs):
        name = names[k % len(names)]
        share = kills // runs + (1 if k < kills % runs else 0)
        outcome = Outcome(name, root / f"killed-{k}-{name}")
        trained = comparable_metrics(root / f"reference-{name}")["history"]["epochs"]
        kills_planned = plan_kills(rng, timelines[name], len(trained), share)
        plans.append((outcome, train_command(name, epochs, outcome.out), kills_planned))
    task = kill_as_planned if in_process else kill_and_resume
    with ThreadPoolExecutor(max_workers=workers) as pool:
        for future in [pool.submit(task, *plan) for plan in plans]:
            future.result()
    if in_process:
        for outcome, command, _ in plans:
            run_in_process(command, outcome.out)
    problems = [
        f"{o.out.name}: {problem}"
        for o, *_ in plans
        for problem in differences(o.out, root / f"reference-{o.name}")
    ]
    return [plan[0] for plan in plans], timelines, problems


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--kills", type=int, default=100, help="SIGKILLs in all (default 100)")
    parser.add_argument("--runs", type=int, default=4, help="runs sharing them (default 4)")
    parser.add_argument("--epochs", type=int, default=30, help="epochs per run (default 30)")
    parser.add_argument("--seed", type=int, default=0, help="seeds the delays (default 0)")
    parser.add_argument("--workers", type=int, default=2, help="runs at once (default 2)")
    parser.add_argument("--dir", default="runs/kill-resume", help="where the runs go")
    args = parser.parse_args(argv)
    root = Path(args.dir)
    if root.exists() and any(root.iterdir()):
        parser.error(f"--dir {root} is not empty")
    root.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    outcomes, timelines, problems = experiment(
        root, args.kills, args.runs, args.epochs, args.seed, args.workers
    )
    for name, t in timelines.items():
        print(
            f"uninterrupted {name}: first epoch saved {t.first_epoch:.1f} s after its first "
            f"line, trained at {t.trained:.1f} s, done at {t.end:.1f} s"
        )
    for o in outcomes:
        in_training = sum(e >= 0 for e in o.epochs_saved)
        print(
            f"{o.out.name}: {len(o.delays)} kills ({o.finished_early} processes ended first), "
            f"{in_training} after the first saved epoch; saved epoch after each kill: "
            f"{o.epochs_saved}"
        )
    total = sum(len(o.delays) for o in outcomes)
    verdict = "FAILED: " + "; ".join(problems) if problems else "all identical"
    print(
        f"{total} SIGKILLs, {len(outcomes)} runs resumed to the end in "
        f"{time.perf_counter() - start:.1f} s: {verdict} to the uninterrupted runs "
        "(weights, metrics.csv, metrics.json, run.json verified)"
    )
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
