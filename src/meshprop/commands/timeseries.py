"""``meshprop timeseries``: one-step-ahead prediction of a series with a block-diagram network.

A thin adapter: the configuration is :class:`~meshprop.runs.timeseries.TimeseriesConfig` (its
fields are the options), the experiment :func:`~meshprop.runs.timeseries.run_timeseries`, the
run folder :class:`~meshprop.runs.folder.RunFolder` (refused when it holds another run unless
``--resume`` or ``--overwrite``; ``--resume`` continues from the saved training state).
"""

from __future__ import annotations

import argparse
from typing import Any

from ..reporting import Reporter
from ..runs.folder import STATE_FILE, RunFolder
from ..runs.timeseries import (
    TimeseriesConfig,
    ar_baseline,
    build_model,
    check_series,
    merge,
    run_timeseries,
    train_diagram,
)
from .checks import declare_outputs
from .interrupts import StopRequest
from .options import add_run_options, add_settings_options
from .runner import run_command

__all__ = ["ar_baseline", "register", "train_diagram"]

HELP = "one-step-ahead prediction of a time series with an FIR, NARX or mesh network"


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "timeseries",
        help=HELP,
        description="Train a block-diagram network (FIR network of Wan 1993, NARX with output "
        "feedback, or a mesh neural network with a tapped input line) to predict x(k+1) from "
        "x(k), x(k-1), ... on the first 70% of a series; report the test NMSE on the rest "
        "against a least-squares linear AR baseline on the same window. Give --data FILE.csv "
        "--column NAME or --dataset mackey-glass.",
    )
    add_settings_options(p, TimeseriesConfig)
    add_run_options(p, out=None, threads=1)
    p.set_defaults(handler=handle)
    declare_outputs(p, out="dir")


def _build(config: Any) -> Any:
    """The model diagram and its receptive field (see :func:`meshprop.runs.timeseries.
    build_model`)."""
    return build_model(config)


def handle(args: argparse.Namespace) -> int:
    reporter = Reporter(progress=not args.no_progress)

    def work(config: TimeseriesConfig, folder: RunFolder, stop: StopRequest) -> int:
        metrics = run_timeseries(config, folder, stop, reporter)
        order = metrics["ar_order"]
        print(
            f"{config.model}: test NMSE {metrics['test_nmse']:.4g} "
            f"(linear AR({order}) least squares: {metrics['ar_test_nmse']:.4g}), "
            f"train NMSE {metrics['train_nmse']:.4g}, {metrics['parameters']} parameters, "
            f"{metrics['train_seconds']:.1f} s"
        )
        out = folder.out
        print(f"wrote {out / 'metrics.json'}, {out / 'prediction.png'}, {out / 'diagram.png'}")
        if metrics["test_nmse"] != metrics["test_nmse"] or metrics["test_nmse"] == float("inf"):
            raise ValueError("the model diverged (test NMSE is not finite)")
        return 0

    return run_command(
        args,
        "timeseries",
        TimeseriesConfig,
        work,
        prepare=check_series,
        state=STATE_FILE,
        at_once=False,
        merge=merge,
    )
