"""``meshprop train``: train a mesh neural network on a built-in dataset or a CSV file."""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from .. import distributed, engines
from ..activations import ACTIVATIONS
from ..cli import UsageError
from ..data import DATASETS
from ..experiment import (
    ARCHITECTURES,
    RunConfig,
    describe_model,
    format_table,
    run,
    summary_rows,
    write_run,
)
from ..layered import RULES
from ..reporting import Reporter
from ..training import OPTIMIZERS

DEFAULTS = RunConfig()


def add_data_options(parser: argparse.ArgumentParser, when_absent: str) -> None:
    """--dataset / --data / --target, shared with ``evaluate``.  Absent options stay absent
    from the namespace (read them with ``getattr(args, name, None)``); ``when_absent`` says in
    the help what happens then."""
    group = parser.add_argument_group("data", f"without --dataset or --data: {when_absent}")
    group.add_argument(
        "--dataset",
        default=argparse.SUPPRESS,
        metavar="NAME",
        help=f"built-in dataset: {', '.join(DATASETS)}",
    )
    group.add_argument(
        "--data",
        default=argparse.SUPPRESS,
        metavar="FILE.csv",
        help="your own CSV file (header row, numeric feature columns)",
    )
    group.add_argument(
        "--target",
        default=argparse.SUPPRESS,
        metavar="COLUMN",
        help="the CSV column to predict (class labels or numbers)",
    )


def data_options(args: argparse.Namespace) -> tuple[str | None, str | None, str | None]:
    """(dataset, data, target) as given, None where absent; both a dataset and a file is an
    error."""
    dataset, data, target = (getattr(args, k, None) for k in ("dataset", "data", "target"))
    if dataset is not None and data is not None:
        raise ValueError("give either --dataset or --data, not both")
    if data is None and target is not None:
        raise ValueError("--target applies to --data FILE.csv only")
    return dataset, data, target


def add_threads_option(parser: argparse.ArgumentParser | argparse._ArgumentGroup) -> None:
    parser.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch intra-op threads (small meshes run fastest on one; 0 = torch's default)",
    )


def apply_threads(args: argparse.Namespace) -> None:
    threads = getattr(args, "threads", 0)
    if threads < 0:
        raise ValueError(f"--threads must be >= 0, got {threads}")
    if threads:
        torch.set_num_threads(threads)


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "train",
        help="train a mesh neural network and write metrics, checkpoint and plots",
        description="Train a mesh neural network. Without options: the moons dataset, a full "
        "mesh of 5 hidden neurons, 60 epochs (a few seconds). Writes metrics.json, "
        "checkpoint/ (safetensors + JSON) and PNG plots into --out.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    add_data_options(p, f"the {DEFAULTS.dataset} dataset")
    p.add_argument(
        "--task",
        choices=("auto", "classification", "regression"),
        default=DEFAULTS.task,
        help="for CSV targets: what the target column holds",
    )
    p.add_argument(
        "--samples",
        type=int,
        default=DEFAULTS.n_samples,
        help="samples drawn for the generated 2-D sets",
    )
    net = p.add_argument_group("network")
    net.add_argument(
        "--arch",
        choices=ARCHITECTURES,
        default=DEFAULTS.arch,
        help="mesh: an MNN of --hidden neurons (--ticks, --density); mlp: a layered network of "
        "--layers, run for L = len(layers)+1 ticks",
    )
    net.add_argument(
        "--layers",
        type=parse_layers,
        default=None,
        metavar="N1,N2,...",
        help="hidden layer sizes of --arch mlp, e.g. 13,13",
    )
    net.add_argument(
        "--hidden", type=int, default=None, help=f"hidden neurons (default {DEFAULTS.hidden})"
    )
    net.add_argument(
        "--ticks", type=int, default=None, help=f"state transitions T (default {DEFAULTS.ticks})"
    )
    net.add_argument(
        "--density",
        type=float,
        default=None,
        help="fraction of the allowed edges kept (1 = full mesh, <1 = random mesh; default "
        f"{DEFAULTS.density})",
    )
    net.add_argument(
        "--activation",
        default=DEFAULTS.activation,
        help=f"hidden activation: {', '.join(ACTIVATIONS)}",
    )
    net.add_argument(
        "--output-activation",
        default=DEFAULTS.output_activation,
        help="output activation (identity = logits for cross-entropy)",
    )
    net.add_argument(
        "--grad",
        default=None,
        help=f"gradient engine: {', '.join(engines.GRADIENT_METHODS)}; for --arch mlp also the "
        f"layered rules {', '.join(RULES)} (default: {DEFAULTS.grad} for a mesh, two_step for "
        "an mlp)",
    )
    net.add_argument("--dtype", choices=("float32", "float64"), default=DEFAULTS.dtype)
    opt = p.add_argument_group("optimisation")
    opt.add_argument(
        "--optimizer",
        default=DEFAULTS.optimizer,
        help=f"torch.optim optimiser: {', '.join(OPTIMIZERS)}",
    )
    opt.add_argument("--lr", type=float, default=DEFAULTS.lr, help="learning rate")
    opt.add_argument(
        "--momentum", type=float, default=DEFAULTS.momentum, help="momentum (sgd, rmsprop)"
    )
    opt.add_argument("--weight-decay", type=float, default=DEFAULTS.weight_decay)
    opt.add_argument("--epochs", type=int, default=DEFAULTS.epochs)
    opt.add_argument("--batch-size", type=int, default=DEFAULTS.batch_size)
    opt.add_argument(
        "--seed",
        type=int,
        default=DEFAULTS.seed,
        help="seeds the data, the split, the topology, the weights, the batches",
    )
    opt.add_argument(
        "--test-size",
        type=float,
        default=DEFAULTS.test_size,
        help="fraction of samples held out for testing",
    )
    opt.add_argument(
        "--val-size",
        type=float,
        default=DEFAULTS.val_size,
        help="fraction of samples held out for validation",
    )
    opt.add_argument(
        "--patience",
        type=int,
        default=None,
        help="early stopping: epochs without validation improvement (needs --val-size)",
    )
    out = p.add_argument_group("output")
    out.add_argument("--out", default="runs/train", metavar="DIR", help="output directory")
    out.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    add_threads_option(out)
    p.set_defaults(handler=handle)


def mesh_options(args: argparse.Namespace) -> dict[str, float | int]:
    """--hidden, --ticks and --density with their defaults; refused with --arch mlp, whose
    shape --layers fixes (an MLP of L layers runs for L ticks on its block mask)."""
    given = {name: getattr(args, name) for name in ("hidden", "ticks", "density")}
    if args.arch == "mlp":
        named = [f"--{name}" for name, value in given.items() if value is not None]
        if named:
            raise UsageError(
                f"{', '.join(named)} applies to --arch mesh only; an MLP's shape comes from "
                "--layers (e.g. --layers 13,13)"
            )
    return {
        name: getattr(DEFAULTS, name) if value is None else value for name, value in given.items()
    }


def config_from_args(args: argparse.Namespace) -> RunConfig:
    dataset, data, target = data_options(args)
    mesh = mesh_options(args)
    if data is None and dataset is None:
        dataset = DEFAULTS.dataset
    # an absolute path, so that `meshprop evaluate` finds the file from any directory
    data = None if data is None else str(Path(data).resolve())
    return RunConfig(
        dataset=dataset,
        data=data,
        target=target,
        task=args.task,
        n_samples=args.samples,
        hidden=mesh["hidden"],
        ticks=mesh["ticks"],
        density=mesh["density"],
        activation=args.activation,
        output_activation=args.output_activation,
        grad=args.grad or ("two_step" if args.arch == "mlp" else DEFAULTS.grad),
        arch=args.arch,
        layers=args.layers,
        optimizer=args.optimizer,
        lr=args.lr,
        momentum=args.momentum,
        weight_decay=args.weight_decay,
        epochs=args.epochs,
        batch_size=args.batch_size,
        seed=args.seed,
        test_size=args.test_size,
        val_size=args.val_size,
        patience=args.patience,
        dtype=args.dtype,
    )


def parse_layers(text: str) -> list[int]:
    """``"13,13"`` → [13, 13] (argparse type of --layers)."""
    try:
        sizes = [int(part) for part in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"--layers takes comma-separated positive integers such as 13,13, got {text!r}"
        ) from None
    if not sizes or min(sizes) < 1:
        raise argparse.ArgumentTypeError(f"--layers sizes must be >= 1, got {text!r}")
    return sizes


def handle(args: argparse.Namespace) -> int:
    apply_threads(args)
    config = config_from_args(args)
    # under torchrun (WORLD_SIZE > 1): join the process group; only rank 0 prints and writes
    parallel = distributed.from_environment()
    try:
        main = parallel is None or parallel.is_main
        reporter = Reporter(enabled=main, progress=not args.no_progress)
        if parallel is not None:
            reporter.print(
                f"data-parallel: {parallel.world_size} processes ({parallel.backend}), "
                f"each on its shard of every batch of {config.batch_size}"
            )
        result = run(config, reporter, parallel=parallel)
    finally:
        if parallel is not None:
            distributed.shutdown()
    reporter.print(describe_model(config, result.net))
    paths = write_run(result, args.out, reporter)
    reporter.print(format_table(summary_rows(result)))
    reporter.print(
        f"wrote {len(paths)} files to {args.out}: "
        + ", ".join(p.name if p.name != "model.json" else "checkpoint/" for p in paths)
    )
    return 0
