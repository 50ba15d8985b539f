"""What ``meshprop online`` runs for a task: which options apply to it, the defaults picked
for it (a network and learning rate able to learn it), the task's streams
(:mod:`meshprop.data.tasks`) and the network.

An option that does not apply to the chosen task is refused (one line, before anything is
written) instead of being ignored.  A CSV series (``--data FILE --column NAME``) is the task
``series``: a prediction task like ``mackey-glass``.
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path
from typing import Any

import torch

from ..data.tasks import (
    TaskStream,
    adding_problem,
    copy_task,
    delayed_recall,
    load_series_column,
    mackey_glass_task,
    series_task,
)
from ..mesh import MeshNet
from ..topology import Topology

__all__ = [
    "APPLIES_TO",
    "CHAIN_WEIGHT",
    "DEFAULT_INIT_SCALE",
    "SERIES",
    "TASK_CHOICES",
    "TASK_DEFAULTS",
    "TOPOLOGIES",
    "build_net",
    "default_train_ticks",
    "describe_network",
    "make_task",
    "resolve_task",
]

TASK_CHOICES = ("delayed-recall", "copy", "adding", "mackey-glass")
#: the task name of a user's CSV series (``--data FILE --column NAME``)
SERIES = "series"
PREDICTION = ("mackey-glass", SERIES)
DEFAULT_INIT_SCALE = math.sqrt(3.0)
#: ``--topology``: a full mesh, or a delay line (:meth:`Topology.chain`)
TOPOLOGIES = ("full", "chain")
#: the initial weight of a chain's links: tanh(2·h) keeps the sign of h ≥ 0.66 (a shift register)
CHAIN_WEIGHT = 2.0

#: the options that belong to some tasks only (refused with any other)
APPLIES_TO: dict[str, tuple[str, ...]] = {
    "delay": ("delayed-recall", "copy"),
    "length": ("copy", "adding"),
    "horizon": PREDICTION,
    "window": PREDICTION,
    "test_fraction": PREDICTION,
    "test_ticks": ("delayed-recall", "copy", "adding"),
}

#: the defaults picked per task (measured to learn it; docs/online.md has the figures)
TASK_DEFAULTS: dict[str, dict[str, Any]] = {
    "delayed-recall": {"delay": 10, "test_ticks": 5000, "hidden": 32, "lr": 3e-4},
    "copy": {"length": 3, "delay": 5, "test_ticks": 5000, "hidden": 32, "lr": 1e-3},
    "adding": {"length": 10, "test_ticks": 5000, "hidden": 32, "lr": 1e-3},
    "mackey-glass": {"horizon": 1, "window": 5, "test_fraction": 0.3, "hidden": 16, "lr": 1e-3},
    SERIES: {"horizon": 1, "window": 5, "test_fraction": 0.3, "hidden": 16, "lr": 1e-3},
}


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def resolve_task(args: argparse.Namespace) -> None:
    """Settle ``args.task`` (``--data`` makes it :data:`SERIES`), refuse the options that do not
    apply to it and fill the task's defaults into the options left out (None)."""
    if args.data is not None:
        if args.column is None:
            raise ValueError("--data needs --column NAME")
        if args.task not in (None, SERIES):
            raise ValueError(
                f"--task {args.task} and --data: a CSV series is a task of its own; give one"
            )
        if not Path(args.data).is_file():
            raise FileNotFoundError(f"no such file: {args.data}")
        args.task = SERIES
    else:
        if args.column is not None:
            raise ValueError("--column applies with --data FILE.csv only")
        if args.task is None:
            args.task = "delayed-recall"
        if args.task == SERIES:
            raise ValueError("the series task needs --data FILE.csv --column NAME")
    task = args.task
    chain_length = args.hidden is None and getattr(args, "topology", "full") == "chain"
    for name, tasks in APPLIES_TO.items():
        if getattr(args, name) is not None and task not in tasks:
            where = ", ".join("a --data series" if t == SERIES else t for t in tasks)
            what = "a --data series" if task == SERIES else f"--task {task}"
            raise ValueError(f"{_flag(name)} does not apply to {what} (only to {where})")
    for name, value in TASK_DEFAULTS[task].items():
        if getattr(args, name) is None:
            setattr(args, name, value)
    if chain_length:  # a delay line as long as the memory the task needs
        memory = {"delayed-recall": args.delay, "copy": (args.length or 0) + (args.delay or 0)}
        args.hidden = max(1, memory.get(task, args.hidden))


def default_train_ticks(task: str, delay: int | None = None, length: int | None = None) -> int:
    """Training elements by task: delayed recall 10,000 for D ≤ 10, 150,000 for D ≤ 20,
    300,000 above (what solved it in the prototype); copy 50,000; adding 100,000; prediction
    20,000."""
    if task == "delayed-recall":
        d = 10 if delay is None else delay
        return 10_000 if d <= 10 else 150_000 if d <= 20 else 300_000
    return {"copy": 50_000, "adding": 100_000}.get(task, 20_000)


def make_task(args: argparse.Namespace, train_ticks: int) -> TaskStream:
    """The task's streams for resolved ``args`` (after :func:`resolve_task`)."""
    task = args.task
    if task == "delayed-recall":
        return delayed_recall(args.delay, train_ticks, args.test_ticks, args.seed)
    if task == "copy":
        return copy_task(args.length, args.delay, train_ticks, args.test_ticks, args.seed)
    if task == "adding":
        return adding_problem(args.length, train_ticks, args.test_ticks, args.seed)
    if task == "mackey-glass":
        return mackey_glass_task(args.horizon, args.window, args.test_fraction, train_ticks)
    series = load_series_column(args.data, args.column)
    name = f"{Path(args.data).name}:{args.column}"
    return series_task(series, name, args.horizon, args.window, args.test_fraction, train_ticks)


def output_activation(task: str) -> str:
    """tanh outputs for ±1 targets (recall, copy), identity for numbers (adding, prediction)."""
    return "tanh" if task in ("delayed-recall", "copy") else "identity"


def build_net(
    hidden: int,
    seed: int,
    dtype: torch.dtype,
    init_scale: float = DEFAULT_INIT_SCALE,
    inputs: int = 1,
    output: str = "tanh",
    topology: str = "full",
) -> MeshNet:
    """``inputs`` inputs, bias, ``hidden`` tanh, 1 output (``output`` activation), 1 tick per
    element; MeshNet's initial weights times ``init_scale``.  ``topology`` "full": fully
    connected (self-loops and output feedback included); "chain": a delay line of ``hidden``
    neurons read by the output (:meth:`Topology.chain`) whose links start at
    :data:`CHAIN_WEIGHT` and whose hidden biases start at 0, so that it starts as a shift
    register of signs and learning starts at the readout."""
    if topology not in TOPOLOGIES:
        raise ValueError(f"topology must be one of {TOPOLOGIES}, got {topology!r}")
    if topology == "chain":
        topo = Topology.chain(inputs, hidden, 1)
    else:
        topo = Topology.random(inputs, hidden, 1, density=1.0, bias=True, seed=seed)
    net = MeshNet(
        topo, ticks=1, activation="tanh", output_activation=output, dtype=dtype, seed=seed
    )
    with torch.no_grad():
        net.parameter.mul_(init_scale)
        if topology == "chain":  # dense layout: A[source, target]
            first = inputs + 1
            A = net.parameter
            A[:inputs, first] = CHAIN_WEIGHT
            links = torch.arange(first, first + hidden - 1)
            A[links, links + 1] = CHAIN_WEIGHT
            A[inputs, first : first + hidden] = 0.0
    return net


def _shape(args: argparse.Namespace) -> str:
    if getattr(args, "topology", "full") == "chain":
        return "hidden neurons in a chain (a delay line) read by the output"
    return "fully connected"


def describe_network(args: argparse.Namespace, task: TaskStream, train_ticks: int) -> str:
    """One line: the network, method and training length the run uses."""
    method = args.method + (f" (window {args.truncation})" if args.method == "tbptt" else "")
    if args.method == "bptt":
        method += f" (sequences of {args.sequence_length})"
    return (
        f"network: {task.n_inputs} input(s) + bias, {args.hidden} tanh hidden, 1 "
        f"{output_activation(args.task)} output, {_shape(args)}, 1 tick per element; method "
        f"{method}; Adam lr {args.lr:g}; {train_ticks:,} training elements; metric "
        f"{task.metric} (baselines: {', '.join(task.baselines)})"
    )
