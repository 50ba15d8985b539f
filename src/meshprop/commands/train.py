"""``meshprop train``: train a mesh neural network on a built-in dataset or a CSV file.

Its options are generated from :class:`~meshprop.runs.RunConfig` (see
:mod:`meshprop.commands.options`); ``--config FILE`` supplies defaults that typed flags
override, and the resolved configuration is saved as ``config.json`` in the run folder.
"""

from __future__ import annotations

import argparse

from .. import distributed
from ..reporting import Reporter, format_table
from ..runs import describe_model, run, summary_rows, write_run
from ..runs.logs import EpochLog, describe_provenance, provenance
from ..runs.preflight import check_run
from ..threads import DEFAULT_THREADS, thread_policy
from .checks import declare_outputs
from .options import add_config_options, add_threads_option, resolve_config


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "train",
        help="train a mesh neural network and write metrics, checkpoint and plots",
        description="Train a mesh neural network. Without options: the moons dataset, a full "
        "mesh of 5 hidden neurons, 60 epochs (a few seconds). Writes config.json, metrics.json, "
        "checkpoint/ (safetensors + JSON) and PNG plots into --out.",
    )
    p.add_argument(
        "--config",
        dest="config_file",
        default=None,
        metavar="FILE",
        help="settings from a TOML or JSON file (keys as in a run's config.json, which is "
        "such a file; YAML with PyYAML installed); flags typed here override them",
    )
    add_config_options(p)
    out = p.add_argument_group("output")
    out.add_argument(
        "--out", default="runs/train", metavar="DIR", help="output directory (default: runs/train)"
    )
    out.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    out.add_argument(
        "--tensorboard",
        action="store_true",
        help="also log the per-epoch metrics to TensorBoard in DIR/tensorboard (needs the "
        "tensorboard package: pip install 'meshprop[tensorboard]'); DIR/metrics.csv is always "
        "written",
    )
    add_threads_option(out, DEFAULT_THREADS)
    p.set_defaults(handler=handle)
    declare_outputs(p, out="dir")


def handle(args: argparse.Namespace) -> int:
    config = resolve_config(args)
    check_run(config, args.out)  # memory of the network, disk of the run folder: before work
    with thread_policy(args.threads, "--threads"):
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
            info = provenance(config.seed)
            reporter.print(describe_provenance(info))
            log = EpochLog(args.out, tensorboard=args.tensorboard, reporter=reporter)
            try:
                result = run(config, reporter, callback=log, parallel=parallel)
            finally:
                log.close()
        finally:
            if parallel is not None:
                distributed.shutdown()
        reporter.print(describe_model(config, result.net))
        paths = write_run(result, args.out, reporter, info)
    reporter.print(format_table(summary_rows(result)))
    reporter.print(
        f"wrote {len(paths)} files to {args.out}: "
        + ", ".join(p.name if p.name != "model.json" else "checkpoint/" for p in paths)
    )
    return 0
