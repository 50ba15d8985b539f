"""Checks of the paths a command will write, made before any work starts.

A command declares its output options with :func:`declare_outputs` (``{"out": "dir"}``);
``meshprop``'s entry point (:func:`meshprop.cli.main`) calls :func:`check_outputs` before the
command's handler, so an ``--out`` that names an existing file, a path under a file, or a
place that cannot be written is one line and status 2 before anything is loaded or trained.
Nothing is created by the check (a probe file is written and removed at once).
"""

from __future__ import annotations

import argparse
import os
import tempfile
from pathlib import Path

__all__ = [
    "check_output_dir",
    "check_output_file",
    "check_outputs",
    "declare_outputs",
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
