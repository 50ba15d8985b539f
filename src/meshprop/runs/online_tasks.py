"""What ``meshprop online`` runs for a task: which options apply to it, the defaults picked
for it (a network and learning rate able to learn it), the task's streams
(:mod:`meshprop.data.tasks`) and the network.

An option that does not apply to the chosen task is refused (one line, before anything is
written) instead of being ignored (:class:`~meshprop.runs.online_config.OnlineConfig`).  A CSV
series (``--data FILE --column NAME``) is the task ``series``: a prediction task like
``mackey-glass``.
"""

from __future__ import annotations

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
from ..recurrent_init import set_edge_weights_
from .online_networks import DEFAULT_INIT_SCALE, TOPOLOGIES, build_net, shape_of

__all__ = [
    "APPLIES_TO",
    "DEFAULT_INIT_SCALE",
    "SERIES",
    "STARTS",
    "TASK_CHOICES",
    "TASK_DEFAULTS",
    "TOPOLOGIES",
    "build_net",
    "default_train_ticks",
    "describe_network",
    "linear_start_",
    "make_task",
    "memory_span",
]

TASK_CHOICES = ("delayed-recall", "copy", "adding", "mackey-glass")
#: the task name of a user's CSV series (``--data FILE --column NAME``)
SERIES = "series"
PREDICTION = ("mackey-glass", SERIES)
#: ``--start``: the initial weights (``random``: the topology's initialisation; ``linear``:
#: prediction only, the output starts as the ridge fit of the target on the window)
STARTS = ("random", "linear")
#: hidden neurons of a network whose size is not the task's span (full, self-loops, reservoir)
HIDDEN = 32

#: the options that belong to some tasks only (refused with any other)
APPLIES_TO: dict[str, tuple[str, ...]] = {
    "delay": ("delayed-recall", "copy"),
    "length": ("copy", "adding"),
    "horizon": PREDICTION,
    "window": PREDICTION,
    "test_fraction": PREDICTION,
    "test_ticks": ("delayed-recall", "copy", "adding"),
}

_MEMORY = {"topology": "chain", "start": "random", "lr_decay": 1.0}
_PREDICTION = {
    "horizon": 1, "window": 5, "test_fraction": 0.3, "topology": "full", "hidden": 16,
    "start": "linear", "lr": 1e-4, "lr_decay": 1e-2,
}  # fmt: skip
#: the defaults picked per task (measured to learn it; docs/online.md has the figures); the
#: hidden size of a memory task's delay line follows its span (:func:`memory_span`)
TASK_DEFAULTS: dict[str, dict[str, Any]] = {
    "delayed-recall": {"delay": 10, "test_ticks": 5000, "lr": 1e-3, **_MEMORY},
    "copy": {"length": 3, "delay": 5, "test_ticks": 5000, "lr": 1e-3, **_MEMORY},
    "adding": {"length": 10, "test_ticks": 5000, "lr": 3e-3, **_MEMORY},
    "mackey-glass": dict(_PREDICTION),
    SERIES: dict(_PREDICTION),
}


def memory_span(args: Any) -> int | None:
    """How many elements back the answer of a memory task lies: D for delayed recall, K + D
    for copy, L for adding; None for prediction tasks."""
    return {
        "delayed-recall": args.delay,
        "copy": (args.length or 0) + (args.delay or 0),
        "adding": args.length,
    }.get(args.task)


def default_train_ticks(
    task: str, delay: int | None = None, length: int | None = None, topology: str = "chain"
) -> int:
    """Training elements by task: on the delay line (``chain``, the memory tasks' default)
    delayed recall and copy 20,000 (the readout finds its tap within a few thousand), adding
    200,000; on other networks delayed recall 10,000 for D ≤ 10, 150,000 for D ≤ 20, 300,000
    above (what solved it on a full mesh), copy 50,000, adding 200,000; prediction 100,000."""
    if task in ("delayed-recall", "copy") and topology == "chain":
        return 20_000
    if task == "delayed-recall":
        d = 10 if delay is None else delay
        return 10_000 if d <= 10 else 150_000 if d <= 20 else 300_000
    return {"copy": 50_000, "adding": 200_000}.get(task, 100_000)


def make_task(args: Any, train_ticks: int) -> TaskStream:
    """The task's streams of a resolved configuration ``args`` (an
    :class:`~meshprop.runs.online_config.OnlineConfig`)."""
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


def linear_start_(net: MeshNet, task: TaskStream) -> MeshNet:
    """``--start linear``: the output starts as the task's ridge fit of the target on the
    window (``task.linear_fit``: the input → output and bias → output edges), with every other
    edge into the output at 0, so the network starts as that linear model; the hidden
    neurons keep their random weights and learn a nonlinear correction from there."""
    if task.linear_fit is None:
        raise ValueError(f"--start linear: the task {task.name!r} has no linear fit")
    coef, intercept = task.linear_fit
    topo = net.topology
    out = topo.n_neurons - 1
    edges = topo.edges
    into = edges[edges[:, 1] == out]
    values = torch.zeros(len(into), dtype=torch.float64)
    for k, (i, _) in enumerate(into.tolist()):
        if i < topo.n_inputs:
            values[k] = coef[i]
        elif i == topo.bias_index:
            values[k] = intercept
    return set_edge_weights_(net, into, values)


def describe_network(args: Any, task: TaskStream, train_ticks: int) -> str:
    """One line: the network, method and training length the run uses."""
    method = args.method + (f" (window {args.truncation})" if args.method == "tbptt" else "")
    if args.method == "bptt":
        method += f" (sequences of {args.sequence_length})"
    start = "; output started at the ridge fit of the window" if args.start == "linear" else ""
    decay = f" decaying to {args.lr * args.lr_decay:g}" if args.lr_decay != 1 else ""
    return (
        f"network: {task.n_inputs} input(s) + bias, "
        f"{shape_of(args.topology, args.hidden, output_activation(args.task))}, 1 tick per "
        f"element{start}; method {method}; Adam lr {args.lr:g}{decay}; {args.dtype}; "
        f"{train_ticks:,} training elements; metric {task.metric} (baselines: "
        f"{', '.join(task.baselines)})"
    )
