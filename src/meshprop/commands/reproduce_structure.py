"""``meshprop reproduce structure``: test accuracy against density for static sparsity, SET and
RigL (``meshprop.structure``), several seeds each, with the dense mesh as the ceiling.

Each run is a :class:`~meshprop.runs.RunConfig` trained by :func:`meshprop.runs.run` (the one
training loop); only ``density``, ``structure`` and ``seed`` change between runs.  Writes
DIR/structure.json (every run), DIR/structure.md (the table) and DIR/structure.png.
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
from pathlib import Path
from typing import Any

from ..data import DATASETS
from ..reporting import Reporter
from ..runs import RunConfig, run
from ..structure import STRUCTURES
from ..threads import DEFAULT_THREADS, thread_policy
from .checks import declare_outputs, declare_ranges
from .options import add_threads_option

__all__ = ["DENSITIES", "FASHION_FEATURES", "register", "structure_config"]

DENSITIES = (1.0, 0.5, 0.2, 0.1, 0.05)
#: built-in names under which the Fashion-MNIST features may be registered (included if present)
FASHION_FEATURES = ("fashion-mnist-features", "fashion-features")


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "structure",
        help="structural learning: test accuracy against density, static vs SET vs RigL",
        description="Train a mesh on each dataset at each density with each structure rule "
        "(static random sparsity, SET, RigL; the full mesh at density 1 is the ceiling) over "
        "several seeds; write structure.json, structure.md and structure.png. The Fashion-MNIST "
        "features are included when they are a built-in dataset.",
    )
    p.add_argument(
        "--datasets",
        nargs="+",
        default=None,
        metavar="NAME",
        help="built-in datasets (default: digits, plus the Fashion-MNIST features when present)",
    )
    p.add_argument(
        "--densities",
        nargs="+",
        type=float,
        default=list(DENSITIES),
        help="densities (default: 1.0 0.5 0.2 0.1 0.05)",
    )
    p.add_argument(
        "--methods",
        nargs="+",
        choices=[s for s in STRUCTURES if s != "magnitude"] + ["magnitude"],
        default=["static", "set", "rigl"],
        help="structure rules below density 1 (default: static set rigl)",
    )
    p.add_argument("--seeds", type=int, default=3, help="seeds 0..SEEDS-1 (default: 3)")
    p.add_argument("--hidden", type=int, default=32, help="hidden neurons (default: 32)")
    p.add_argument(
        "--degree",
        type=float,
        default=None,
        metavar="D",
        help="large sparse meshes: each run starts from Topology.sparse_random of mean degree D "
        "(density 1) thinned to each density, stored per edge (--layout sparse); default: "
        "random meshes over all allowed edges",
    )
    p.add_argument("--ticks", type=int, default=3, help="state transitions T (default: 3)")
    p.add_argument("--lr", type=float, default=0.01, help="Adam's learning rate (default: 0.01)")
    p.add_argument("--epochs", type=int, default=60, help="epochs per run (default: 60)")
    p.add_argument(
        "--update-every", type=int, default=50, help="steps between updates (default: 50)"
    )
    p.add_argument(
        "--drop-fraction", type=float, default=0.3, help="initial drop fraction (default: 0.3)"
    )
    p.add_argument(
        "--grad",
        default="bptt",
        help="engine of the training steps (default: bptt; every engine's gradient is exact)",
    )
    p.add_argument(
        "--out",
        default="runs/reproduce-structure",
        metavar="DIR",
        help="output directory (default: runs/reproduce-structure)",
    )
    add_threads_option(p, DEFAULT_THREADS)
    p.set_defaults(handler=handle)
    declare_outputs(p, out="dir")
    declare_ranges(
        p,
        densities="in (0, 1]",
        seeds=">= 1",
        hidden=">= 1",
        degree="> 0",
        ticks=">= 1",
        lr="> 0",
        epochs=">= 1",
        update_every=">= 1",
        drop_fraction="in (0, 1)",
    )


def structure_config(
    dataset: str, density: float, method: str, seed: int, args: argparse.Namespace
) -> RunConfig:
    """One run of the sweep: a mesh of ``args.hidden`` neurons (with ``args.degree``, a
    ``Topology.sparse_random`` mesh thinned to ``density`` on the sparse layout), ``args.ticks``
    ticks, ReLU, logit outputs, Adam (``args.lr``), batch 32, float32, 70/30 split."""
    return RunConfig(
        dataset=dataset,
        hidden=args.hidden,
        ticks=args.ticks,
        degree=args.degree,
        layout="dense" if args.degree is None else "sparse",
        lr=args.lr,
        density=density,
        structure=method if density < 1 else "static",
        update_every=args.update_every,
        drop_fraction=args.drop_fraction,
        grad=args.grad,
        optimizer="adam",
        epochs=args.epochs,
        batch_size=32,
        seed=seed,
        test_size=0.3,
        dtype="float32",
    )


def handle(args: argparse.Namespace) -> int:
    if args.seeds < 1:
        raise ValueError(f"--seeds must be >= 1, got {args.seeds}")
    bad = [d for d in args.densities if not 0 < d <= 1]
    if bad:
        raise ValueError(f"--densities must be in (0, 1], got {bad[0]}")
    if args.degree is not None and "magnitude" in args.methods:
        raise ValueError(
            "--degree starts every run from a sparse mesh; magnitude pruning starts from the full "
            "mesh: give --methods static set rigl"
        )
    datasets = args.datasets
    if datasets is None:
        datasets = ["digits", *(name for name in FASHION_FEATURES if name in DATASETS)]
    with thread_policy(args.threads, "--threads"):
        return _sweep(args, datasets)


def _summary(values: list[float]) -> dict[str, Any]:
    std = statistics.stdev(values) if len(values) > 1 else 0.0
    return {"accuracies": values, "mean": statistics.mean(values), "std": std}


def _sweep(args: argparse.Namespace, datasets: list[str]) -> int:
    from .. import plots

    out = Path(args.out)
    reporter = Reporter()
    document: dict[str, Any] = {"settings": {}, "datasets": {}}
    tables = []
    for dataset in datasets:
        results: dict[str, dict[str, Any]] = {}
        for density in sorted(set(args.densities), reverse=True):
            for method in ["dense"] if density >= 1 else args.methods:
                accuracies, edges = [], []
                for seed in range(args.seeds):
                    config = structure_config(dataset, density, method, seed, args)
                    result = run(config, reporter)
                    accuracies.append(result.test["test_accuracy"])
                    edges.append(result.net.topology.n_edges)
                    reporter.print(
                        f"{dataset} density {density:g} {method} seed {seed}: test accuracy "
                        f"{accuracies[-1]:.4f} ({result.history.wall_time_s:.1f} s)"
                    )
                key = f"{method}@{density:g}"
                results[key] = {
                    "method": method,
                    "density": density,
                    "edges": edges,
                    **_summary(accuracies),
                }
        settings = dataclasses.asdict(structure_config(dataset, 0.1, "rigl", 0, args))
        keys = ("hidden", "degree", "layout", "ticks", "lr", "epochs")
        document["settings"] = {k: settings[k] for k in keys} | {
            "update_every": args.update_every,
            "drop_fraction": args.drop_fraction,
            "grad": args.grad,
            "seeds": args.seeds,
        }
        document["datasets"][dataset] = results
        tables.append(f"### {dataset}\n\n" + _table(results, args.methods))
        fig = plots.plot_density_sweep(results, f"{dataset}: test accuracy against density")
        reporter.write_with(out / f"structure-{dataset}.png", plots.saver(fig, dpi=90))
        plots.plt.close(fig)
    reporter.write_json(out / "structure.json", document)
    text = "\n\n".join(tables) + "\n"
    reporter.write_text(out / "structure.md", text)
    reporter.print(text)
    return 0


def _table(results: dict[str, dict[str, Any]], methods: list[str]) -> str:
    """Markdown: one row per density (with its edge count), mean ± std test accuracy over the
    seeds per method; the dense mesh in its own column."""
    densities = sorted({r["density"] for r in results.values()}, reverse=True)
    columns = ["dense", *methods]
    rows = [
        "| density | edges | " + " | ".join(columns) + " |",
        "| --- | --- |" + " --- |" * len(columns),
    ]
    for d in densities:
        cells, edges = [], "-"
        for m in columns:
            r = results.get(f"{m}@{d:g}")
            cells.append("" if r is None else f"{r['mean']:.4f} ± {r['std']:.4f}")
            if r is not None:
                edges = str(r["edges"][0])
        rows.append(f"| {d:g} | {edges} | " + " | ".join(cells) + " |")
    return "\n".join(rows) + "\n"
