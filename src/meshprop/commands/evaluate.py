"""``meshprop evaluate``: score a checkpoint on its test split or on other data."""

from __future__ import annotations

import argparse
import json

from ..checkpoint import load_checkpoint
from ..experiment import format_table, prepare_eval_data, test_metrics
from ..reporting import Reporter
from .train import add_data_options, data_options


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "evaluate",
        help="score a trained checkpoint (reproduces the test metrics of metrics.json)",
        description="Load a checkpoint written by `meshprop train` and score it. Without data "
        "options it rebuilds the training run's own test split (same dataset, seed and split "
        "fractions), so the result equals the test metrics in metrics.json. With --dataset or "
        "--data FILE.csv --target COLUMN it scores that data (use --split all for a file that "
        "is not the training file).",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument(
        "checkpoint",
        metavar="CHECKPOINT",
        help="checkpoint directory (RUN/checkpoint) or its model.json",
    )
    add_data_options(p, "the training run's own data")
    p.add_argument(
        "--split",
        choices=("test", "val", "train", "all"),
        default="test",
        help="which samples to score (train/val/test: the run's seeded split)",
    )
    p.add_argument("--json", action="store_true", help="print the metrics as JSON")
    p.set_defaults(handler=handle)


def handle(args: argparse.Namespace) -> int:
    dataset, data, target = data_options(args)
    net, document = load_checkpoint(args.checkpoint)
    ds, X, y, scaler = prepare_eval_data(document, dataset, data, target, args.split)
    result = test_metrics(net, X, y, document["task"], scaler)
    reporter = Reporter()
    if args.json:
        reporter.print(json.dumps(result, indent=2))
    else:
        rows = [("data", f"{ds.name}, {args.split} split ({len(y)} samples)")]
        rows += [(k.replace("test_", ""), repr(v)) for k, v in result.items()]
        reporter.print(format_table(rows))
    return 0
