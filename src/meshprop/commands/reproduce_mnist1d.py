"""``meshprop reproduce mnist1d``: sparse meshes and MLPs trained by FOP on MNIST-1D, beside
the baselines its authors publish (see :mod:`meshprop.experiment.mnist1d`).

Writes DIR/results.json (the reproductions' schema, the baselines included as configurations),
DIR/details.json, DIR/results.md and DIR/accuracies.png.
"""

from __future__ import annotations

import argparse
import dataclasses
import time
from pathlib import Path

from ..reporting import Reporter
from ..threads import DEFAULT_THREADS, thread_policy
from .checks import declare_outputs, declare_ranges
from .options import add_threads_option


def add_parser(sub: argparse._SubParsersAction) -> None:
    """Add ``mnist1d`` to ``meshprop reproduce``'s experiments."""
    from ..experiment.mnist1d import PROTOCOL

    p = sub.add_parser(
        "mnist1d",
        help="MNIST-1D: MNN and MLP by FOP against logistic regression, MLP, CNN, GRU",
        description="MNIST-1D (the mnist1d package's local generator): mnn-80, mnn-50 (50 "
        "hidden, 2 ticks, 80 % / 50 % of the allowed edges removed) and mlp-16, mlp-32 "
        f"trained {PROTOCOL.epochs} epochs with Adam by --grad, one seed per run, and the "
        "published baselines (scikit-learn logistic regression and MLP, torch CNN and GRU) "
        "measured side by side.",
    )
    p.add_argument("--runs", type=int, default=10, help="runs per configuration (default: 10)")
    p.add_argument(
        "--out",
        default="runs/reproduce-mnist1d",
        metavar="DIR",
        help="output directory (default: runs/reproduce-mnist1d)",
    )
    p.add_argument("--epochs", type=int, default=PROTOCOL.epochs, help="MNN/MLP epochs")
    p.add_argument("--grad", default=PROTOCOL.grad, help="engine (default: auto, exact FOP)")
    p.add_argument(
        "--compare",
        default="autograd",
        help="engine that trains run 0 again ('none' to skip; default: autograd)",
    )
    p.add_argument(
        "--baselines",
        nargs="*",
        default=None,
        metavar="NAME",
        help="baselines to run (default: logreg sk-mlp cnn gru; none with an empty list)",
    )
    add_threads_option(p, DEFAULT_THREADS)
    p.set_defaults(handler=handle)
    declare_outputs(p, out="dir")
    declare_ranges(p, runs=">= 1", epochs=">= 1")


def handle(args: argparse.Namespace) -> int:
    from ..experiment.mnist1d import BASELINES

    if args.runs < 1 or args.epochs < 1:
        raise ValueError(f"--runs and --epochs must be >= 1, got {args.runs}, {args.epochs}")
    names = list(BASELINES) if args.baselines is None else args.baselines
    unknown = [n for n in names if n not in BASELINES]
    if unknown:
        raise ValueError(f"unknown baseline(s) {unknown}; expected some of {list(BASELINES)}")
    args.baselines = names
    with thread_policy(args.threads, "--threads"):
        return _run(args)


def _run(args: argparse.Namespace) -> int:
    from ..experiment import mnist1d
    from ..experiment.compare import compare, results_table, write_outputs
    from ..experiment.fashion import plot_accuracies, protocol_dict, verdicts

    start = time.perf_counter()
    out = Path(args.out)
    reporter = Reporter()
    data = mnist1d.load()
    protocol = dataclasses.replace(
        mnist1d.PROTOCOL,
        epochs=args.epochs,
        grad=args.grad,
        compare_grad=None if args.compare == "none" else args.compare,
    )
    results = compare(mnist1d.SPECS, data, args.runs, protocol, reporter, args.threads)
    baselines = mnist1d.run_baselines(data, args.runs, reporter, tuple(args.baselines))
    everything = results + baselines
    wall = time.perf_counter() - start
    lines = verdicts(results, mnist1d.PAIRS)
    table = results_table(results, protocol.compare_grad)
    base = ["| baseline | params | test accuracy (mean ± std) | runs | time / run | published |"]
    base.append("| --- | --- | --- | --- | --- | --- |")
    for r in baselines:
        base.append(
            f"| {r.name} | {r.params} | {r.mean:.4f} ± {r.std:.4f} | {len(r.accuracies)} | "
            f"{sum(r.seconds) / len(r.seconds):.1f} s | {mnist1d.PUBLISHED[r.name]:.2f} |"
        )
    write_outputs(
        out,
        reporter,
        everything,
        {
            "protocol": protocol_dict(protocol),
            "torch_baselines": dataclasses.asdict(mnist1d.TORCH_BUDGET),
            "published": mnist1d.PUBLISHED,
            "verdicts": lines,
            "wall_time_s": wall,
        },
        table + "\n\n" + "\n".join(base),
        lambda: plot_accuracies(everything, f"MNIST-1D, {args.runs} runs each"),
        lines,
        wall,
    )
    reporter.print(f"wrote {out / 'results.json'} ({wall:.0f} s)")
    return 0
