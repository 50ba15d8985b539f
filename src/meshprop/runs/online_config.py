"""Everything that defines a ``meshprop online`` run: :class:`OnlineConfig`, whose fields are
the command's options (:mod:`meshprop.runs.settings`) and whose resolved values are the run's
``config.json``.

Settings whose default depends on the task (the delay, the network, the learning rate, ...)
default to None; :meth:`OnlineConfig.__post_init__` is the one place that resolves them
(:data:`~meshprop.runs.online_tasks.TASK_DEFAULTS`, the method's window or sequence length,
the training length) after refusing the options that do not apply to the task or the method.
Resolving is idempotent, so a saved ``config.json`` reads back as the same configuration and
``--resume`` compares the options typed with the values the run used.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from ..devices import DEVICES
from .config import setting
from .online_networks import DEFAULT_INIT_SCALE, TOPOLOGIES, line_length
from .online_tasks import (
    APPLIES_TO,
    HIDDEN,
    PREDICTION,
    SERIES,
    STARTS,
    TASK_CHOICES,
    TASK_DEFAULTS,
    default_train_ticks,
    memory_span,
)
from .settings import ConfigError, at_least_one, check_fields, positive

__all__ = ["DTYPES", "METHODS", "ONLINE", "OnlineConfig", "state_settings"]

METHODS = ("fop", "snap", "uoro", "tbptt", "bptt")
#: the methods that learn online (an optimizer step per element); bptt is offline
ONLINE = ("fop", "snap", "uoro", "tbptt")
DTYPES = ("float32", "float64")
#: settings that change how a run goes, not what it computes (left out of the saved state's
#: record of the settings it belongs to)
OPERATIONAL = ("checkpoint_every", "device")


def _non_negative(value: float) -> bool:
    return value >= 0


@dataclass
class OnlineConfig:
    """The settings of ``meshprop online`` (saved, resolved, as its ``config.json``)."""

    task: str | None = setting(
        None,
        "the stream",
        group="task",
        choices=lambda: TASK_CHOICES,
        shown="delayed-recall",
    )
    data: str | None = setting(
        None,
        "predict a CSV column instead of a built-in task (split and use: see above)",
        group="task",
        metavar="FILE.csv",
        path=True,
    )
    column: str | None = setting(None, "the CSV column (with --data)", group="task", metavar="NAME")
    method: str = setting("fop", "gradient method", group="method", choices=lambda: METHODS)
    truncation: int | None = setting(
        None, "tbptt window", group="method", check=(">= 1", at_least_one), shown="max(1, D/2); 10"
    )
    order: int | None = setting(
        None,
        "snap: SnAp's k, the ticks of influence kept",
        group="method",
        check=(">= 1", at_least_one),
        shown="1",
    )
    delay: int | None = setting(
        None,
        "delayed-recall, copy: D",
        group="task",
        check=(">= 1", at_least_one),
        shown="10; copy 5",
    )
    length: int | None = setting(
        None,
        "copy: pattern length K; adding: L",
        group="task",
        check=(">= 1", at_least_one),
        shown="3 for copy, 10 for adding",
    )
    horizon: int | None = setting(
        None, "prediction: steps ahead", group="task", check=(">= 1", at_least_one), shown="1"
    )
    window: int | None = setting(
        None,
        "prediction: inputs = the last W values",
        group="task",
        check=(">= 1", at_least_one),
        shown="5",
    )
    test_fraction: float | None = setting(
        None,
        "prediction: the series' last part held out",
        group="task",
        check=("in (0, 1)", lambda v: 0.0 < v < 1.0),
        shown="0.3",
    )
    train_ticks: int | None = setting(
        None,
        "training elements",
        group="training",
        check=(">= 1", at_least_one),
        shown="by task: 20,000 recall and copy on the delay line, 200,000 adding, 100,000 "
        "prediction",
    )
    test_ticks: int | None = setting(
        None,
        "recall, copy, adding: held-out stream length",
        group="task",
        check=(">= 1", at_least_one),
        shown="5000",
    )
    sequence_length: int | None = setting(
        None,
        "bptt: sequence length",
        group="method",
        check=(">= 2", lambda v: v >= 2),
        shown="4·D; 100",
    )
    hidden: int | None = setting(
        None,
        "hidden neurons; for chain and ring the line's length",
        group="network",
        check=(">= 1", at_least_one),
        shown="1.5 × the task's span on a chain or ring; prediction 16; otherwise 32",
    )
    topology: str | None = setting(
        None,
        "the network. full: fully connected; chain: relu features, then a delay line of "
        "--hidden identity neurons (1.5 × the task's span unless --hidden) read by the output, "
        "links started at gain 1; ring: a closed tanh chain; self-loops: a tanh layer with "
        "self-loops only, started at 1; reservoir: sparse random tanh recurrence at spectral "
        "radius 0.9",
        group="network",
        choices=lambda: TOPOLOGIES,
        shown="chain for delayed-recall, copy, adding; full for prediction",
    )
    start: str | None = setting(
        None,
        "initial weights: random (memory tasks' default), or linear (prediction's default: "
        "the output starts as the ridge fit of the target on the window, then learns on)",
        group="network",
        choices=lambda: STARTS,
    )
    lr: float | None = setting(
        None,
        "Adam learning rate",
        group="training",
        check=("a positive number", positive),
        shown="by task, 1e-3; 3e-3 adding; 1e-4 prediction",
    )
    lr_decay: float | None = setting(
        None,
        "the learning rate decays exponentially to lr × this by the last training element "
        "(torch LambdaLR)",
        group="training",
        check=("in (0, 1]", lambda v: 0.0 < v <= 1.0),
        shown="1, constant; 0.01 prediction",
    )
    init_scale: float = setting(
        DEFAULT_INIT_SCALE,
        "multiplies MeshNet's uniform ±1/√fan-in initial weights (√3: unit variance per "
        "fan-in, recurrent spectral radius ≈ 1)",
        group="network",
        check=("a positive number", positive),
        shown=str(DEFAULT_INIT_SCALE),
    )
    seed: int = setting(0, "seed of data and weights", group="training")
    log_every: int = setting(
        500, "learning-curve resolution", group="training", check=(">= 1", at_least_one)
    )
    dtype: str = setting("float32", "floating-point type", group="network", choices=lambda: DTYPES)
    checkpoint_every: int = setting(
        50_000,
        "save the state every N elements (0: only on SIGINT/SIGTERM)",
        group="training",
        check=(">= 0", _non_negative),
        metavar="N",
    )
    device: str = setting(
        "cpu",
        "where the network and the stream live: cpu, or cuda (refused before any work when "
        "torch sees no CUDA device)",
        group="network",
        choices=lambda: DEVICES,
    )

    def __post_init__(self) -> None:
        check_fields(self, skip_choices=("task",))
        if self.task is not None and self.task not in (*TASK_CHOICES, SERIES):
            raise ConfigError(
                f"{{0}} must be one of {', '.join(TASK_CHOICES)}, got {self.task!r}", "task"
            )
        self._resolve_task()
        self._resolve_method()

    def _resolve_task(self) -> None:
        """Settle the task (``data`` makes it :data:`SERIES`), refuse the options that do not
        apply to it and fill the task's defaults into the settings left out (None)."""
        if self.data is not None:
            if self.column is None:
                raise ConfigError("{0} needs {1} NAME", "data", "column")
            if self.task not in (None, SERIES):
                raise ConfigError(
                    f"{{0}} {self.task} and {{1}}: a CSV series is a task of its own; give one",
                    "task",
                    "data",
                )
            self.task = SERIES
        else:
            if self.column is not None:
                raise ConfigError("{0} applies with {1} FILE.csv only", "column", "data")
            if self.task is None:
                self.task = "delayed-recall"
            if self.task == SERIES:
                raise ConfigError("the series task needs {0} FILE.csv {1} NAME", "data", "column")
        task = self.task
        for name, tasks in APPLIES_TO.items():
            if getattr(self, name) is not None and task not in tasks:
                where = ", ".join("a --data series" if t == SERIES else t for t in tasks)
                if task == SERIES:
                    raise ConfigError(f"{{0}} does not apply to a {{1}} series (only to {where})",
                                      name, "data")  # fmt: skip
                raise ConfigError(
                    f"{{0}} does not apply to {{1}} {task} (only to {where})", name, "task"
                )
        if self.start == "linear" and task not in PREDICTION:
            raise ConfigError(
                "{0} linear applies to prediction tasks only (mackey-glass, {1})", "start", "data"
            )
        if self.start is None and self.topology not in (None, "full"):
            self.start = "random"  # the linear start needs the full mesh's input → output edges
        for name, value in TASK_DEFAULTS[task].items():
            if getattr(self, name) is None:
                setattr(self, name, value)
        if self.start == "linear" and self.topology != "full":
            raise ConfigError(
                "{0} linear needs {1} full (its input → output edges hold the fit)",
                "start",
                "topology",
            )
        if self.hidden is None:  # a delay line as long as the memory the task needs, and more
            span = memory_span(self)
            line = self.topology in ("chain", "ring")
            self.hidden = line_length(span) if line and span is not None else HIDDEN
        self._check_held_out()
        if self.train_ticks is None:
            assert self.topology is not None
            self.train_ticks = default_train_ticks(task, self.delay, self.length, self.topology)

    def _check_held_out(self) -> None:
        """The held-out stream of a memory task holds at least one scored element."""
        task, ticks, delay, length = self.task, self.test_ticks or 0, self.delay, self.length
        if task == "adding" and length is not None and length < 2:
            raise ConfigError(f"{{0}} must be >= 2 for the adding problem, got {length}",
                              "length")  # fmt: skip
        if task == "delayed-recall" and delay is not None and ticks <= delay:
            raise ConfigError(
                f"{{0}} must exceed {{1}} ({delay}), got {ticks}", "test_ticks", "delay"
            )
        episode = 2 * (length or 0) + (delay or 0)
        if task == "copy" and ticks < episode:
            raise ConfigError(f"{{0}} must hold one episode ({episode}), got {ticks}", "test_ticks")
        if task == "adding" and length is not None and ticks < length:
            raise ConfigError(
                f"{{0}} must be >= {{1}} ({length}), got {ticks}", "test_ticks", "length"
            )

    def _resolve_method(self) -> None:
        """Refuse the options of other methods; fill the method's own (tbptt's window, snap's
        order, bptt's sequence length) from the task's memory when left out."""
        memory = self.delay if self.task == "delayed-recall" else None
        if self.method == "tbptt":
            if self.truncation is None:
                self.truncation = max(1, memory // 2) if memory is not None else 10
        elif self.truncation is not None:
            raise ConfigError("{0} applies to {1} tbptt only", "truncation", "method")
        if self.method == "snap":
            if self.order is None:
                self.order = 1
        elif self.order is not None:
            raise ConfigError("{0} applies to {1} snap only", "order", "method")
        if self.method == "bptt":
            if self.sequence_length is None:
                self.sequence_length = 4 * memory if memory is not None else 100
            if memory is not None and self.sequence_length <= memory:
                raise ConfigError(
                    f"{{0}} must exceed {{1}} ({self.delay}) for full BPTT to see a target, got "
                    f"{self.sequence_length}",
                    "sequence_length",
                    "delay",
                )
        elif self.sequence_length is not None:
            raise ConfigError("{0} applies to {1} bptt only", "sequence_length", "method")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def state_settings(config: OnlineConfig) -> dict[str, Any]:
    """The settings a saved state belongs to: every setting but the :data:`OPERATIONAL` ones."""
    return {k: v for k, v in config.to_dict().items() if k not in OPERATIONAL}
