"""``meshprop reproduce online``: every online method against every memory length, at equal
wall-clock time.

The grid: methods × tasks × lengths × seeds.  Methods: every registered online method
(``mp.ONLINE_METHODS``; truncated BPTT twice, with a window of k = n/2 and k = n elements for
length n) and offline full BPTT.  Tasks and what their length n sets: ``delayed-recall``
(the delay D = n), ``copy`` (the blank D = n after a pattern of 3), ``adding`` (episodes of
L = n), ``mackey-glass`` (the horizon H = n).  Every cell runs ``meshprop online`` with the
task's default network and settings, trains for ``--budget`` seconds of training time (or
until ``--max-ticks`` elements) and is scored on the task's held-out part beside its
baselines.  results.json is rewritten after every cell; ``--resume`` keeps the cells already
there.  Writes table.md (per task: the metric's mean ± standard deviation over seeds and the
mean training elements per second, per length and method) and study.png.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import time
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

from ..atomic import atomic_write_text, atomic_write_with
from ..threads import DEFAULT_THREADS, thread_policy
from .checks import declare_outputs, declare_ranges
from .online import DEFAULTS, check_args, flush_denormals, run_online
from .options import add_threads_option

__all__ = [
    "STUDY_TASKS",
    "Cell",
    "StudyResults",
    "add_parser",
    "cells_of",
    "method_labels",
    "solved",
    "study_args",
]

STUDY_TASKS = ("delayed-recall", "copy", "adding", "mackey-glass")
#: what a cell's length sets, per task
LENGTH_OPTION = {
    "delayed-recall": "delay",
    "copy": "delay",
    "adding": "length",
    "mackey-glass": "horizon",
}
DEFAULT_LENGTHS = (10, 20, 40, 80)
DEFAULT_BUDGET = 8.0
DEFAULT_MAX_TICKS = 200_000
#: a cell is solved at accuracy ≥ 0.95, MSE ≤ a tenth of the mean predictor's, NMSE below
#: every baseline
SOLVED_ACCURACY = 0.95
SOLVED_MSE_FRACTION = 0.1

Cell = tuple[str, int, str, int]  # task, length, method label, seed


def method_labels() -> tuple[str, ...]:
    """The study's methods, from the registry: every online method (``tbptt`` as
    ``tbptt-half`` and ``tbptt-full``: windows of n/2 and n) and ``bptt`` (offline, full)."""
    from ..sequence import ONLINE_METHODS

    labels: list[str] = []
    for name in ONLINE_METHODS:
        labels += ["tbptt-half", "tbptt-full"] if name == "tbptt" else [name]
    return (*labels, "bptt")


def _method(label: str, length: int) -> tuple[str, int | None]:
    """The ``--method`` and ``--truncation`` of a method label at length n."""
    if label == "tbptt-half":
        return "tbptt", max(1, length // 2)
    if label == "tbptt-full":
        return "tbptt", length
    return label, None


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "online",
        help="every online method × delayed recall, copy, adding, Mackey–Glass × lengths, "
        "at equal time per cell",
        description=__doc__,
    )
    p.add_argument(
        "--tasks",
        nargs="+",
        choices=STUDY_TASKS,
        default=list(STUDY_TASKS),
        help="tasks (default: all four)",
    )
    p.add_argument(
        "--lengths", type=int, nargs="+", default=list(DEFAULT_LENGTHS), help="lengths n"
    )
    p.add_argument(
        "--methods",
        nargs="+",
        metavar="METHOD",
        help="method labels (default: all of them: the online methods of the registry, "
        "tbptt as tbptt-half and tbptt-full, and bptt)",
    )
    p.add_argument("--seeds", type=int, default=3, help="seeds per cell (0, 1, …)")
    p.add_argument(
        "--budget",
        type=float,
        default=DEFAULT_BUDGET,
        metavar="SECONDS",
        help="training time of every cell (default: %(default)s)",
    )
    p.add_argument(
        "--max-ticks",
        type=int,
        default=DEFAULT_MAX_TICKS,
        help="the training stream's length: a cell stops there if its budget lasts "
        "(default: %(default)s)",
    )
    p.add_argument(
        "--test-ticks",
        type=int,
        help="held-out stream of delayed recall, copy and adding (default: the task's, 5000)",
    )
    p.add_argument("--workers", type=int, default=1, help="cells run side by side (processes)")
    p.add_argument("--out", default="runs/reproduce-online", metavar="DIR", help="output directory")
    p.add_argument(
        "--resume",
        action="store_true",
        help="keep the cells already in DIR/results.json (same task, length, method, seed, "
        "budget and stream) and run only the others",
    )
    add_threads_option(p, DEFAULT_THREADS)
    p.set_defaults(handler=handle)
    declare_outputs(p, out="dir")
    declare_ranges(
        p, lengths=">= 2", seeds=">= 1", max_ticks=">= 1", workers=">= 1", test_ticks=">= 1"
    )


def study_args(
    task: str,
    length: int,
    label: str,
    seed: int,
    max_ticks: int,
    test_ticks: int | None = None,
) -> argparse.Namespace:
    """The ``meshprop online`` options of one cell (the command's defaults for the task)."""
    method, truncation = _method(label, length)
    settings = {**DEFAULTS, "task": task, "method": method, "truncation": truncation,
                "seed": seed, "train_ticks": max_ticks, LENGTH_OPTION[task]: length}  # fmt: skip
    if task != "mackey-glass":
        settings["test_ticks"] = test_ticks
    if method == "bptt" and task != "mackey-glass":
        settings["sequence_length"] = 4 * (length + (3 if task == "copy" else 0))
    args = argparse.Namespace(**settings)
    check_args(args)
    return args


def cells_of(args: argparse.Namespace) -> dict[Cell, argparse.Namespace]:
    """Every cell of the grid with its options (all validated before any training)."""
    labels = method_labels()
    methods = args.methods or list(labels)
    unknown = [m for m in methods if m not in labels]
    if unknown:
        raise ValueError(f"unknown method {unknown[0]!r}; expected some of {labels}")
    if not (math.isfinite(args.budget) and args.budget > 0):
        raise ValueError(f"--budget must be a positive number of seconds, got {args.budget}")
    return {
        (task, n, m, s): study_args(task, n, m, s, args.max_ticks, args.test_ticks)
        for task in args.tasks
        for n in args.lengths
        for m in methods
        for s in range(args.seeds)
    }


class StudyResults:
    """The cells done so far (results.json: one record per cell, rewritten atomically after
    each); on ``--resume`` a record is kept when its ``stream`` settings (budget, stream
    lengths) equal this run's, and its cell is not run again."""

    def __init__(self, path: Path, stream: dict[str, Any], resume: bool) -> None:
        self.path, self.stream = path, stream
        self.records: list[dict[str, Any]] = []
        if resume and path.is_file():
            try:
                loaded = json.loads(path.read_text(encoding="utf-8"))
            except json.JSONDecodeError as error:
                raise ValueError(f"--resume: {path} is not valid JSON ({error})") from None
            if not isinstance(loaded, list) or not all(
                isinstance(r, dict) and "cell" in r for r in loaded
            ):
                raise ValueError(f"--resume: {path} does not hold the results of this study")
            self.records = [r for r in loaded if self._matches(r)]

    def _matches(self, record: dict[str, Any]) -> bool:
        return all(record.get(key) == value for key, value in self.stream.items())

    def done(self) -> set[Cell]:
        return {tuple(r["cell"]) for r in self.records}

    def add(self, cell: Cell, metrics: dict[str, Any]) -> None:
        self.records.append({"cell": list(cell), **self.stream, **metrics})
        atomic_write_text(self.path, json.dumps(self.records, indent=1) + "\n")


def _run_cell(item: tuple[Cell, argparse.Namespace, float, int]) -> tuple[Cell, dict]:
    cell, cell_args, budget, threads = item
    with thread_policy(threads), flush_denormals():
        result, _ = run_online(cell_args, progress=False, budget=budget)
    return cell, result.metrics


def _run(todo: list[tuple[Cell, argparse.Namespace]], args) -> Iterator[tuple[Cell, dict]]:
    items = [(cell, a, args.budget, args.threads) for cell, a in todo]
    if args.workers == 1:
        yield from map(_run_cell, items)
        return
    with ProcessPoolExecutor(max_workers=args.workers) as pool:
        yield from pool.map(_run_cell, items)


def solved(metrics: dict[str, Any]) -> bool:
    """Whether a cell's test metric meets the study's bar (:data:`SOLVED_ACCURACY`, ...)."""
    metric = metrics["metric"]
    value, baselines = metrics[f"test_{metric}"], metrics["baselines"]
    if metric == "accuracy":
        return bool(value >= SOLVED_ACCURACY)
    if metric == "mse":
        return bool(value <= SOLVED_MSE_FRACTION * baselines["mean"])
    return bool(value < min(baselines.values()))


def handle(args: argparse.Namespace) -> int:
    cells = cells_of(args)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    stream = {"budget": args.budget, "max_ticks": args.max_ticks, "test_ticks": args.test_ticks}
    results = StudyResults(out / "results.json", stream, args.resume)
    done = results.done()
    todo = [(cell, a) for cell, a in cells.items() if cell not in done]
    print(f"{len(cells)} cells, {len(cells) - len(todo)} from results.json; "
          f"{args.budget:g} s of training each, {args.workers} worker(s)", flush=True)  # fmt: skip
    start = time.perf_counter()
    for cell, metrics in _run(todo, args):
        results.add(cell, metrics)
        metric = metrics["metric"]
        print(
            f"{cell[0]} n={cell[1]} {cell[2]} seed={cell[3]}: {metric} "
            f"{metrics[f'test_{metric}']:.4g} ({metrics['train_ticks']:,} ticks, "
            f"{metrics['ticks_per_second']:.0f}/s)",
            flush=True,
        )
    wall = time.perf_counter() - start
    records = [r for r in results.records if tuple(r["cell"]) in cells]
    table = study_table(records, args)
    summary = (
        f"{table}\nBudget {args.budget:g} s of training per cell, {args.seeds} seed(s); cells: "
        "mean ± standard deviation of the test metric over seeds (mean training elements per "
        "second); ✓: solved on every seed (accuracy ≥ 0.95; adding: MSE ≤ a tenth of the "
        "mean predictor's; prediction: NMSE below every baseline).  Wall time of this "
        f"invocation {wall:.0f} s with {args.workers} worker(s)"
        + (
            f", {len(cells) - len(todo)} cells taken from results.json"
            if len(todo) < len(cells)
            else ""
        )
        + ".\n"
    )
    atomic_write_text(out / "table.md", summary)
    atomic_write_with(out / "study.png", lambda path: _plot(records, args, path))
    print(summary)
    return 0


def _of(records: list[dict], task: str, n: int, label: str) -> list[dict]:
    return [r for r in records if r["cell"][:3] == [task, n, label]]


def _cell_text(rows: list[dict]) -> str:
    if not rows:
        return "–"
    metric = rows[0]["metric"]
    values = [r[f"test_{metric}"] for r in rows]
    mean = statistics.mean(values)
    spread = f" ± {statistics.stdev(values):.2g}" if len(values) > 1 else ""
    speed = statistics.mean(r["ticks_per_second"] for r in rows)
    mark = " ✓" if all(solved(r) for r in rows) else ""
    return f"{mean:.3g}{spread}{mark} ({speed:,.0f}/s)"


def study_table(records: list[dict], args: argparse.Namespace) -> str:
    """One Markdown table per task: lengths × methods, with the baselines per length."""
    labels = args.methods or list(method_labels())
    parts = []
    for task in args.tasks:
        task_rows = [r for r in records if r["cell"][0] == task]
        if not task_rows:
            continue
        metric = task_rows[0]["metric"]
        parts.append(f"**{task}** (test {metric}; n = {LENGTH_OPTION[task]})\n")
        parts.append("| n | " + " | ".join(labels) + " | baselines |")
        parts.append("| --- | " + " | ".join("---" for _ in labels) + " | --- |")
        for n in args.lengths:
            rows = [r for r in task_rows if r["cell"][1] == n]
            base = rows[0]["baselines"] if rows else {}
            cells = [_cell_text(_of(records, task, n, m)) for m in labels]
            based = ", ".join(f"{k} {v:.3g}" for k, v in base.items())
            parts.append(f"| {n} | " + " | ".join(cells) + f" | {based} |")
        parts.append("")
    return "\n".join(parts)


def _plot(records: list[dict], args: argparse.Namespace, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels = args.methods or list(method_labels())
    tasks = [t for t in args.tasks if any(r["cell"][0] == t for r in records)]
    fig, axes = plt.subplots(1, max(1, len(tasks)), figsize=(4.2 * max(1, len(tasks)), 3.6))
    axes = [axes] if len(tasks) <= 1 else list(axes)
    for ax, task in zip(axes, tasks, strict=False):
        metric = next(r["metric"] for r in records if r["cell"][0] == task)
        for k, label in enumerate(labels):
            xs, ys = [], []
            for n in args.lengths:
                rows = _of(records, task, n, label)
                if rows:
                    xs.append(n)
                    ys.append(statistics.mean(r[f"test_{metric}"] for r in rows))
            ax.plot(xs, ys, marker="o", color=f"C{k}", label=label)
        names = sorted({b for r in records if r["cell"][0] == task for b in r["baselines"]})
        for name in names:
            xs = [n for n in args.lengths if _of(records, task, n, labels[0])]
            ys = [_of(records, task, n, labels[0])[0]["baselines"][name] for n in xs]
            ax.plot(xs, ys, ls="--", color="gray", lw=1)
            if ys:
                ax.annotate(name, (xs[-1], ys[-1]), fontsize=7, color="gray")
        ax.set_xscale("log", base=2)
        if metric != "accuracy":
            ax.set_yscale("log")
        ax.set_xlabel(f"n ({LENGTH_OPTION[task]})")
        ax.set_ylabel(f"test {metric}")
        ax.set_title(task)
    axes[0].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=100, format="png")
    plt.close(fig)
