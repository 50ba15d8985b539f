"""``meshprop reproduce fashion-mnist``: paper 001's real-world experiment (see
:mod:`meshprop.experiment.fashion`).

Writes DIR/results.json (exactly the reproductions' schema), DIR/details.json (protocol, CAE, times,
the FOP-vs-autograd weight differences), DIR/results.md (the table and the MNN-vs-MLP verdicts),
DIR/accuracies.png (the accuracy distributions).
"""

from __future__ import annotations

import argparse
import dataclasses
import platform
import time
from pathlib import Path

from ..reporting import Reporter
from ..threads import DEFAULT_THREADS, thread_policy
from .checks import declare_outputs, declare_ranges
from .options import add_threads_option


def add_parser(sub: argparse._SubParsersAction) -> None:
    """Add ``fashion-mnist`` to ``meshprop reproduce``'s experiments."""
    from ..experiment.fashion import CAE_BUDGET, PROTOCOL

    p = sub.add_parser(
        "fashion-mnist",
        help="paper 001: Fashion-MNIST through CAE features, MNN vs MLP, trained by FOP",
        description="Fashion-MNIST images are coded into 32 values by a convolutional "
        "autoencoder (trained once, cached); mnn-85 and mnn-80 (50 hidden, 2 ticks, 85 % / "
        "80 % of the allowed edges removed, as the public experiments.py) and mlp-13, mlp-17 "
        f"(two hidden layers) are trained {PROTOCOL.epochs} epochs with Adam (lr "
        f"{PROTOCOL.lr}, batch {PROTOCOL.batch_size}) by --grad, one seed per run; run 0 of "
        "each is trained again by --compare and the largest weight difference reported.",
    )
    p.add_argument("--runs", type=int, default=10, help="runs per configuration (default: 10)")
    p.add_argument(
        "--out",
        default="runs/reproduce-fashion-mnist",
        metavar="DIR",
        help="output directory (default: runs/reproduce-fashion-mnist)",
    )
    p.add_argument(
        "--data-dir",
        default=None,
        metavar="DIR",
        help="directory with the four IDX files, plain or .gz (default: the Debian package's "
        "/usr/share/datasets/fashion-mnist; `make data` installs it)",
    )
    p.add_argument(
        "--cache-dir",
        default=None,
        metavar="DIR",
        help="where CAE features are cached (default: $MESHPROP_CACHE/features or "
        "~/.cache/meshprop/features)",
    )
    p.add_argument("--epochs", type=int, default=PROTOCOL.epochs, help="classifier epochs")
    p.add_argument("--cae-epochs", type=int, default=CAE_BUDGET.epochs, help="CAE training epochs")
    p.add_argument(
        "--cae-subset",
        type=int,
        default=None,
        metavar="N",
        help="train the CAE on the first N training images only (default: all)",
    )
    p.add_argument("--grad", default=PROTOCOL.grad, help="engine (default: auto, exact FOP)")
    p.add_argument(
        "--compare",
        default="autograd",
        help="engine that trains run 0 again ('none' to skip; default: autograd)",
    )
    p.add_argument(
        "--structure",
        nargs="+",
        choices=["set", "rigl"],
        default=[],
        metavar="RULE",
        help="also train mnn-85 and mnn-80 whose edges move while they learn (set, rigl: "
        "meshprop.structure; same initial edges and edge count), e.g. mnn-85-rigl, and compare "
        "them with the same MLPs (default: none)",
    )
    p.add_argument(
        "--update-every",
        type=int,
        default=PROTOCOL.update_every,
        help=f"optimiser steps between structural updates (default: {PROTOCOL.update_every})",
    )
    p.add_argument(
        "--cae-threads",
        type=int,
        default=2,
        metavar="N",
        help="torch threads for the CAE (default: 2)",
    )
    add_threads_option(p, DEFAULT_THREADS)
    p.set_defaults(handler=handle)
    declare_outputs(p, out="dir")
    declare_ranges(
        p, runs=">= 1", epochs=">= 1", cae_epochs=">= 1", cae_subset=">= 1", update_every=">= 1"
    )


def handle(args: argparse.Namespace) -> int:
    if args.runs < 1:
        raise ValueError(f"--runs must be >= 1, got {args.runs}")
    if args.epochs < 1 or args.cae_epochs < 1:
        raise ValueError("--epochs and --cae-epochs must be >= 1")
    with thread_policy(args.threads, "--threads"):
        return _run(args)


def _run(args: argparse.Namespace) -> int:
    from ..experiment import fashion
    from ..experiment.compare import compare, results_table, write_outputs

    start = time.perf_counter()
    out = Path(args.out)
    reporter = Reporter()
    budget = dataclasses.replace(fashion.CAE_BUDGET, epochs=args.cae_epochs, subset=args.cae_subset)
    features = fashion.load_features(
        args.data_dir, 0, budget, args.cache_dir, reporter, threads=args.cae_threads
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
        epochs=args.epochs,
        grad=args.grad,
        compare_grad=None if args.compare == "none" else args.compare,
        update_every=args.update_every,
    )
    specs = fashion.SPECS + fashion.structure_specs(args.structure)
    results = compare(specs, data, args.runs, protocol, reporter, args.threads)
    wall = time.perf_counter() - start
    verdicts = fashion.verdicts(results, fashion.structure_pairs(args.structure))
    write_outputs(
        out,
        reporter,
        results,
        {
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
        },
        f"{results_table(results, protocol.compare_grad)}\n\nCAE features: {cae_seconds:.0f} s.",
        lambda: fashion.plot_accuracies(results, f"Fashion-MNIST, {args.runs} runs each"),
        verdicts,
        wall,
    )
    for r in results:
        if r.max_weight_difference is not None:
            reporter.print(
                f"{r.name}: run 0 by {protocol.grad} vs {protocol.compare_grad}: max |ΔA| "
                f"{r.max_weight_difference:.2e}"
            )
    reporter.print(f"wrote {out / 'results.json'} ({wall:.0f} s)")
    return 0
