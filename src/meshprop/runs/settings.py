"""One way to declare a command's configuration: a dataclass whose fields carry their own
documentation (:func:`meshprop.runs.config.setting`).

A configuration class (:class:`~meshprop.runs.RunConfig` for ``meshprop train``,
:class:`~meshprop.runs.commands.TimeseriesConfig` for ``meshprop timeseries``, ...) declares
each setting once: its type, default, help, choices and range.  From that single declaration

- :mod:`meshprop.commands.options` generates the command-line flags and their help;
- :func:`check_fields` converts and checks every value (``ConfigError`` naming the setting);
- :func:`load_settings_file` reads a ``--config`` file holding the same keys (TOML, JSON, or
  YAML with PyYAML); the resolved configuration saved as a run's ``config.json`` is such a file.
"""

from __future__ import annotations

import dataclasses
import json
import math
import tomllib
import types
import typing
from collections.abc import Callable
from pathlib import Path
from typing import Any

__all__ = [
    "ConfigError",
    "at_least_one",
    "check_fields",
    "coerce",
    "field_type",
    "load_settings_file",
    "positive",
    "settings_fields",
    "split_hint",
]


def positive(value: float) -> bool:
    """The check of a setting that must be above zero (``check=("> 0", positive)``)."""
    return value > 0


def at_least_one(value: float) -> bool:
    """The check of a count that must be at least one (``check=(">= 1", at_least_one)``)."""
    return value >= 1


class ConfigError(ValueError):
    """A configuration the user can fix.

    ``template`` is the message with ``{0}``, ``{1}``, ... in place of the settings named in
    ``fields``; ``str(error)`` names them as Python fields, :meth:`describe` as the caller
    spells them (``--batch-size`` on the command line, ``batch_size in run.toml`` in a file).
    """

    def __init__(self, template: str, *fields: str) -> None:
        self.template = template
        self.fields = fields
        super().__init__(self.describe(str))

    def describe(self, name: Callable[[str], str]) -> str:
        return self.template.format(*(name(f) for f in self.fields))


def quote(value: Any) -> str:
    """``repr(value)`` made safe inside a :class:`ConfigError` template."""
    return repr(value).replace("{", "{{").replace("}", "}}")


def settings_fields(cls: type) -> tuple[dataclasses.Field[Any], ...]:
    """The fields of a configuration class, in order, with their metadata."""
    return dataclasses.fields(cls)


def split_hint(hint: Any) -> tuple[type, bool, type | None]:
    """(base type, whether None is allowed, element type of a list) of a field's annotation."""
    args = typing.get_args(hint) if isinstance(hint, types.UnionType) else (hint,)
    optional = type(None) in args
    base = next(a for a in args if a is not type(None))
    element = None
    if typing.get_origin(base) is list:
        element = (typing.get_args(base) or (str,))[0]
    return (typing.get_origin(base) or base), optional, element


def field_type(cls: type, name: str) -> tuple[type, bool, type | None]:
    """:func:`split_hint` of the field ``name`` of ``cls``."""
    return split_hint(typing.get_type_hints(cls)[name])


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _scalar(name: str, value: Any, base: type) -> Any:
    if base is int and not _is_int(value):
        raise ConfigError(f"{{0}} must be an integer, got {quote(value)}", name)
    if base is float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ConfigError(f"{{0}} must be a number, got {quote(value)}", name)
        if not math.isfinite(value):
            raise ConfigError(f"{{0}} must be a finite number, got {quote(value)}", name)
        return float(value)
    if base is str and not isinstance(value, str):
        raise ConfigError(f"{{0}} must be a string, got {quote(value)}", name)
    if base is bool and not isinstance(value, bool):
        raise ConfigError(f"{{0}} must be true or false, got {quote(value)}", name)
    return value


def coerce(name: str, value: Any, hint: Any) -> Any:
    """``value`` as the field's type (an int is a valid float; a list's elements each);
    ConfigError otherwise."""
    base, optional, element = split_hint(hint)
    if value is None:
        if optional:
            return None
        raise ConfigError("{0} must be given (it cannot be empty)", name)
    if base is list:
        kinds: dict[type, str] = {int: "integers", float: "numbers", str: "strings"}
        item = element or str
        if not isinstance(value, list | tuple):
            raise ConfigError(
                f"{{0}} must be a list of {kinds.get(item, 'values')}, got {quote(value)}", name
            )
        try:
            return [_scalar(name, v, item) for v in value]
        except ConfigError:
            raise ConfigError(
                f"{{0}} must be a list of {kinds.get(item, 'values')}, got {quote(value)}", name
            ) from None
    return _scalar(name, value, base)


def check_value(f: dataclasses.Field[Any], value: Any) -> None:
    """The field's choices (every element of a list) and range (the whole value: a list's
    check states its own rule, such as ``all in (0, 1]``)."""
    choices = f.metadata.get("choices")
    check = f.metadata.get("check")
    for v in value if isinstance(value, list) else [value]:
        if choices is not None and v not in choices():
            raise ConfigError(
                f"{{0}} must be one of {', '.join(choices())}, got {quote(v)}", f.name
            )
    if check is not None and not check[1](value):
        raise ConfigError(f"{{0}} must be {check[0]}, got {quote(value)}", f.name)


def check_fields(config: Any, skip_choices: tuple[str, ...] = ()) -> None:
    """Convert every field of the dataclass instance ``config`` to its type and check its
    choices and range (a configuration class calls this from ``__post_init__``)."""
    hints = typing.get_type_hints(type(config))
    for f in dataclasses.fields(config):
        value = coerce(f.name, getattr(config, f.name), hints[f.name])
        setattr(config, f.name, value)
        if value is None:
            continue
        if f.name in skip_choices:
            check = f.metadata.get("check")
            if check is not None and not check[1](value):
                raise ConfigError(f"{{0}} must be {check[0]}, got {quote(value)}", f.name)
            continue
        check_value(f, value)


#: keys a run's config.json holds besides the settings (its provenance)
RECORD_KEYS = ("provenance",)


def load_settings_file(cls: type, path: str | Path) -> dict[str, Any]:
    """The settings of a configuration file, checked against the keys of ``cls``.

    TOML (``.toml``), JSON (``.json``, e.g. a run's saved ``config.json``) or YAML (``.yaml``,
    ``.yml``; needs PyYAML) holding one table of the class's keys.  Fields marked
    ``path=True`` holding a relative path are taken relative to the file's folder.  Values are
    checked when the configuration is built (after command-line flags override them).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"configuration file {str(path)!r} does not exist")
    text = path.read_text(encoding="utf-8")
    suffix = path.suffix.lower()
    try:
        if suffix == ".toml":
            values: Any = tomllib.loads(text)
        elif suffix == ".json":
            values = json.loads(text)
        elif suffix in (".yaml", ".yml"):
            values = _load_yaml(path, text)
        else:
            raise ValueError(
                f"{path}: unknown configuration format {suffix!r}; use .toml, .json or .yaml"
            )
    except (tomllib.TOMLDecodeError, json.JSONDecodeError) as error:
        raise ValueError(f"{path}: not valid {suffix[1:].upper()} ({error})") from None
    if not isinstance(values, dict):
        raise ValueError(f"{path}: expected a table of settings, got {type(values).__name__}")
    for key in RECORD_KEYS:
        values.pop(key, None)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = [key for key in values if key not in fields]
    if unknown:
        raise ValueError(f"{path}: unknown key {unknown[0]!r}; valid keys are {', '.join(fields)}")
    for name, value in values.items():
        if fields[name].metadata.get("path") and isinstance(value, str):
            values[name] = str((path.parent / value).resolve())
    return values


def _load_yaml(path: Path, text: str) -> Any:
    try:
        import yaml
    except ImportError:
        raise ValueError(
            f"{path}: reading YAML needs PyYAML, which is not installed; use a .toml file"
        ) from None
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as error:
        raise ValueError(f"{path}: not valid YAML ({error})") from None
