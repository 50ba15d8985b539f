"""One training run from a :class:`~meshprop.runs.config.RunConfig`: load and split the data,
build the network, ``fit``, and score the test split.

``meshprop train`` and ``meshprop reproduce`` are thin layers over :func:`run`; the files of a
run folder are written by :mod:`meshprop.runs.artefacts`.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch

from ..data import CLASSIFICATION, Dataset, Split, load_csv, load_dataset, split_dataset
from ..distributed import DataParallel
from ..layered import MLP, RULES
from ..mesh import MeshNet
from ..reporting import Reporter
from ..structure import StructuralLearning, UpdateSchedule, make_rule
from ..topology import Topology
from ..training import EarlyStopping, History, TrainingCheckpoint, fit
from .config import RunConfig
from .evaluation import test_metrics

__all__ = [
    "DTYPES",
    "RunResult",
    "build_net",
    "load_data",
    "loss_for",
    "run",
    "structural_learning",
]

DTYPES = {"float32": torch.float32, "float64": torch.float64}


@dataclass
class RunResult:
    """A finished run: its configuration, the trained network (an MLP as its mesh view), the
    split it was trained and tested on, the training history and the test metrics."""

    config: RunConfig
    net: MeshNet
    split: Split
    history: History
    test: dict[str, float]
    #: the topology over time: one record per structural update (``meshprop.structure``)
    structure: list[dict[str, Any]] = field(default_factory=list)


def load_data(config: RunConfig) -> Dataset:
    """The dataset named by ``config`` (built-in, or the CSV file with its target column)."""
    if config.data is not None:
        return load_csv(config.data, config.target, task=config.task)
    assert config.dataset is not None  # RunConfig guarantees one of the two
    return load_dataset(config.dataset, n_samples=config.n_samples, seed=config.seed)


def build_net(config: RunConfig, n_inputs: int, n_outputs: int) -> MeshNet | MLP:
    """A full mesh (``density=1``), a random mesh keeping ``density`` of the edges, or a large
    sparse mesh of mean degree ``degree`` (``Topology.sparse_random``; with ``density < 1`` a
    random fraction ``density`` of its edges), stored as ``config.layout``; with
    ``arch="mlp"`` the layered network [inputs, *layers, outputs] — an :class:`MLP` trained by
    its layered rule (``grad`` two_step / tensor_batch) or, for a mesh engine, its mesh view
    (``Topology.layered``, ticks = L)."""
    if config.arch == "mlp":
        assert config.layers is not None  # RunConfig guarantees it for an MLP
        mlp = MLP(
            [n_inputs, *config.layers, n_outputs],
            activation=config.activation,
            output_activation=config.output_activation,
            grad=config.grad if config.grad in RULES else "two_step",
            dtype=DTYPES[config.dtype],
            seed=config.seed,
        )
        return mlp if config.grad in RULES else mlp.to_mesh(grad=config.grad)
    if config.degree is not None:
        topo = Topology.sparse_random(
            n_inputs, config.hidden, n_outputs, degree=config.degree, bias=True, seed=config.seed
        )
        if config.density < 1.0:
            topo = topo.thinned(config.density, seed=config.seed)
    elif config.density >= 1.0 or config.structure == "magnitude":  # magnitude prunes the mesh
        topo = Topology.mesh(n_inputs, config.hidden, n_outputs, bias=True)
    else:
        topo = Topology.random(
            n_inputs,
            config.hidden,
            n_outputs,
            density=config.density,
            bias=True,
            seed=config.seed,
        )
    return MeshNet(
        topo,
        ticks=config.ticks,
        activation=config.activation,
        output_activation=config.output_activation,
        grad=config.grad,
        dtype=DTYPES[config.dtype],
        seed=config.seed,
        layout=config.layout,
    )


def loss_for(task: str) -> str:
    """The training loss of a task: cross-entropy for classes, mean squared error otherwise."""
    return "cross_entropy" if task == CLASSIFICATION else "mse"


def run(
    config: RunConfig,
    reporter: Reporter | None = None,
    callback: Callable[[int, Any, dict[str, float]], Any] | None = None,
    dataset: Dataset | None = None,
    parallel: DataParallel | None = None,
    checkpoint: TrainingCheckpoint | None = None,
) -> RunResult:
    """Load, split (seeded by ``config.seed``), build, train and test.

    With ``parallel`` (``meshprop.distributed``) every process runs this and trains on its
    shard of each batch; the model lives on ``parallel.device``.  An MLP is tested and
    returned as its mesh view (the same function, so checkpoints, plots and ``evaluate``
    treat both architectures alike).  Torch's thread count is the caller's
    (:func:`meshprop.threads.thread_policy`).

    ``checkpoint`` (:mod:`meshprop.training.resume`): the training state saved every epoch and
    resumed from; with structural learning it carries the topology and the rule's generator
    too, so a resumed run is bit-identical with every ``--structure``."""
    reporter = reporter if reporter is not None else Reporter()
    dataset = load_data(config) if dataset is None else dataset
    split = split_dataset(dataset, config.test_size, config.val_size, config.seed)
    net = build_net(config, dataset.n_features, dataset.n_outputs)
    net = net.to(parallel.device if parallel is not None else torch.device(config.device))
    stopping = None if config.patience is None else EarlyStopping(patience=config.patience)
    structure = structural_learning(config, len(split.train[1]), loss_for(dataset.task))
    if structure is not None and parallel is not None:
        raise ValueError(
            f"--structure {config.structure} runs in one process (the update rules would see "
            "each process's shard); run it without torchrun"
        )
    if structure is not None and checkpoint is not None:
        checkpoint = dataclasses.replace(
            checkpoint,
            extra_state=structure.state_dict,
            load_extra_state=structure.load_state_dict,
        )
    history = fit(
        net,
        split.train,
        split.val,
        loss=loss_for(dataset.task),
        optimizer=config.optimizer,
        lr=config.lr,
        momentum=config.momentum,
        weight_decay=config.weight_decay,
        epochs=config.epochs,
        batch_size=config.batch_size,
        seed=config.seed,
        early_stopping=stopping,
        callback=callback,
        reporter=reporter,
        parallel=parallel,
        threads=0,  # the caller's thread policy applies (see the docstring)
        after_step=structure,
        checkpoint=checkpoint,
    )
    mesh = net.to_mesh(grad="bptt") if isinstance(net, MLP) else net
    test = test_metrics(mesh, *split.test, dataset.task, split.standardizer)
    mesh = mesh.to("cpu")  # checkpoints, plots and evaluate read the trained net on the CPU
    log = [] if structure is None else structure.log
    return RunResult(config, mesh, split, history, test, log)


def structural_learning(config: RunConfig, n_train: int, loss: str) -> StructuralLearning | None:
    """The ``after_step`` callback of ``config.structure`` (``None`` for static sparsity):
    updates every ``update_every`` steps until 75 % of the run's optimiser steps (RigL's
    T_end), the drop fraction decayed by a cosine; seeded by ``config.seed``."""
    if config.arch != "mesh" or config.structure == "static":
        return None
    total = config.epochs * math.ceil(n_train / config.batch_size)
    schedule = UpdateSchedule(
        config.update_every, config.drop_fraction, end_step=max(1, int(0.75 * total))
    )
    rule = make_rule(config.structure, config.density, initial_density=1.0)
    return StructuralLearning(rule, schedule, loss, seed=config.seed)
