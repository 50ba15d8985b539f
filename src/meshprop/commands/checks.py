"""Checks of a command's arguments made before any work starts: the paths it will write and
the ranges of its numbers.

A command declares its output options with :func:`declare_outputs` (``{"out": "dir"}``) and
the ranges of numeric options with :func:`declare_ranges` (``{"epochs": ">= 1"}``);
``meshprop``'s entry point (:func:`meshprop.cli.main`) calls :func:`check_arguments` before the
command's handler, so an ``--out`` that names an existing file, a path under a file, or a
place that cannot be written, or ``--epochs 0``, is one line naming the flag and status 2
before anything is loaded or trained.  Nothing is created by the check (a probe file is
written and removed at once).
"""

from __future__ import annotations

import argparse
import math
import os
import tempfile
from collections.abc import Callable
from pathlib import Path

__all__ = [
    "RANGES",
    "check_arguments",
    "check_output_dir",
    "check_output_file",
    "check_outputs",
    "check_ranges",
    "declare_outputs",
    "declare_ranges",
]

#: the kinds of output paths: a folder the command fills, or one file
KINDS = ("dir", "file")


def declare_outputs(parser: argparse.ArgumentParser, **kinds: str) -> None:
    """Mark options (by ``dest``) as output paths of kind ``"dir"`` or ``"file"``, checked by
    :func:`check_outputs` before the handler runs."""
    for dest, kind in kinds.items():
        if kind not in KINDS:
            raise ValueError(f"output kind of {dest!r} must be one of {KINDS}, got {kind!r}")
    parser.set_defaults(output_paths=dict(kinds))


#: the ranges :func:`declare_ranges` knows, as the error states them
RANGES: dict[str, Callable[[float], bool]] = {
    ">= 0": lambda v: v >= 0,
    ">= 1": lambda v: v >= 1,
    ">= 2": lambda v: v >= 2,
    "> 0": lambda v: v > 0,
    "in (0, 1)": lambda v: 0 < v < 1,
    "in (0, 1]": lambda v: 0 < v <= 1,
}


def declare_ranges(parser: argparse.ArgumentParser, **ranges: str) -> None:
    """Mark numeric options (by ``dest``) with a range of :data:`RANGES`, checked by
    :func:`check_ranges` before the handler runs (every element of a list option)."""
    for dest, rule in ranges.items():
        if rule not in RANGES:
            raise ValueError(f"range of {dest!r} must be one of {tuple(RANGES)}, got {rule!r}")
    parser.set_defaults(value_ranges=dict(ranges))


def check_ranges(args: argparse.Namespace) -> None:
    """A one-line ValueError naming the flag for a value outside its declared range."""
    for dest, rule in (getattr(args, "value_ranges", None) or {}).items():
        value = getattr(args, dest, None)
        for v in value if isinstance(value, list | tuple) else [value]:
            if v is not None and not (math.isfinite(v) and RANGES[rule](v)):
                raise ValueError(f"{_flag(dest)} must be {rule}, got {v}")


def check_arguments(args: argparse.Namespace) -> None:
    """Everything declared for the command: ranges first, then the output paths."""
    check_ranges(args)
    check_outputs(args)


def _flag(dest: str) -> str:
    return "--" + dest.replace("_", "-")


def check_outputs(args: argparse.Namespace) -> None:
    """Check every output path declared by the command (see :func:`declare_outputs`)."""
    for dest, kind in (getattr(args, "output_paths", None) or {}).items():
        value = getattr(args, dest, None)
        if value is None:
            continue
        if kind == "dir":
            check_output_dir(value, _flag(dest))
        else:
            check_output_file(value, _flag(dest))


def _existing_ancestor(path: Path) -> Path:
    """The nearest of ``path``'s ancestors that exists (``path`` itself excluded)."""
    for parent in path.absolute().parents:
        if parent.exists():
            return parent
    return Path(path.absolute().anchor)


def _probe(folder: Path, path: str | Path, flag: str) -> None:
    """ValueError unless a file can be created (and removed) in ``folder``."""
    try:
        handle, probe = tempfile.mkstemp(prefix=".meshprop-probe-", dir=folder)
    except OSError as error:
        reason = error.strerror or type(error).__name__
        raise ValueError(f"{flag} {path}: cannot write in {folder} ({reason})") from None
    os.close(handle)
    os.unlink(probe)


def check_output_dir(path: str | Path, flag: str = "--out") -> Path:
    """The folder ``path`` if a command can create or fill it; else a one-line ValueError
    naming ``flag``: an existing file, a path under a file, a place that cannot be written."""
    if str(path).strip() == "":
        raise ValueError(f"{flag} must name a folder, got an empty path")
    folder = Path(path)
    if folder.exists() and not folder.is_dir():
        raise ValueError(f"{flag} {path} is an existing file, not a folder")
    if folder.is_dir():
        _probe(folder, path, flag)
        return folder
    ancestor = _existing_ancestor(folder)
    if not ancestor.is_dir():
        raise ValueError(
            f"{flag} {path}: {ancestor} is a file, so no folder can be created under it"
        )
    _probe(ancestor, path, flag)
    return folder


def check_output_file(path: str | Path, flag: str = "--out") -> Path | None:
    """The file ``path`` if a command can write it (``-``, standard output, passes: None);
    else a one-line ValueError naming ``flag``: a folder, a path under a file, a place that
    cannot be written."""
    if str(path) == "-":
        return None
    if str(path).strip() == "":
        raise ValueError(f"{flag} must name a file, got an empty path")
    file = Path(path)
    if file.is_dir():
        raise ValueError(f"{flag} {path} is an existing folder; give a file name")
    parent = file.absolute().parent
    if parent.exists() and not parent.is_dir():
        raise ValueError(f"{flag} {path}: {parent} is a file, so nothing can be written under it")
    if not parent.exists():
        ancestor = _existing_ancestor(parent)
        if not ancestor.is_dir():
            raise ValueError(
                f"{flag} {path}: {ancestor} is a file, so nothing can be written under it"
            )
        parent = ancestor
    _probe(parent, path, flag)
    return file
