"""``meshprop predict``: apply a checkpoint to the rows of a CSV file."""

from __future__ import annotations

import argparse
import csv
import sys

import torch

from ..checkpoint import load_checkpoint
from ..data import CLASSIFICATION, Standardizer, load_csv
from ..reporting import Reporter


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "predict",
        help="predict the rows of a CSV file with a trained checkpoint",
        description="Read the feature columns the model was trained on from a CSV file "
        "(other columns, such as the target, are ignored), standardise them with the training "
        "statistics stored in the checkpoint, and write one prediction per row as CSV: "
        "row, prediction, and for classification one probability column per class.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
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
        help="where to write the predictions (- = standard output)",
    )
    p.set_defaults(handler=handle)


def handle(args: argparse.Namespace) -> int:
    net, document = load_checkpoint(args.checkpoint)
    features = document["feature_names"]
    ds = load_csv(args.data, None, features=features)
    scaler = Standardizer.from_dict(document["standardizer"])
    X = torch.as_tensor(scaler.transform(ds.X), dtype=net.A.dtype)
    with torch.no_grad():
        out = net(X)
    header = ["row", "prediction"]
    if document["task"] == CLASSIFICATION:
        names = document["class_names"]
        probs = torch.softmax(out, dim=1).tolist()
        labels = [names[k] for k in out.argmax(dim=1).tolist()]
        header += [f"p_{name}" for name in names]
        rows = [
            [i, label, *(f"{p:.6g}" for p in ps)]
            for i, (label, ps) in enumerate(zip(labels, probs, strict=True), start=1)
        ]
    else:
        values = scaler.inverse_y(out[:, 0].cpu().numpy())
        rows = [[i, f"{v:.8g}"] for i, v in enumerate(values.tolist(), start=1)]
    if args.out == "-":
        writer = csv.writer(sys.stdout, lineterminator="\n")
        writer.writerow(header)
        writer.writerows(rows)
        return 0
    reporter = Reporter()

    def write(path) -> None:
        with open(path, "w", newline="", encoding="utf-8") as handle:
            writer = csv.writer(handle, lineterminator="\n")
            writer.writerow(header)
            writer.writerows(rows)

    reporter.write_with(args.out, write)
    reporter.print(f"wrote {len(rows)} predictions to {args.out}")
    return 0
