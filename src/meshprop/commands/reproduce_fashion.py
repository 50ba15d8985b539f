"""``meshprop reproduce fashion-mnist``: paper 001's real-world experiment (see
:mod:`meshprop.experiment.fashion`).

Writes DIR/results.json (exactly the reproductions' schema), DIR/details.json (protocol, CAE,
times, the FOP-vs-autograd weight differences), DIR/results.md (the table and the MNN-vs-MLP
verdicts), DIR/accuracies.png (the accuracy distributions).  Every run of every configuration
is a unit of work saved in DIR/units.json as soon as it is done: ``--resume`` after an
interruption (even SIGKILL) trains only the runs not done and writes the same results (the CAE
features come from their cache).
"""

from __future__ import annotations

import argparse
import dataclasses
import platform
import time
from dataclasses import dataclass

from ..experiment.fashion import CAE_BUDGET, PROTOCOL
from ..reporting import Reporter
from ..runs.config import setting
from ..runs.folder import UNITS_FILE, RunFolder
from ..runs.settings import at_least_one, check_fields
from .checks import declare_outputs
from .interrupts import StopRequest
from .options import add_run_options, add_settings_options
from .runner import run_command

__all__ = ["FashionConfig", "add_parser", "run_fashion"]


@dataclass
class FashionConfig:
    """The settings of ``meshprop reproduce fashion-mnist`` (saved as its ``config.json``)."""

    runs: int = setting(
        10, "runs per configuration", group="experiment", check=(">= 1", at_least_one)
    )
    epochs: int = setting(
        PROTOCOL.epochs, "classifier epochs", group="experiment", check=(">= 1", at_least_one)
    )
    grad: str = setting(PROTOCOL.grad, "engine (auto: exact FOP)", group="experiment")
    compare: str = setting(
        "autograd", "engine that trains run 0 again ('none' to skip)", group="experiment"
    )
    data_dir: str | None = setting(
        None,
        "directory with the four IDX files, plain or .gz (`make data` installs the Debian "
        "package's)",
        group="data",
        metavar="DIR",
        path=True,
        shown="/usr/share/datasets/fashion-mnist",
    )
    cache_dir: str | None = setting(
        None,
        "where CAE features are cached",
        group="data",
        metavar="DIR",
        path=True,
        shown="$MESHPROP_CACHE/features or ~/.cache/meshprop/features",
    )
    cae_epochs: int = setting(
        CAE_BUDGET.epochs, "CAE training epochs", group="data", check=(">= 1", at_least_one)
    )
    cae_subset: int | None = setting(
        None,
        "train the CAE on the first N training images only",
        group="data",
        metavar="N",
        check=(">= 1", at_least_one),
        shown="all",
    )
    structure: list[str] = setting(  # noqa: RUF009 (setting is dataclasses.field)
        [],
        "also train mnn-85 and mnn-80 whose edges move while they learn (set, rigl: "
        "meshprop.structure; same initial edges and edge count), e.g. mnn-85-rigl, and compare "
        "them with the same MLPs",
        group="experiment",
        metavar="RULE",
        choices=lambda: ("set", "rigl"),
        nargs="+",
    )
    update_every: int = setting(
        PROTOCOL.update_every,
        "optimiser steps between structural updates",
        group="experiment",
        check=(">= 1", at_least_one),
    )
    cae_threads: int = setting(
        2, "torch threads for the CAE", group="data", metavar="N", check=(">= 1", at_least_one)
    )

    def __post_init__(self) -> None:
        check_fields(self)


def add_parser(sub: argparse._SubParsersAction) -> None:
    """Add ``fashion-mnist`` to ``meshprop reproduce``'s experiments."""
    p = sub.add_parser(
        "fashion-mnist",
        help="paper 001: Fashion-MNIST through CAE features, MNN vs MLP, trained by FOP",
        description="Fashion-MNIST images are coded into 32 values by a convolutional "
        "autoencoder (trained once, cached); mnn-85 and mnn-80 (50 hidden, 2 ticks, 85 % / "
        "80 % of the allowed edges removed, as the public experiments.py) and mlp-13, mlp-17 "
        f"(two hidden layers) are trained {PROTOCOL.epochs} epochs with Adam (lr "
        f"{PROTOCOL.lr}, batch {PROTOCOL.batch_size}) by --grad, one seed per run; run 0 of "
        "each is trained again by --compare and the largest weight difference reported. "
        "--resume continues an interrupted run from the runs it had finished.",
    )
    add_settings_options(p, FashionConfig)
    add_run_options(p, out="runs/reproduce-fashion-mnist")
    p.set_defaults(handler=handle)
    declare_outputs(p, out="dir")


def prepare(config: FashionConfig) -> None:
    """The IDX files must be there before the run folder is touched."""
    from ..data.idx import find_idx_dir

    find_idx_dir(config.data_dir)


def run_fashion(
    config: FashionConfig, folder: RunFolder, reporter: Reporter, threads: int | None
) -> dict:
    """The experiment into ``folder`` (see the module docstring); returns details.json."""
    from ..experiment import fashion
    from ..experiment.compare import compare, details_json, results_table, write_outputs

    start = time.perf_counter()
    budget = dataclasses.replace(
        fashion.CAE_BUDGET, epochs=config.cae_epochs, subset=config.cae_subset
    )
    features = fashion.load_features(
        config.data_dir, 0, budget, config.cache_dir, reporter, threads=config.cae_threads
    )
    cae_seconds = time.perf_counter() - start
    reporter.print(
        f"CAE features {'from the cache' if features.from_cache else 'trained'} "
        f"({features.path}; test reconstruction MSE {features.reconstruction_mse:.4f}; "
        f"{cae_seconds:.1f} s)"
    )
    data = fashion.standardize(features)
    protocol = dataclasses.replace(
        fashion.PROTOCOL,
        epochs=config.epochs,
        grad=config.grad,
        compare_grad=None if config.compare == "none" else config.compare,
        update_every=config.update_every,
    )
    specs = fashion.SPECS + fashion.structure_specs(config.structure)
    results = compare(specs, data, config.runs, protocol, reporter, threads, memo=folder.unit)
    wall = time.perf_counter() - start
    verdicts = fashion.verdicts(results, fashion.structure_pairs(config.structure))
    details = {
        "protocol": fashion.protocol_dict(protocol),
        "cae": {
            **dataclasses.asdict(budget),
            "key": features.key,
            "from_cache": features.from_cache,
            "seconds": cae_seconds,
            "test_reconstruction_mse": features.reconstruction_mse,
        },
        "verdicts": verdicts,
        "wall_time_s": wall,
        "machine": platform.processor() or platform.machine(),
    }
    write_outputs(
        folder.out,
        reporter,
        results,
        details,
        f"{results_table(results, protocol.compare_grad)}\n\nCAE features: {cae_seconds:.0f} s.",
        lambda: fashion.plot_accuracies(results, f"Fashion-MNIST, {config.runs} runs each"),
        verdicts,
        wall,
    )
    for r in results:
        if r.max_weight_difference is not None:
            reporter.print(
                f"{r.name}: run 0 by {protocol.grad} vs {protocol.compare_grad}: max |ΔA| "
                f"{r.max_weight_difference:.2e}"
            )
    out = folder.out
    names = ("results.json", "details.json", "results.md", "accuracies.png", UNITS_FILE)
    folder.finish(*(out / name for name in names))
    reporter.print(f"wrote {out / 'results.json'} ({wall:.0f} s)")
    return details_json(results, details)


def handle(args: argparse.Namespace) -> int:
    reporter = Reporter(progress=not args.no_progress)

    def work(config: FashionConfig, folder: RunFolder, stop: StopRequest) -> int:
        run_fashion(config, folder, reporter, args.threads)
        return 0

    return run_command(
        args, "reproduce fashion-mnist", FashionConfig, work, prepare=prepare, state=UNITS_FILE
    )
