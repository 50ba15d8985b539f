"""``meshprop evaluate``: score a checkpoint on its test split or on other data."""

from __future__ import annotations

import argparse
import json

from ..reporting import Reporter, format_table
from ..runs.artefacts import read_checkpoint
from ..runs.config import ConfigError, check_data_source
from ..runs.evaluation import SPLITS, check_run_document, prepare_eval_data, test_metrics
from ..runs.fingerprint import FINGERPRINT_KEY, check_data
from .options import add_allow_changed_option, add_config_options, flag, typed_settings

DATA_OPTIONS = ("dataset", "data", "target")


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "evaluate",
        help="score a trained checkpoint (reproduces the test metrics of metrics.json)",
        description="Load a checkpoint written by `meshprop train` and score it. Without data "
        "options it rebuilds the training run's own test split (same dataset, seed and split "
        "fractions), so the result equals the test metrics in metrics.json. With --dataset or "
        "--data FILE.csv --target COLUMN it scores that data (use --split all for a file that "
        "is not the training file).",
    )
    p.add_argument(
        "checkpoint",
        metavar="CHECKPOINT",
        help="checkpoint directory (RUN/checkpoint) or its model.json",
    )
    add_config_options(
        p,
        DATA_OPTIONS,
        show_defaults=False,
        descriptions={"data": "without --dataset or --data: the training run's own data"},
    )
    p.add_argument(
        "--split",
        choices=SPLITS,
        default="test",
        help="which samples to score (train/val/test: the run's seeded split; default: test)",
    )
    p.add_argument("--json", action="store_true", help="print the metrics as JSON")
    add_allow_changed_option(p)
    p.set_defaults(handler=handle)


def handle(args: argparse.Namespace) -> int:
    given = typed_settings(args, DATA_OPTIONS)
    dataset, data, target = (given.get(name) for name in DATA_OPTIONS)
    try:
        check_data_source(dataset, data, target)
    except ConfigError as error:
        raise ValueError(error.describe(flag)) from None
    net, document = read_checkpoint(args.checkpoint)
    check_run_document(document, net, args.checkpoint)
    ds, X, y, scaler = prepare_eval_data(document, dataset, data, target, args.split)
    reporter = Reporter()
    check_data(document.get(FINGERPRINT_KEY), ds, args.allow_changed_data)
    result = test_metrics(net, X, y, document["task"], scaler)
    if args.json:
        reporter.print(json.dumps(result, indent=2))
    else:
        rows = [("data", f"{ds.name}, {args.split} split ({len(y)} samples)")]
        rows += [(k.replace("test_", ""), repr(v)) for k, v in result.items()]
        reporter.print(format_table(rows))
    return 0
