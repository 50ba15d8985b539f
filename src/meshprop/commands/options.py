"""Command-line options generated from a configuration class's fields (:class:`~meshprop.runs.
RunConfig` for ``meshprop train``; :mod:`meshprop.runs.settings`), the options every command
that writes a run folder shares (:func:`add_run_options`), and the resolution of a
configuration from defaults, a ``--config`` file and the flags typed.

Every field becomes one option (``--batch-size`` for ``batch_size``, or the field's own
``flag``) whose help is the field's help, its choices and its default, stated once.  Options
that were not typed stay out of the parsed namespace, so a flag overrides the file only when
the user gave it.  Values are parsed and checked here and by the configuration class itself;
errors name the flag the user typed, or the key of the file the value came from.
"""

from __future__ import annotations

import argparse
import dataclasses
from collections.abc import Callable, Collection, Mapping
from pathlib import Path
from typing import Any

from ..runs.config import (
    MESH_ONLY,
    ConfigError,
    RunConfig,
    config_fields,
    load_config_file,
    merge_settings,
    mesh_only_error,
)
from ..runs.settings import field_type as settings_field_type
from ..runs.settings import load_settings_file
from ..threads import DEFAULT_THREADS

__all__ = [
    "SHARED_OPTIONS",
    "add_allow_changed_option",
    "add_config_options",
    "add_run_options",
    "add_settings_options",
    "add_threads_option",
    "flag",
    "resolve_config",
    "resolve_settings",
    "settings_flag",
    "typed_settings",
    "typed_settings_of",
]

_FIELDS = {f.name: f for f in config_fields()}


def settings_flag(cls: type, name: str) -> str:
    """The command-line option of the field ``name`` of the configuration class ``cls``."""
    f = next(f for f in dataclasses.fields(cls) if f.name == name)
    return f.metadata.get("flag") or "--" + name.replace("_", "-")


def flag(name: str) -> str:
    """The command-line option of a :class:`RunConfig` field."""
    return settings_flag(RunConfig, name)


def _help(f: dataclasses.Field[Any], show_default: bool) -> str:
    """The field's help, then its choices and its default, each stated once."""
    notes = []
    choices = f.metadata["choices"]
    if choices is not None:
        notes.append(f"one of {', '.join(choices())}")
    shown = f.metadata["shown"]
    default = f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default
    if shown is None and isinstance(default, list):
        shown = (" " if f.metadata.get("nargs") else ",").join(map(str, default)) or "none"
    elif shown is None and default is not None:
        shown = str(default)
    if show_default and shown is not None:
        notes.append(f"default: {shown}")
    text = f.metadata["help"] + (f" ({'; '.join(notes)})" if notes else "")
    return text.replace("%", "%%")


def add_settings_options(
    parser: argparse.ArgumentParser,
    cls: type,
    names: Collection[str] | None = None,
    *,
    show_defaults: bool = True,
    descriptions: Mapping[str, str] | None = None,
) -> None:
    """One option per field of the configuration class ``cls`` (or per field in ``names``),
    in argument groups by the field's ``group``; ``descriptions`` adds a line under a group's
    title.  A list field takes comma-separated values, or several words when its ``nargs``
    says so."""
    groups: dict[str, argparse._ArgumentGroup] = {}
    for f in dataclasses.fields(cls):
        if names is not None and f.name not in names:
            continue
        title = f.metadata["group"]
        if title not in groups:
            groups[title] = parser.add_argument_group(title, (descriptions or {}).get(title))
        option = settings_flag(cls, f.name)
        if settings_field_type(cls, f.name)[0] is bool:  # a switch: given means true
            groups[title].add_argument(
                option,
                dest=f.name,
                action="store_true",
                default=argparse.SUPPRESS,
                help=_help(f, show_default=False),
            )
            continue
        extra: dict[str, Any] = {}
        if f.metadata.get("nargs"):
            extra["nargs"] = f.metadata["nargs"]
        groups[title].add_argument(
            option,
            dest=f.name,
            default=argparse.SUPPRESS,
            metavar=f.metadata["metavar"] or option.lstrip("-").replace("-", "_").upper(),
            help=_help(f, show_defaults),
            **extra,
        )


def add_config_options(
    parser: argparse.ArgumentParser,
    names: Collection[str] | None = None,
    *,
    show_defaults: bool = True,
    descriptions: Mapping[str, str] | None = None,
) -> None:
    """:func:`add_settings_options` of :class:`RunConfig`."""
    add_settings_options(
        parser, RunConfig, names, show_defaults=show_defaults, descriptions=descriptions
    )


#: the options every command that writes a run folder shares, with their one help text each
#: (``--out``'s default and ``--threads``'s default are the command's)
SHARED_OPTIONS: dict[str, str] = {
    "--out": "the run folder: config.json, the results, run.json (the manifest listing every "
    "file with its size and SHA-256) and the saved state --resume continues from",
    "--resume": "continue the run in --out from its last saved state, giving the result of a "
    "run never interrupted (options typed must match its config.json; the others are taken "
    "from it); a folder without a run yet starts afresh",
    "--overwrite": "replace the run in --out (a folder holding a run is refused otherwise)",
    "--config": "settings from a TOML or JSON file (keys as in a run's config.json, which is "
    "such a file; YAML with PyYAML installed); flags typed here override them",
    "--no-progress": "hide the progress bars",
    "--threads": "torch intra-op threads (small meshes run fastest on one; 0 = torch's own choice)",
}


def add_run_options(
    parser: argparse.ArgumentParser,
    *,
    out: str | None,
    threads: int | None = DEFAULT_THREADS,
    title: str = "run folder",
    optional_out: str | None = None,
    progress_note: str = "",
) -> argparse._ArgumentGroup:
    """The shared options of a command that writes a run folder (:data:`SHARED_OPTIONS`):
    ``--out`` (required when ``out`` is None; optional, default none, when ``optional_out``
    gives what the folder then holds), ``--resume``, ``--overwrite``, ``--config``,
    ``--no-progress`` (``progress_note`` appended to its help) and, unless ``threads`` is None,
    ``--threads``.  Returns their group."""
    group = parser.add_argument_group(title)
    if optional_out is not None:  # a command that writes a folder only when asked to
        group.add_argument(
            "--out", default=None, metavar="DIR", help=f"{SHARED_OPTIONS['--out']} {optional_out}"
        )
    elif out is None:
        group.add_argument("--out", required=True, metavar="DIR", help=SHARED_OPTIONS["--out"])
    else:
        group.add_argument(
            "--out", default=out, metavar="DIR", help=SHARED_OPTIONS["--out"] + f" (default: {out})"
        )
    group.add_argument("--resume", action="store_true", help=SHARED_OPTIONS["--resume"])
    group.add_argument("--overwrite", action="store_true", help=SHARED_OPTIONS["--overwrite"])
    group.add_argument(
        "--config",
        dest="config_file",
        default=None,
        metavar="FILE",
        help=SHARED_OPTIONS["--config"],
    )
    group.add_argument(
        "--no-progress", action="store_true", help=SHARED_OPTIONS["--no-progress"] + progress_note
    )
    if threads is not None:
        add_threads_option(group, threads)
    return group


def add_threads_option(
    parser: argparse.ArgumentParser | argparse._ArgumentGroup, default: int
) -> None:
    parser.add_argument(
        "--threads",
        type=int,
        default=default,
        metavar="N",
        help=f"{SHARED_OPTIONS['--threads']} (default: {default})",
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


def _scalar(name: str, text: str, base: type) -> Any:
    try:
        if base is int:
            return int(text)
        if base is float:
            return float(text)
    except ValueError:
        kind = "an integer" if base is int else "a number"
        raise ConfigError(f"{{0}} must be {kind}, got {text!r}", name) from None
    return text


def _parse(cls: type, name: str, text: str | list[str] | bool) -> Any:
    """A flag's text as the field's type (ConfigError naming the field otherwise); a switch
    (a boolean field) is already True."""
    if isinstance(text, bool):
        return text
    base, _, element = settings_field_type(cls, name)
    if base is list:
        if isinstance(text, list):  # nargs: several words
            return [_scalar(name, part, element or str) for part in text]
        try:
            return [_scalar(name, part, element or str) for part in text.split(",")]
        except ConfigError:
            raise ConfigError(
                f"{{0}} takes comma-separated integers such as 13,13, got {text!r}", name
            ) from None
    assert isinstance(text, str)
    return _scalar(name, text, base)


def typed_settings_of(
    cls: type, args: argparse.Namespace, names: Collection[str] | None = None
) -> dict[str, Any]:
    """The fields of ``cls`` the user typed as flags, parsed (paths made absolute, so that a
    saved configuration finds its files from any directory)."""
    fields = {f.name: f for f in dataclasses.fields(cls)}
    typed = {
        name: _parse(cls, name, text)
        for name, text in vars(args).items()
        if name in fields and (names is None or name in names)
    }
    for name, value in typed.items():
        if fields[name].metadata.get("path") and isinstance(value, str):
            typed[name] = str(Path(value).resolve())
    return typed


def typed_settings(
    args: argparse.Namespace, names: Collection[str] | None = None
) -> dict[str, Any]:
    """The :class:`RunConfig` fields the user typed as flags, parsed (``data`` made absolute,
    so that ``meshprop evaluate`` finds the file from any directory)."""
    return typed_settings_of(RunConfig, args, names)


def resolve_settings(
    cls: type,
    args: argparse.Namespace,
    merge: Callable[[list[dict[str, Any]]], dict[str, Any]] | None = None,
    base: dict[str, Any] | None = None,
) -> Any:
    """The configuration of class ``cls``: its defaults (or ``base``, the settings of a run
    ``--resume`` continues), overridden by the ``--config`` file, overridden by the flags typed
    (``merge`` combines the layers; default: the later layer wins key by key).  Errors name
    the flag typed, or the key and the file."""
    source = getattr(args, "config_file", None)
    file_values = {} if source is None else load_settings_file(cls, source)
    typed: dict[str, Any] = {}

    def name(field: str) -> str:
        if field in file_values and field not in typed:
            return f"{field} (in {source})"
        return settings_flag(cls, field)

    try:
        typed = typed_settings_of(cls, args)
        layers = [file_values, typed] if base is None else [base, file_values, typed]
        merged = {k: v for layer in layers for k, v in layer.items()}
        settings = merge(layers) if merge is not None else merged
        return cls(**settings)
    except ConfigError as error:
        raise ValueError(error.describe(name)) from None


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
