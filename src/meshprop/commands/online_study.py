"""``meshprop reproduce online``: delayed-recall accuracy against the delay D for online FOP
(RTRL), truncated BPTT with a window of D/2 and offline full BPTT, over several seeds, with the
training wall time; writes results.json, a Markdown table and a plot.

Every cell runs ``meshprop online`` with its defaults, except that truncated BPTT trains on at
most ``--tbptt-ticks`` elements (default 30,000): each of its elements backpropagates through D/2
elements, so at D = 40 it costs ~20× an online FOP element, and the first prototype found it
at chance level after 300,000 elements at every window below 2D anyway."""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

from ..atomic import atomic_write_text, atomic_write_with
from ..threads import DEFAULT_THREADS, thread_policy
from .checks import declare_outputs, declare_ranges
from .online import (
    DEFAULTS,
    check_args,
    default_train_ticks,
    flush_denormals,
    run_online,
)
from .options import add_threads_option

__all__ = ["add_parser", "study_args"]

STUDY_METHODS = ("fop", "tbptt", "bptt")
TBPTT_TICKS = 30_000


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "online",
        help="delayed recall: accuracy against the delay for fop, tbptt(D/2) and bptt",
        description=__doc__,
    )
    p.add_argument("--delays", type=int, nargs="+", default=[5, 10, 20, 40], help="delays D")
    p.add_argument(
        "--methods",
        nargs="+",
        choices=STUDY_METHODS,
        default=list(STUDY_METHODS),
        help="gradient methods",
    )
    p.add_argument("--seeds", type=int, default=3, help="seeds per (D, method)")
    p.add_argument(
        "--train-ticks", type=int, help="training elements (default: the online command's, by D)"
    )
    p.add_argument(
        "--tbptt-ticks",
        type=int,
        default=TBPTT_TICKS,
        help="at most this many training elements for tbptt (its elements cost ~D/2 times more)",
    )
    p.add_argument("--out", default="runs/reproduce-online", metavar="DIR", help="output directory")
    p.add_argument(
        "--resume",
        action="store_true",
        help="keep the cells already in DIR/results.json (same delay, method, seed, training "
        "length and window) and run only the others (results.json is rewritten after each cell)",
    )
    add_threads_option(p, DEFAULT_THREADS)
    p.set_defaults(handler=handle)
    declare_outputs(p, out="dir")
    declare_ranges(p, delays=">= 1", seeds=">= 1", train_ticks=">= 1", tbptt_ticks=">= 1")


def study_args(delay: int, method: str, seed: int, train_ticks: int | None) -> argparse.Namespace:
    """The ``meshprop online`` options of one cell of the study (the command's defaults)."""
    args = argparse.Namespace(
        **{**DEFAULTS, "task": "delayed-recall", "method": method, "delay": delay,
           "train_ticks": train_ticks, "seed": seed}
    )  # fmt: skip
    check_args(args)
    return args


def _cell(values: list[float]) -> str:
    if len(values) == 1:
        return f"{100 * values[0]:.1f} %"
    return f"{100 * statistics.mean(values):.1f} ± {100 * statistics.stdev(values):.1f} %"


def handle(args: argparse.Namespace) -> int:
    def ticks(D: int, method: str) -> int:
        n = args.train_ticks or default_train_ticks("delayed-recall", D)
        return min(n, args.tbptt_ticks) if method == "tbptt" else n

    cells = {
        (D, m, s): study_args(D, m, s, ticks(D, m))
        for D in args.delays
        for m in args.methods
        for s in range(args.seeds)
    }  # every option validated before any training
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    done = _done_cells(out / "results.json") if args.resume else {}
    results = []
    start = time.perf_counter()
    reused = 0
    with thread_policy(args.threads), flush_denormals():
        for (D, method, seed), cell_args in cells.items():
            key = _cell_key(vars(cell_args))
            label = f"D={D} {method} {cell_args.train_ticks} ticks"
            if method == "tbptt":
                label += f"(k={cell_args.truncation})"
            if key in done:
                metrics, reused = done[key], reused + 1
                label += " (from results.json)"
            else:
                metrics = run_online(cell_args, progress=False)[0].metrics
            results.append(metrics)
            print(
                f"{label} seed={seed}: accuracy {metrics['test_accuracy']:.4f} "
                f"({metrics['train_seconds']:.1f} s)",
                flush=True,
            )
            atomic_write_text(out / "results.json", json.dumps(results, indent=2) + "\n")
    wall = time.perf_counter() - start
    lines = [
        "| D | " + " | ".join(_header(m) for m in args.methods) + " |",
        "| --- | " + " | ".join("---" for _ in args.methods) + " |",
    ]
    for D in args.delays:
        row = [str(D)]
        for m in args.methods:
            acc = [r["test_accuracy"] for r in results if r["delay"] == D and r["method"] == m]
            secs = [r["train_seconds"] for r in results if r["delay"] == D and r["method"] == m]
            row.append(f"{_cell(acc)} ({ticks(D, m):,} ticks, {statistics.mean(secs):.1f} s)")
        lines.append("| " + " | ".join(row) + " |")
    table = "\n".join(lines)
    summary = (
        f"{table}\n\nseeds: {args.seeds}; cells: mean ± standard deviation of the test accuracy "
        f"(training elements, mean training seconds per seed); total wall time {wall:.0f} s"
        + (f" (this invocation; {reused} cells taken from results.json)" if reused else "")
        + "\n"
    )
    atomic_write_text(out / "table.md", summary)
    atomic_write_with(out / "accuracy_vs_delay.png", lambda path: _plot(results, args, path))
    print(summary)
    return 0


def _cell_key(metrics: dict) -> tuple:
    """What identifies a cell of the study in its metrics (and in its options)."""
    return tuple(metrics.get(k) for k in ("delay", "method", "seed", "train_ticks", "truncation"))


def _done_cells(path: Path) -> dict[tuple, dict]:
    """The cells of an earlier run of the study (``--resume``), by :func:`_cell_key`."""
    if not path.is_file():
        return {}
    try:
        results = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as error:
        raise ValueError(f"--resume: {path} is not valid JSON ({error})") from None
    if not isinstance(results, list) or not all(
        isinstance(r, dict) and "test_accuracy" in r for r in results
    ):
        raise ValueError(f"--resume: {path} does not hold the results of reproduce online")
    return {_cell_key(r): r for r in results}


def _header(method: str) -> str:
    return {
        "fop": "fop online (RTRL)",
        "tbptt": "tbptt (k = D/2)",
        "bptt": "full bptt (sequences of 4D)",
    }[method]


def _plot(results: list[dict], args: argparse.Namespace, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 3.5))
    for m in args.methods:
        means = [
            statistics.mean(
                r["test_accuracy"] for r in results if r["delay"] == D and r["method"] == m
            )
            for D in args.delays
        ]
        ax.plot(args.delays, means, marker="o", label=_header(m))
    ax.set_xlabel("delay D")
    ax.set_ylabel("test accuracy")
    ax.set_ylim(0.4, 1.02)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100, format="png")
    plt.close(fig)
