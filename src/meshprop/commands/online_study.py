"""``meshprop reproduce online``: every online method against every memory length, at equal
wall-clock time.

The grid: methods × tasks × lengths × seeds.  Methods: every registered online method
(``mp.ONLINE_METHODS``; truncated BPTT twice, with a window of k = n/2 and k = n elements for
length n) and offline full BPTT.  Tasks and what their length n sets: ``delayed-recall``
(the delay D = n), ``copy`` (the blank D = n after a pattern of 3), ``adding`` (episodes of
L = n), ``mackey-glass`` (the horizon H = n).  Every cell is a ``meshprop online``
configuration (:class:`~meshprop.runs.online_config.OnlineConfig`) with the task's default
network and settings, trains for ``--budget`` seconds of training time (or until
``--max-ticks`` elements) and is scored on the task's held-out part beside its baselines.
Every cell is a unit of work of the run folder, saved in units.json as soon as it is done
(by this process, also with ``--workers``): ``--resume`` keeps the cells done (by task,
length, method, seed, budget and stream lengths; the grid may grow) and runs only the
others.  Writes results.json (every cell of the grid), table.md (per task: the metric's mean
± standard deviation over seeds and the mean training elements per second, per length and
method) and study.png.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..runs.config import setting
from ..runs.folder import UNITS_FILE, RunFolder
from ..runs.online import run_online
from ..runs.online_config import OnlineConfig
from ..runs.settings import ConfigError, at_least_one, check_fields, positive
from ..sequence import flush_denormals
from ..threads import DEFAULT_THREADS, thread_policy
from .checks import declare_outputs
from .interrupts import StopRequest
from .options import add_run_options, add_settings_options
from .runner import run_command

__all__ = [
    "STUDY_TASKS",
    "Cell",
    "StudyConfig",
    "add_parser",
    "cell_config",
    "cells_of",
    "method_labels",
    "solved",
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


@dataclass
class StudyConfig:
    """The settings of ``meshprop reproduce online`` (saved as its ``config.json``).  Every
    one may change on ``--resume``: the cells done are kept by what defines each."""

    tasks: list[str] = setting(  # noqa: RUF009 (setting is dataclasses.field)
        list(STUDY_TASKS),
        "tasks",
        group="grid",
        metavar="TASK",
        choices=lambda: STUDY_TASKS,
        nargs="+",
        shown="all four",
        free_on_resume=True,
    )
    lengths: list[int] = setting(  # noqa: RUF009 (setting is dataclasses.field)
        list(DEFAULT_LENGTHS),
        "lengths n",
        group="grid",
        metavar="N",
        nargs="+",
        check=(">= 2", lambda v: len(v) > 0 and all(n >= 2 for n in v)),
        free_on_resume=True,
    )
    methods: list[str] | None = setting(  # noqa: RUF009 (setting is dataclasses.field)
        None,
        "method labels",
        group="grid",
        metavar="METHOD",
        nargs="+",
        shown="all of them: the online methods of the registry, tbptt as tbptt-half and "
        "tbptt-full, and bptt",
        free_on_resume=True,
    )
    seeds: int = setting(
        3, "seeds per cell (0, 1, …)", group="grid", check=(">= 1", at_least_one),
        free_on_resume=True,
    )  # fmt: skip
    budget: float = setting(
        DEFAULT_BUDGET,
        "training time of every cell",
        group="cell",
        metavar="SECONDS",
        check=("a positive number of seconds", positive),
        free_on_resume=True,
    )
    max_ticks: int = setting(
        DEFAULT_MAX_TICKS,
        "the training stream's length: a cell stops there if its budget lasts",
        group="cell",
        check=(">= 1", at_least_one),
        free_on_resume=True,
    )
    test_ticks: int | None = setting(
        None,
        "held-out stream of delayed recall, copy and adding",
        group="cell",
        check=(">= 1", at_least_one),
        shown="the task's, 5000",
        free_on_resume=True,
    )
    workers: int = setting(
        1, "cells run side by side (processes)", group="cell", check=(">= 1", at_least_one),
        free_on_resume=True,
    )  # fmt: skip

    def __post_init__(self) -> None:
        check_fields(self)
        labels = method_labels()
        unknown = [m for m in self.methods or [] if m not in labels]
        if unknown:
            raise ConfigError(
                f"{{0}}: unknown method {unknown[0]!r}; expected some of {', '.join(labels)}",
                "methods",
            )

    @property
    def labels(self) -> list[str]:
        """The method labels of the grid (all of them when ``methods`` is not given)."""
        return list(self.methods or method_labels())


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "online",
        help="every online method × delayed recall, copy, adding, Mackey–Glass × lengths, "
        "at equal time per cell",
        description=__doc__,
    )
    add_settings_options(p, StudyConfig)
    add_run_options(p, out="runs/reproduce-online", threads=DEFAULT_THREADS)
    p.set_defaults(handler=handle)
    declare_outputs(p, out="dir")


def cell_config(
    task: str,
    length: int,
    label: str,
    seed: int,
    max_ticks: int,
    test_ticks: int | None = None,
) -> OnlineConfig:
    """The ``meshprop online`` configuration of one cell (the command's defaults for the
    task)."""
    method, truncation = _method(label, length)
    settings: dict[str, Any] = {"task": task, "method": method, "truncation": truncation,
                                "seed": seed, "train_ticks": max_ticks,
                                LENGTH_OPTION[task]: length}  # fmt: skip
    if task != "mackey-glass":
        settings["test_ticks"] = test_ticks
    if method == "bptt" and task != "mackey-glass":
        settings["sequence_length"] = 4 * (length + (3 if task == "copy" else 0))
    return OnlineConfig(**settings)


def cells_of(config: StudyConfig) -> dict[Cell, OnlineConfig]:
    """Every cell of the grid with its configuration (all checked before any training)."""
    return {
        (task, n, m, s): cell_config(task, n, m, s, config.max_ticks, config.test_ticks)
        for task in config.tasks
        for n in config.lengths
        for m in config.labels
        for s in range(config.seeds)
    }


def _stream(config: StudyConfig) -> dict[str, Any]:
    """What besides the cell defines a cell's result: the budget and the streams' lengths."""
    return {"budget": config.budget, "max_ticks": config.max_ticks, "test_ticks": config.test_ticks}


def unit_key(cell: Cell, config: StudyConfig) -> str:
    """The cell's key in units.json: the cell and what else defines its result."""
    task, n, label, seed = cell
    stream = _stream(config)
    return f"{task}/n={n}/{label}/seed={seed}/" + "/".join(f"{k}={v}" for k, v in stream.items())


def _run_cell(item: tuple[Cell, OnlineConfig, float, int]) -> tuple[Cell, dict]:
    cell, cell_config_, budget, threads = item
    with thread_policy(threads), flush_denormals():
        result, _ = run_online(cell_config_, progress=False, budget=budget)
    return cell, result.metrics


def _run(todo: list[tuple[Cell, OnlineConfig]], config: StudyConfig, threads: int
         ) -> Iterator[tuple[Cell, dict]]:  # fmt: skip
    """The cells' metrics as they finish (in order): in this process, or in ``workers``
    processes; an interruption cancels the cells not started."""
    items = [(cell, c, config.budget, threads) for cell, c in todo]
    if config.workers == 1:
        yield from map(_run_cell, items)
        return
    pool = ProcessPoolExecutor(max_workers=config.workers)
    try:
        yield from pool.map(_run_cell, items)
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def solved(metrics: dict[str, Any]) -> bool:
    """Whether a cell's test metric meets the study's bar (:data:`SOLVED_ACCURACY`, ...)."""
    metric = metrics["metric"]
    value, baselines = metrics[f"test_{metric}"], metrics["baselines"]
    if metric == "accuracy":
        return bool(value >= SOLVED_ACCURACY)
    if metric == "mse":
        return bool(value <= SOLVED_MSE_FRACTION * baselines["mean"])
    return bool(value < min(baselines.values()))


def _done(record: dict[str, Any]) -> Callable[[], dict[str, Any]]:
    """The unit's computation when it was computed elsewhere (a worker): its record."""
    return lambda: record


def handle(args: argparse.Namespace) -> int:
    def work(config: StudyConfig, folder: RunFolder, stop: StopRequest) -> int:
        run_study(config, folder, args.threads)
        return 0

    return run_command(
        args, "reproduce online", StudyConfig, work, prepare=cells_of, state=UNITS_FILE
    )


def run_study(config: StudyConfig, folder: RunFolder, threads: int) -> list[dict[str, Any]]:
    """The grid into ``folder`` (see the module docstring); returns results.json's records."""
    cells = cells_of(config)
    saved = folder.load_units()
    keys = {cell: unit_key(cell, config) for cell in cells}
    kept = [saved[keys[cell]] for cell in cells if keys[cell] in saved]
    todo = [(cell, c) for cell, c in cells.items() if keys[cell] not in saved]
    print(f"{len(cells)} cells, {len(kept)} kept from {UNITS_FILE}; {config.budget:g} s of "
          f"training each, {config.workers} worker(s)", flush=True)  # fmt: skip
    records = list(kept)
    start = time.perf_counter()
    for cell, metrics in _run(todo, config, threads):
        record = {"cell": list(cell), **_stream(config), **metrics}
        records.append(folder.unit(keys[cell], _done(record)))
        metric = metrics["metric"]
        print(
            f"{cell[0]} n={cell[1]} {cell[2]} seed={cell[3]}: {metric} "
            f"{metrics[f'test_{metric}']:.4g} ({metrics['train_ticks']:,} ticks, "
            f"{metrics['ticks_per_second']:.0f}/s)",
            flush=True,
        )
    wall = time.perf_counter() - start
    table = study_table(records, config)
    summary = (
        f"{table}\nBudget {config.budget:g} s of training per cell, {config.seeds} seed(s); "
        "cells: mean ± standard deviation of the test metric over seeds (mean training "
        "elements per second); ✓: solved on every seed (accuracy ≥ 0.95; adding: MSE ≤ a "
        "tenth of the mean predictor's; prediction: NMSE below every baseline).  Wall time of "
        f"this invocation {wall:.0f} s with {config.workers} worker(s)"
        + (f", {len(kept)} cells taken from the run's saved units ({UNITS_FILE})" if kept else "")
        + ".\n"
    )
    folder.write_json("results.json", records)
    folder.write_text("table.md", summary)
    folder.write_with("study.png", lambda path: _plot(records, config, path))
    folder.finish(folder.path(UNITS_FILE))
    print(summary)
    return records


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


def study_table(records: list[dict], config: StudyConfig) -> str:
    """One Markdown table per task: lengths × methods, with the baselines per length."""
    labels = config.labels
    parts = []
    for task in config.tasks:
        task_rows = [r for r in records if r["cell"][0] == task]
        if not task_rows:
            continue
        metric = task_rows[0]["metric"]
        parts.append(f"**{task}** (test {metric}; n = {LENGTH_OPTION[task]})\n")
        parts.append("| n | " + " | ".join(labels) + " | baselines |")
        parts.append("| --- | " + " | ".join("---" for _ in labels) + " | --- |")
        for n in config.lengths:
            rows = [r for r in task_rows if r["cell"][1] == n]
            base = rows[0]["baselines"] if rows else {}
            cells = [_cell_text(_of(records, task, n, m)) for m in labels]
            based = ", ".join(f"{k} {v:.3g}" for k, v in base.items())
            parts.append(f"| {n} | " + " | ".join(cells) + f" | {based} |")
        parts.append("")
    return "\n".join(parts)


def _plot(records: list[dict], config: StudyConfig, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels = config.labels
    tasks = [t for t in config.tasks if any(r["cell"][0] == t for r in records)]
    fig, axes = plt.subplots(1, max(1, len(tasks)), figsize=(4.2 * max(1, len(tasks)), 3.6))
    axes = [axes] if len(tasks) <= 1 else list(axes)
    for ax, task in zip(axes, tasks, strict=False):
        metric = next(r["metric"] for r in records if r["cell"][0] == task)
        for k, label in enumerate(labels):
            xs, ys = [], []
            for n in config.lengths:
                rows = _of(records, task, n, label)
                if rows:
                    xs.append(n)
                    ys.append(statistics.mean(r[f"test_{metric}"] for r in rows))
            ax.plot(xs, ys, marker="o", color=f"C{k}", label=label)
        names = sorted({b for r in records if r["cell"][0] == task for b in r["baselines"]})
        for name in names:
            xs = [n for n in config.lengths if _of(records, task, n, labels[0])]
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
