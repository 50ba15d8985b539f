"""``meshprop predict``: apply a checkpoint to the rows of a CSV file."""

from __future__ import annotations

import argparse
import csv
import sys
from pathlib import Path
from typing import Any, TextIO

from ..data import load_csv
from ..reporting import Reporter
from ..runs.artefacts import read_checkpoint
from ..runs.evaluation import check_run_document, predict_rows
from ..runs.fingerprint import FINGERPRINT_KEY, check_data
from .checks import declare_outputs
from .options import add_allow_changed_option


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "predict",
        help="predict the rows of a CSV file with a trained checkpoint",
        description="Read the feature columns the model was trained on from a CSV file "
        "(other columns, such as the target, are ignored), standardise them with the training "
        "statistics stored in the checkpoint, and write one prediction per row as CSV: "
        "row, prediction, and for classification one probability column per class.",
    )
    p.add_argument(
        "checkpoint",
        metavar="CHECKPOINT",
        help="checkpoint directory (RUN/checkpoint) or its model.json",
    )
    p.add_argument("--data", required=True, metavar="FILE.csv", help="the rows to predict")
    p.add_argument(
        "--out",
        default="-",
        metavar="FILE.csv",
        help="where to write the predictions (default: -, standard output)",
    )
    add_allow_changed_option(p)
    p.set_defaults(handler=handle)
    declare_outputs(p, out="file")


def _write(handle: TextIO, header: list[str], rows: list[list[Any]]) -> None:
    writer = csv.writer(handle, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)


def handle(args: argparse.Namespace) -> int:
    net, document = read_checkpoint(args.checkpoint)
    check_run_document(document, net, args.checkpoint)
    ds = load_csv(args.data, None, features=document["feature_names"])
    check_data(document.get(FINGERPRINT_KEY), ds, args.allow_changed_data)
    header, rows = predict_rows(net, document, ds.X)
    if args.out == "-":
        _write(sys.stdout, header, rows)
        return 0
    reporter = Reporter()

    def write(path: Path) -> None:
        with open(path, "w", newline="", encoding="utf-8") as handle:
            _write(handle, header, rows)

    reporter.write_with(args.out, write)
    reporter.print(f"wrote {len(rows)} predictions to {args.out}")
    return 0
