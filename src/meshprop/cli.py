"""The ``meshprop`` command: one subcommand per module of ``meshprop.commands``.

Each command module exposes ``register(subparsers)``, which adds its parser and sets
``handler=callable(args) -> int`` as a default.  Errors a user can fix (bad data, bad options:
``ValueError`` and its kind, such as :class:`meshprop.runs.ConfigError`; files that cannot be
read or written, ``OSError``; the memory guard's ``MemoryError``) are printed as one line and
exit with status 2; ``--debug`` shows the traceback instead.  Output paths declared by a command
(:mod:`meshprop.commands.checks`) are checked before its handler runs.

``meshprop --version`` and ``meshprop --help`` (or no arguments) are answered by a parser that
lists the subcommands from :data:`COMMAND_HELP` without importing their modules, hence without
importing torch: they answer in a fraction of a second.
"""

from __future__ import annotations

import argparse
import importlib
import re
import sys
from collections.abc import Sequence
from importlib.metadata import PackageNotFoundError, version
from typing import Any

from .allocator import keep_freed_memory
from .commands.checks import check_arguments

__all__ = ["COMMAND_MODULES", "build_parser", "main"]

#: modules of ``meshprop.commands`` that provide subcommands, in help order.
COMMAND_MODULES: tuple[str, ...] = (
    "train",
    "evaluate",
    "predict",
    "reproduce",
    "timeseries",
    "bench",
    "export",
    "online",
)


#: each subcommand's one-line help, as the top-level help shows it (the command modules use the
#: same strings: a test compares them)
COMMAND_HELP: dict[str, str] = {
    "train": "train a mesh neural network and write metrics, checkpoint and plots",
    "evaluate": "score a trained checkpoint (reproduces the test metrics of metrics.json)",
    "predict": "predict the rows of a CSV file with a trained checkpoint",
    "reproduce": "reproduce the papers' experiments: toys, iris, structure, online, "
    "fashion-mnist, mnist1d",
    "timeseries": "one-step-ahead prediction of a time series with an FIR, NARX or mesh network",
    "bench": "time and memory of the gradient engines, side by side",
    "export": "export a trained checkpoint as an ONNX model",
    "online": "online learning on a stream (RTRL by FOP, SnAp, UORO, truncated or full BPTT)",
}

#: arguments answered by the light parser (no command module imported)
_LIGHT_ARGUMENTS = frozenset({"--version", "-h", "--help", "--debug"})


def meshprop_version() -> str:
    """The installed package's version, from its metadata."""
    try:
        return version("meshprop")
    except PackageNotFoundError:
        return "0+unknown (not installed)"


class DefaultsOnceFormatter(argparse.RawDescriptionHelpFormatter):
    """Help that states every option's default exactly once: an option whose help does not
    mention its default gets ``(default: VALUE)``; flags (``store_true``), options without a
    default (None) and positional arguments get nothing.  Descriptions keep their line breaks
    (a command's docstring is written as it should read)."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        text = action.help or ""
        default = action.default
        if (
            re.search(r"\bdefault[: ]", text)
            or not action.option_strings
            or action.nargs == 0
            or default is None
            or default is argparse.SUPPRESS
            or isinstance(default, bool)
        ):
            return action.help
        shown = " ".join(map(str, default)) if isinstance(default, list | tuple) else str(default)
        return f"{text} (default: {shown.replace('%', '%%')})".strip()


class MeshpropParser(argparse.ArgumentParser):
    """An ``ArgumentParser`` whose help states each default once (:class:`DefaultsOnceFormatter`);
    subcommand parsers are of this class too."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("formatter_class", DefaultsOnceFormatter)
        super().__init__(*args, **kwargs)


def build_parser(light: bool = False) -> argparse.ArgumentParser:
    """The ``meshprop`` parser; ``light``: the subcommands listed by name and help only (enough
    for ``--help`` and ``--version``), without importing their modules."""
    parser = MeshpropParser(
        prog="meshprop",
        description="Train mesh neural networks of any topology with exact forward-only (FOP) "
        "or reciprocal (BPTT) gradients.",
    )
    parser.add_argument("--debug", action="store_true", help="show full tracebacks on errors")
    parser.add_argument("--version", action="version", version=f"%(prog)s {meshprop_version()}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        if light:
            subparsers.add_parser(name, help=COMMAND_HELP[name])
        else:
            importlib.import_module(f"meshprop.commands.{name}").register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    arguments = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser(light=set(arguments) <= _LIGHT_ARGUMENTS)
    args = parser.parse_args(arguments)
    if getattr(args, "handler", None) is None:
        parser.print_help()
        return 1
    try:
        check_arguments(args)  # ranges and output paths, before the command does any work
        keep_freed_memory()  # large per-step tensors reused, not faulted in afresh
        return int(args.handler(args) or 0)
    except (ValueError, TypeError, OSError, MemoryError) as error:
        if args.debug:
            raise
        print(f"meshprop {args.command}: error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
