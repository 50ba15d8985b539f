"""The run configuration: one dataclass whose fields carry their own documentation.

Each field of :class:`RunConfig` has metadata (help text, command-line flag, choices, range,
help group) from which ``meshprop train`` builds its options, so the configuration, its
validation and the command line cannot drift apart.  A configuration file (TOML, JSON, or YAML
when PyYAML is installed) holds the same keys (:func:`load_config_file`); every run saves its
resolved configuration as ``config.json``, which is itself a valid configuration file.

Errors are :class:`ConfigError`: they keep the names of the settings at fault apart from the
message, so the command line can name its flags (``--batch-size``) and a file its keys.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Collection, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..activations import ACTIVATIONS
from ..data import DATASETS
from ..devices import DEVICES
from ..engines import ENGINES
from ..layered import RULES
from ..layout import LAYOUTS
from ..structure import STRUCTURES
from ..training import OPTIMIZERS
from .settings import ConfigError, check_fields, load_settings_file, positive, quote
from .settings import field_type as settings_field_type

__all__ = [
    "ARCHITECTURES",
    "ConfigError",
    "RunConfig",
    "check_data_source",
    "config_fields",
    "load_config_file",
    "merge_settings",
]

ARCHITECTURES = ("mesh", "mlp")
DTYPES = ("float32", "float64")
TASKS = ("auto", "classification", "regression")


def _quote(value: Any) -> str:
    """``repr(value)`` made safe inside a :class:`ConfigError` template."""
    return quote(value)


def setting(
    default: Any,
    help: str,
    *,
    group: str,
    flag: str | None = None,
    choices: Callable[[], Collection[str]] | None = None,
    check: tuple[str, Callable[[Any], bool]] | None = None,
    metavar: str | None = None,
    shown: str | None = None,
    path: bool = False,
    nargs: str | None = None,
    free_on_resume: bool = False,
) -> Any:
    """A :class:`RunConfig` field with its documentation.

    ``flag``: the command-line option (default ``--`` + the name with dashes); ``choices``: the
    allowed values (a function, read when checked, so registries stay open); ``check``: a range
    as (description, predicate), e.g. ``(">= 1", lambda v: v >= 1)``; ``shown``: how the help
    states the default when it is not the plain value; ``path``: a file path, taken relative
    to the configuration file that gives it; ``nargs``: a list typed as several words
    (``"+"``, or ``"*"`` when an empty list means none) instead of comma-separated;
    ``free_on_resume``: ``--resume`` takes a new value typed instead of refusing it (a sweep's
    grid, whose units are kept by what defines each).
    """
    metadata = {
        "help": help,
        "group": group,
        "flag": flag,
        "choices": choices,
        "check": check,
        "metavar": metavar,
        "shown": shown,
        "path": path,
        "nargs": nargs,
        "free_on_resume": free_on_resume,
    }
    if isinstance(default, list):  # a fresh copy for every instance
        return field(default_factory=lambda: list(default), metadata=metadata)
    return field(default=default, metadata=metadata)


@dataclass
class RunConfig:
    """Everything that defines a training run (stored as ``config.json`` in the run folder,
    in ``metrics.json`` and in the checkpoint)."""

    dataset: str | None = setting(
        "moons",
        "built-in dataset",
        group="data",
        choices=lambda: DATASETS,
        metavar="NAME",
        shown="moons, unless --data is given",
    )
    data: str | None = setting(
        None,
        "your own CSV file (header row, numeric feature columns)",
        group="data",
        metavar="FILE.csv",
        path=True,
    )
    target: str | None = setting(
        None,
        "the CSV column to predict (class labels or numbers)",
        group="data",
        metavar="COLUMN",
    )
    task: str = setting(
        "auto",
        "for CSV targets: what the target column holds",
        group="data",
        choices=lambda: TASKS,
    )
    n_samples: int = setting(
        1000,
        "samples drawn for the generated 2-D sets",
        group="data",
        flag="--samples",
        check=(">= 4", lambda v: v >= 4),
    )
    hidden: int = setting(
        5,
        "hidden neurons of a mesh",
        group="network",
        check=(">= 0", lambda v: v >= 0),
    )
    ticks: int = setting(
        3,
        "state transitions T of a mesh",
        group="network",
        check=(">= 1", lambda v: v >= 1),
    )
    density: float = setting(
        1.0,
        "fraction of a mesh's allowed edges kept: 1 = full mesh, <1 = random mesh",
        group="network",
        check=("in (0, 1]", lambda v: 0 < v <= 1),
    )
    degree: float | None = setting(
        None,
        "a large sparse mesh of this mean degree (Topology.sparse_random: every hidden neuron "
        "fed by 3 inputs and the bias and feeding one output, the other edges random among "
        "the hidden neurons, cycles and self-loops included); with --density d a random "
        "fraction d of its edges is kept (the start of --structure set/rigl); pair it with "
        "--layout sparse for 10^4 neurons and more",
        group="network",
        metavar="D",
        check=("> 0", positive),
    )
    layout: str = setting(
        "dense",
        "how the mesh stores its weights: dense (an N×N matrix: fastest for small meshes) or "
        "sparse (one weight per edge, nothing N×N: meshes of 10^5 neurons)",
        group="network",
        choices=lambda: LAYOUTS,
    )
    activation: str = setting(
        "relu", "hidden activation", group="network", choices=lambda: tuple(ACTIVATIONS)
    )
    output_activation: str | None = setting(
        "identity",
        "output activation; identity = logits for cross-entropy",
        group="network",
        choices=lambda: tuple(ACTIVATIONS),
    )
    grad: str = setting(
        "fop",
        "gradient engine; for --arch mlp also a layered rule",
        group="network",
        choices=lambda: (*ENGINES, *RULES),
        shown="fop for a mesh, two_step for an mlp",
    )
    optimizer: str = setting(
        "adam", "torch.optim optimiser", group="optimisation", choices=lambda: tuple(OPTIMIZERS)
    )
    lr: float = setting(0.01, "learning rate", group="optimisation", check=("> 0", positive))
    momentum: float = setting(
        0.0, "momentum of sgd and rmsprop", group="optimisation", check=(">= 0", lambda v: v >= 0)
    )
    weight_decay: float = setting(
        0.0, "weight decay", group="optimisation", check=(">= 0", lambda v: v >= 0)
    )
    epochs: int = setting(
        60, "passes over the training data", group="optimisation", check=(">= 1", positive)
    )
    batch_size: int = setting(
        32, "samples per optimiser step", group="optimisation", check=(">= 1", positive)
    )
    seed: int = setting(
        0,
        "seeds the data, the split, the topology, the weights, the batches",
        group="optimisation",
        check=(">= 0", lambda v: v >= 0),
    )
    test_size: float = setting(
        0.3,
        "fraction of samples held out for testing",
        group="optimisation",
        check=("in (0, 1)", lambda v: 0 < v < 1),
    )
    val_size: float = setting(
        0.0,
        "fraction of samples held out for validation",
        group="optimisation",
        check=("in [0, 1)", lambda v: 0 <= v < 1),
    )
    patience: int | None = setting(
        None,
        "early stopping: epochs without validation improvement; needs --val-size",
        group="optimisation",
        check=(">= 1", positive),
    )
    dtype: str = setting("float64", "floating-point type", group="network", choices=lambda: DTYPES)
    device: str = setting(
        "cpu",
        "where the network and its batches live: cpu, or cuda (refused before any work when "
        "torch sees no CUDA device)",
        group="network",
        choices=lambda: DEVICES,
    )
    arch: str = setting(
        "mesh",
        "mesh: an MNN of --hidden neurons (--ticks, --density); mlp: a layered network of "
        "--layers, run for L = len(layers)+1 ticks",
        group="network",
        choices=lambda: ARCHITECTURES,
    )
    layers: list[int] | None = setting(  # noqa: RUF009 (setting is dataclasses.field)
        None,
        "hidden layer sizes of --arch mlp, e.g. 13,13",
        group="network",
        metavar="N1,N2,...",
        check=("all >= 1", lambda v: len(v) > 0 and min(v) >= 1),
    )
    structure: str = setting(
        "static",
        "structural learning of a mesh at --density: static (random edges, fixed), magnitude "
        "(prune the smallest weights from the full mesh down to --density), set (drop the "
        "smallest, regrow at random), rigl (drop the smallest, regrow where the dense gradient "
        "is largest)",
        group="network",
        choices=lambda: STRUCTURES,
    )
    update_every: int = setting(
        100,
        "optimiser steps between two structural updates (until three quarters of the steps)",
        group="network",
        check=(">= 1", positive),
    )
    drop_fraction: float = setting(
        0.3,
        "fraction of the edges exchanged per update by set and rigl, decayed by a cosine",
        group="network",
        check=("in (0, 1)", lambda v: 0 < v < 1),
    )

    def __post_init__(self) -> None:
        check_fields(self, skip_choices=("grad",))  # grad: its own message, naming --arch
        self._check_combination()

    def _check_combination(self) -> None:
        if self.arch == "mlp":
            if self.layers is None:
                raise ConfigError("an MLP needs its hidden layer sizes ({0}, e.g. 13,13)", "layers")
            for name in MESH_ONLY:
                if getattr(self, name) != _DEFAULTS[name]:
                    raise mesh_only_error(name)
        elif self.layers is not None:
            raise ConfigError("{0} applies to arch='mlp' only (give {1} mlp)", "layers", "arch")
        if self.grad not in ENGINES and not (self.arch == "mlp" and self.grad in RULES):
            raise ConfigError(
                f"{{0}}: unknown gradient method {_quote(self.grad)}; expected one of "
                f"{', '.join(ENGINES)} (with {{1}} mlp also {', '.join(RULES)})",
                "grad",
                "arch",
            )
        check_data_source(self.dataset, self.data, self.target)
        if self.dataset is None and self.data is None:
            raise ConfigError(
                "give a built-in dataset ({0}) or a CSV file ({1})", "dataset", "data"
            )
        if self.data is not None and self.target is None:
            raise ConfigError(
                f"a CSV file needs a target column ({{0}}) for {_quote(self.data)}", "target"
            )
        if self.degree is not None and self.structure == "magnitude":
            raise ConfigError(
                "{0} builds its own sparse mesh and {1} magnitude prunes a full mesh: give "
                "{1} static, set or rigl with {0} (and {2} for the fraction of its edges kept)",
                "degree",
                "structure",
                "density",
            )
        if self.structure != "static" and self.density >= 1:
            raise ConfigError(
                f"{{0}} {self.structure} needs a sparse target: give {{1}} below 1",
                "structure",
                "density",
            )
        if self.structure != "static" and self.patience is not None:
            raise ConfigError(
                "early stopping ({0}) restores the weights of an earlier topology: it cannot be "
                "combined with {1} " + _quote(self.structure),
                "patience",
                "structure",
            )
        if self.patience is not None and self.val_size <= 0:
            raise ConfigError(
                "early stopping ({0}) needs a validation split ({1} > 0)", "patience", "val_size"
            )
        if self.test_size + self.val_size >= 1:
            raise ConfigError(
                "{0} + {1} must be below 1 (some samples must be left for training)",
                "test_size",
                "val_size",
            )

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> RunConfig:
        """The configuration of a saved run (keys this version does not know are ignored)."""
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in names})


_DEFAULTS = {f.name: f.default for f in dataclasses.fields(RunConfig)}


#: settings of a mesh that an MLP (whose shape comes from ``layers``) does not take
MESH_ONLY = (
    "hidden",
    "ticks",
    "density",
    "degree",
    "layout",
    "structure",
    "update_every",
    "drop_fraction",
)


def mesh_only_error(name: str) -> ConfigError:
    return ConfigError(
        "{0} applies to {1} mesh only; an MLP's shape comes from {2} (e.g. 13,13)",
        name,
        "arch",
        "layers",
    )


def config_fields() -> tuple[dataclasses.Field[Any], ...]:
    """The fields of :class:`RunConfig`, in order, with their metadata."""
    return dataclasses.fields(RunConfig)


def field_type(name: str) -> tuple[type, bool]:
    """(base type, whether None is allowed) of a :class:`RunConfig` field; the base type of
    ``layers`` is ``list``."""
    base, optional, _ = settings_field_type(RunConfig, name)
    return base, optional


def check_data_source(dataset: str | None, data: str | None, target: str | None) -> None:
    """A built-in dataset or a CSV file, not both; a target column only with a file."""
    if dataset is not None and data is not None:
        raise ConfigError("give either {0} or {1}, not both", "dataset", "data")
    if data is None and target is not None:
        raise ConfigError("{0} applies to a CSV file ({1}) only", "target", "data")


def load_config_file(path: str | Path) -> dict[str, Any]:
    """The settings of a configuration file, checked against :class:`RunConfig`'s keys
    (:func:`meshprop.runs.settings.load_settings_file`: TOML, JSON such as a run's saved
    ``config.json``, or YAML with PyYAML); a relative ``data`` path is taken relative to the
    file's folder."""
    return load_settings_file(RunConfig, path)


def merge_settings(layers: Iterable[Mapping[str, Any]]) -> dict[str, Any]:
    """Settings given in order of increasing precedence (a file, then flags) as one mapping.

    A data source given at a later layer replaces the earlier one: ``dataset`` drops an earlier
    ``data`` and ``target``, ``data`` an earlier ``dataset``.
    """
    merged: dict[str, Any] = {}
    for layer in layers:
        if "dataset" in layer and "data" not in layer:
            merged.pop("data", None)
            merged.pop("target", None)
        if "data" in layer and "dataset" not in layer:
            merged.pop("dataset", None)
        merged.update(layer)
    if "data" in merged and "dataset" not in merged:
        merged["dataset"] = None
    return merged
