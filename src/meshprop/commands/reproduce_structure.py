"""``meshprop reproduce structure``: test accuracy against density for static sparsity, SET and
RigL (``meshprop.structure``), several seeds each, with the dense mesh as the ceiling.

Each run is a :class:`~meshprop.runs.RunConfig` trained by :func:`meshprop.runs.run` (the one
training loop); only ``density``, ``structure`` and ``seed`` change between runs.  Writes
DIR/structure.json (every run), DIR/structure.md (the table) and DIR/structure-DATASET.png.
Every run is a unit of work saved in DIR/units.json as soon as it is done: ``--resume`` after
an interruption (even SIGKILL) trains only the runs not done and writes the same results.
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
from dataclasses import dataclass
from typing import Any

from ..data import DATASETS
from ..reporting import Reporter
from ..runs import RunConfig, run
from ..runs.config import setting
from ..runs.folder import UNITS_FILE, RunFolder
from ..runs.settings import ConfigError, at_least_one, check_fields
from ..structure import STRUCTURES
from .checks import declare_outputs
from .interrupts import StopRequest
from .options import add_run_options, add_settings_options
from .runner import run_command

__all__ = [
    "DENSITIES",
    "FASHION_FEATURES",
    "StructureConfig",
    "register",
    "run_structure",
    "structure_config",
]

DENSITIES = (1.0, 0.5, 0.2, 0.1, 0.05)
#: built-in names under which the Fashion-MNIST features may be registered (included if present)
FASHION_FEATURES = ("fashion-mnist-features", "fashion-features")


@dataclass
class StructureConfig:
    """The settings of ``meshprop reproduce structure`` (saved as its ``config.json``)."""

    datasets: list[str] | None = setting(  # noqa: RUF009 (setting is dataclasses.field)
        None,
        "built-in datasets",
        group="sweep",
        metavar="NAME",
        choices=lambda: DATASETS,
        nargs="+",
        shown="digits, plus the Fashion-MNIST features when present",
    )
    densities: list[float] = setting(  # noqa: RUF009 (setting is dataclasses.field)
        list(DENSITIES),
        "densities",
        group="sweep",
        metavar="D",
        nargs="+",
        check=("all in (0, 1]", lambda v: len(v) > 0 and all(0 < d <= 1 for d in v)),
    )
    methods: list[str] = setting(  # noqa: RUF009 (setting is dataclasses.field)
        ["static", "set", "rigl"],
        "structure rules below density 1",
        group="sweep",
        metavar="RULE",
        choices=lambda: STRUCTURES,
        nargs="+",
    )
    seeds: int = setting(3, "seeds 0..SEEDS-1", group="sweep", check=(">= 1", at_least_one))
    hidden: int = setting(32, "hidden neurons", group="run", check=(">= 1", at_least_one))
    degree: float | None = setting(
        None,
        "large sparse meshes: each run starts from Topology.sparse_random of mean degree D "
        "(density 1) thinned to each density, stored per edge (--layout sparse)",
        group="run",
        metavar="D",
        check=("> 0", lambda v: v > 0),
        shown="random meshes over all allowed edges",
    )
    ticks: int = setting(3, "state transitions T", group="run", check=(">= 1", at_least_one))
    lr: float = setting(0.01, "Adam's learning rate", group="run", check=("> 0", lambda v: v > 0))
    epochs: int = setting(60, "epochs per run", group="run", check=(">= 1", at_least_one))
    update_every: int = setting(
        50, "steps between updates", group="run", check=(">= 1", at_least_one)
    )
    drop_fraction: float = setting(
        0.3, "initial drop fraction", group="run", check=("in (0, 1)", lambda v: 0 < v < 1)
    )
    grad: str = setting(
        "bptt", "engine of the training steps (every engine's gradient is exact)", group="run"
    )

    def __post_init__(self) -> None:
        check_fields(self)
        if self.degree is not None and "magnitude" in self.methods:
            raise ConfigError(
                "{0} starts every run from a sparse mesh; magnitude pruning starts from the full "
                "mesh: give {1} static set rigl",
                "degree",
                "methods",
            )
        if self.datasets is None:
            self.datasets = ["digits", *(name for name in FASHION_FEATURES if name in DATASETS)]


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "structure",
        help="structural learning: test accuracy against density, static vs SET vs RigL",
        description="Train a mesh on each dataset at each density with each structure rule "
        "(static random sparsity, SET, RigL; the full mesh at density 1 is the ceiling) over "
        "several seeds; write structure.json, structure.md and structure-DATASET.png. The "
        "Fashion-MNIST features are included when they are a built-in dataset. --resume "
        "continues an interrupted sweep from the runs it had finished.",
    )
    add_settings_options(p, StructureConfig)
    add_run_options(p, out="runs/reproduce-structure")
    p.set_defaults(handler=handle)
    declare_outputs(p, out="dir")


def structure_config(dataset: str, density: float, method: str, seed: int, args: Any) -> RunConfig:
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
    reporter = Reporter(progress=not args.no_progress)

    def work(config: StructureConfig, folder: RunFolder, stop: StopRequest) -> int:
        run_structure(config, folder, reporter)
        return 0

    return run_command(args, "reproduce structure", StructureConfig, work, state=UNITS_FILE)


def _summary(values: list[float]) -> dict[str, Any]:
    std = statistics.stdev(values) if len(values) > 1 else 0.0
    return {"accuracies": values, "mean": statistics.mean(values), "std": std}


def run_structure(config: StructureConfig, folder: RunFolder, reporter: Reporter) -> dict:
    """The sweep into ``folder`` (see the module docstring); returns structure.json."""
    from .. import plots

    document: dict[str, Any] = {"settings": {}, "datasets": {}}
    tables = []
    for dataset in config.datasets or []:
        results: dict[str, dict[str, Any]] = {}
        for density in sorted(set(config.densities), reverse=True):
            for method in ["dense"] if density >= 1 else config.methods:
                accuracies, edges = [], []
                for seed in range(config.seeds):
                    settings = structure_config(dataset, density, method, seed, config)

                    def unit(settings: RunConfig = settings) -> dict[str, Any]:
                        result = run(settings, reporter)
                        return {
                            "accuracy": result.test["test_accuracy"],
                            "edges": result.net.topology.n_edges,
                            "seconds": result.history.wall_time_s,
                        }

                    record = folder.unit(f"{dataset}/{method}@{density:g}/seed-{seed}", unit)
                    accuracies.append(record["accuracy"])
                    edges.append(record["edges"])
                    reporter.print(
                        f"{dataset} density {density:g} {method} seed {seed}: test accuracy "
                        f"{accuracies[-1]:.4f} ({record['seconds']:.1f} s)"
                    )
                key = f"{method}@{density:g}"
                results[key] = {
                    "method": method,
                    "density": density,
                    "edges": edges,
                    **_summary(accuracies),
                }
        settings_ = dataclasses.asdict(structure_config(dataset, 0.1, "rigl", 0, config))
        keys = ("hidden", "degree", "layout", "ticks", "lr", "epochs")
        document["settings"] = {k: settings_[k] for k in keys} | {
            "update_every": config.update_every,
            "drop_fraction": config.drop_fraction,
            "grad": config.grad,
            "seeds": config.seeds,
        }
        document["datasets"][dataset] = results
        tables.append(f"### {dataset}\n\n" + _table(results, config.methods))
        fig = plots.plot_density_sweep(results, f"{dataset}: test accuracy against density")
        folder.write_with(f"structure-{dataset}.png", plots.saver(fig, dpi=90))
        plots.plt.close(fig)
    folder.write_json("structure.json", document)
    text = "\n\n".join(tables) + "\n"
    folder.write_text("structure.md", text)
    folder.finish(folder.path(UNITS_FILE))
    reporter.print(text)
    return document


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
