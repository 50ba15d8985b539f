"""Command-line options generated from :class:`~meshprop.runs.RunConfig`'s fields, and the
resolution of a configuration from defaults, a ``--config`` file and the flags typed.

Every field becomes one option (``--batch-size`` for ``batch_size``, or the field's own
``flag``) whose help is the field's help, its choices and its default, stated once.  Options
that were not typed stay out of the parsed namespace, so a flag overrides the file only when
the user gave it.  Values are parsed and checked here and by ``RunConfig`` itself; errors name
the flag the user typed, or the key of the file the value came from.
"""

from __future__ import annotations

import argparse
import dataclasses
from collections.abc import Collection, Mapping
from pathlib import Path
from typing import Any

from ..runs.config import (
    MESH_ONLY,
    ConfigError,
    RunConfig,
    config_fields,
    field_type,
    load_config_file,
    merge_settings,
    mesh_only_error,
)

__all__ = [
    "add_allow_changed_option",
    "add_config_options",
    "add_threads_option",
    "flag",
    "resolve_config",
    "typed_settings",
]

_FIELDS = {f.name: f for f in config_fields()}


def flag(name: str) -> str:
    """The command-line option of a :class:`RunConfig` field."""
    return _FIELDS[name].metadata["flag"] or "--" + name.replace("_", "-")


def _help(f: dataclasses.Field[Any], show_default: bool) -> str:
    """The field's help, then its choices and its default, each stated once."""
    notes = []
    choices = f.metadata["choices"]
    if choices is not None:
        notes.append(f"one of {', '.join(choices())}")
    shown = f.metadata["shown"]
    if shown is None and f.default is not None:
        shown = str(f.default)
    if show_default and shown is not None:
        notes.append(f"default: {shown}")
    text = f.metadata["help"] + (f" ({'; '.join(notes)})" if notes else "")
    return text.replace("%", "%%")


def add_config_options(
    parser: argparse.ArgumentParser,
    names: Collection[str] | None = None,
    *,
    show_defaults: bool = True,
    descriptions: Mapping[str, str] | None = None,
) -> None:
    """One option per :class:`RunConfig` field (or per field in ``names``), in argument
    groups by the field's ``group``; ``descriptions`` adds a line under a group's title."""
    groups: dict[str, argparse._ArgumentGroup] = {}
    for f in config_fields():
        if names is not None and f.name not in names:
            continue
        title = f.metadata["group"]
        if title not in groups:
            groups[title] = parser.add_argument_group(title, (descriptions or {}).get(title))
        groups[title].add_argument(
            flag(f.name),
            dest=f.name,
            default=argparse.SUPPRESS,
            metavar=f.metadata["metavar"] or flag(f.name).lstrip("-").replace("-", "_").upper(),
            help=_help(f, show_defaults),
        )


def add_threads_option(
    parser: argparse.ArgumentParser | argparse._ArgumentGroup, default: int
) -> None:
    parser.add_argument(
        "--threads",
        type=int,
        default=default,
        metavar="N",
        help="torch intra-op threads (small meshes run fastest on one; 0 = torch's own choice) "
        f"(default: {default})",
    )


def add_allow_changed_option(parser: argparse.ArgumentParser) -> None:
    """``--allow-changed-data``: use a run's training data even if it changed since the run
    (a warning instead of the refusal of :func:`meshprop.runs.fingerprint.check_data`)."""
    parser.add_argument(
        "--allow-changed-data",
        action="store_true",
        help="use the run's training data file even if it changed since the run (size or "
        "SHA-256 differ from the checkpoint's record): warn instead of refusing",
    )


def _parse(name: str, text: str) -> Any:
    """A flag's text as the field's type (ConfigError naming the field otherwise)."""
    base, _ = field_type(name)
    try:
        if base is int:
            return int(text)
        if base is float:
            return float(text)
    except ValueError:
        kind = "an integer" if base is int else "a number"
        raise ConfigError(f"{{0}} must be {kind}, got {text!r}", name) from None
    if base is list:
        try:
            return [int(part) for part in text.split(",")]
        except ValueError:
            raise ConfigError(
                f"{{0}} takes comma-separated integers such as 13,13, got {text!r}", name
            ) from None
    return text


def typed_settings(
    args: argparse.Namespace, names: Collection[str] | None = None
) -> dict[str, Any]:
    """The :class:`RunConfig` fields the user typed as flags, parsed (``data`` made absolute,
    so that ``meshprop evaluate`` finds the file from any directory)."""
    typed = {
        name: _parse(name, text)
        for name, text in vars(args).items()
        if name in _FIELDS and (names is None or name in names)
    }
    if isinstance(typed.get("data"), str):
        typed["data"] = str(Path(typed["data"]).resolve())
    return typed


def resolve_config(args: argparse.Namespace) -> RunConfig:
    """The run configuration: the defaults, overridden by the ``--config`` file, overridden by
    the flags typed.  Without ``--grad`` an MLP trains by the two-step rule."""
    source = getattr(args, "config_file", None)
    file_values = {} if source is None else load_config_file(source)
    typed: dict[str, Any] = {}

    def name(field: str) -> str:
        if field in file_values and field not in typed:
            return f"{field} (in {source})"
        return flag(field)

    try:
        typed = typed_settings(args)
        settings = merge_settings([file_values, typed])
        if settings.get("arch") == "mlp":
            for field in MESH_ONLY:
                if field in typed:
                    raise mesh_only_error(field)
            settings.setdefault("grad", "two_step")
        return RunConfig(**settings)
    except ConfigError as error:
        raise ValueError(error.describe(name)) from None
