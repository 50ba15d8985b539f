"""``meshprop export``: write a checkpoint's network as an ONNX model."""

from __future__ import annotations

import argparse

from ..checkpoint import load_checkpoint
from ..export import EXPORT_DTYPES, export_onnx
from ..reporting import Reporter
from .checks import declare_outputs

FORMATS = ("onnx",)


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "export",
        help="export a trained checkpoint as an ONNX model",
        description="Write the network of a checkpoint as an ONNX model: input x (B, inputs), "
        "output y (B, outputs) equal to net(x), ticks unrolled, dynamic batch axis.  Like "
        "net(x), the model takes the inputs as the network sees them: a run of `meshprop "
        "train` standardises its features with the statistics stored in the checkpoint's "
        "model.json ('standardizer'), which the caller applies first.  Needs the onnx package "
        "(pip install 'meshprop[onnx]').",
    )
    p.add_argument(
        "checkpoint",
        metavar="CHECKPOINT",
        help="checkpoint directory (RUN/checkpoint) or its model.json",
    )
    p.add_argument("--format", choices=FORMATS, default="onnx", help="the file format")
    p.add_argument("--out", required=True, metavar="FILE", help="the model file to write")
    p.add_argument(
        "--dtype",
        choices=tuple(EXPORT_DTYPES),
        default=None,
        help="the exported model's floating-point type (default: the checkpoint's)",
    )
    p.set_defaults(handler=handle)
    declare_outputs(p, out="file")


def handle(args: argparse.Namespace) -> int:
    net, _ = load_checkpoint(args.checkpoint)
    try:
        path = export_onnx(net.eval(), args.out, dtype=args.dtype)
    except ImportError as error:
        raise ValueError(str(error)) from None  # one line, exit status 2
    Reporter().print(
        f"wrote {path} ({args.format}: inputs {net.topology.n_inputs}, "
        f"outputs {net.topology.n_outputs}, ticks {net.ticks}, "
        f"{args.dtype or str(net.parameter.dtype).removeprefix('torch.')})"
    )
    return 0
