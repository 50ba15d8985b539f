"""Benchmark workloads: the networks and batches the engines are timed on.

One *step* (:func:`step`) is forward + dE/dA through :func:`meshprop.gradient` (cross-entropy,
float32 unless a workload says otherwise).  A :class:`Point` is one network + batch; a workload
(:data:`WORKLOADS`) is a sweep of points: ``paper`` (paper 000's MNIST configuration as in the
reference's NumPy file: 85 % of the allowed edges kept, 3 ticks), ``published`` (the published
configuration: 15 % kept, 2 ticks), ``ticks`` (1 … 1000), ``neurons`` (32 … 512), ``density``,
``batch``, ``rate`` (FOP's achieved FLOP/s on a dense 128-neuron mesh) and ``tiny`` (for the tests).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import torch

from ..mesh import MeshNet, gradient
from ..topology import Topology

__all__ = ["ALL_ENGINES", "STREAM_WORKLOADS", "WORKLOADS", "Point", "step"]

ALL_ENGINES = ("reference", "fop", "fop_factored", "auto", "bptt", "autograd")


def step(method: str, net: MeshNet, x: torch.Tensor, labels: torch.Tensor) -> None:
    """One benchmark step: loss and dE/dA by ``method``."""
    gradient(net, x, labels, loss="cross_entropy", method=method)


@dataclass(frozen=True)
class Point:
    """One network + batch to time: a point of a workload's sweep."""

    workload: str
    inputs: int
    hidden: int
    outputs: int
    density: float
    ticks: int
    batch: int
    activation: str = "relu"
    output_feedback: bool = False
    mesh: bool = False
    engines: tuple[str, ...] = ALL_ENGINES
    seed: int = 0
    #: also time a 1024×1024 float32 product in the same rounds (engine "matmul")
    matmul: bool = False

    @property
    def neurons(self) -> int:
        return self.inputs + 1 + self.hidden + self.outputs

    def topology(self) -> Topology:
        if self.mesh:
            return Topology.mesh(self.inputs, self.hidden, self.outputs, bias=True)
        return Topology.random(
            inputs=self.inputs,
            hidden=self.hidden,
            outputs=self.outputs,
            density=self.density,
            bias=True,
            seed=self.seed,
            output_feedback=self.output_feedback,
        )

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Point:
        """The point :meth:`to_dict` described (e.g. as JSON for a subprocess)."""
        return cls(**{**data, "engines": tuple(data["engines"])})

    def build(
        self, dtype: torch.dtype = torch.float32
    ) -> tuple[MeshNet, torch.Tensor, torch.Tensor]:
        """(net, x, labels) for this point, deterministic."""
        net = MeshNet(
            self.topology(),
            ticks=self.ticks,
            activation=self.activation,
            dtype=dtype,
            seed=self.seed,
        )
        g = torch.Generator().manual_seed(self.seed)
        x = torch.randn(self.batch, self.inputs, generator=g).to(dtype)
        labels = torch.randint(0, self.outputs, (self.batch,), generator=g)
        return net, x, labels


def _paper(**change: Any) -> Point:
    base: dict[str, Any] = dict(
        workload="paper", inputs=32, hidden=50, outputs=10, density=0.85, ticks=3, batch=32
    )
    base.update(change)
    return Point(**base)


def _ticks_sweep() -> list[Point]:
    engines = ("fop", "fop_factored", "auto", "bptt", "autograd")
    return [
        Point(
            "ticks",
            inputs=8,
            hidden=24,
            outputs=4,
            density=0.5,
            ticks=t,
            batch=16,
            activation="tanh",
            output_feedback=True,
            engines=engines,
        )
        for t in (1, 3, 10, 100, 1000)
    ]


def _neurons_sweep() -> list[Point]:
    points = []
    for n in (32, 64, 128, 256, 512):
        inputs, outputs = n // 4, max(2, n // 16)
        engines: tuple[str, ...] = ("fop", "fop_factored", "auto", "bptt", "autograd")
        if n <= 64:
            engines = ("reference", *engines)
        points.append(
            Point(
                "neurons",
                inputs=inputs,
                hidden=n - inputs - 1 - outputs,
                outputs=outputs,
                density=0.25,
                ticks=3,
                batch=4,
                engines=engines,
            )
        )
    return points


def _fast() -> tuple[str, ...]:
    return ("fop", "fop_factored", "auto", "bptt", "autograd")


WORKLOADS: dict[str, Callable[[], list[Point]]] = {
    # today's paper workload: 85 % of the allowed edges kept, 3 ticks (the reference's NumPy file)
    "paper": lambda: [_paper()],
    # the published configuration of paper 001: sparsity 0.85 (15 % of the edges kept), 2 ticks
    "published": lambda: [_paper(workload="published", density=0.15, ticks=2)],
    "ticks": _ticks_sweep,
    "neurons": _neurons_sweep,
    "density": lambda: [
        _paper(workload="density", density=d, engines=_fast()) for d in (0.1, 0.25, 0.5, 0.85, 1.0)
    ],
    "batch": lambda: [_paper(workload="batch", batch=b, engines=_fast()) for b in (1, 8, 32, 128)],
    "rate": lambda: [  # ticks 2 and 10: their difference is ticks 3..10, the pure GEMM update
        Point(
            "rate",
            inputs=16,
            hidden=103,
            outputs=8,
            density=1.0,
            ticks=t,
            batch=8,
            mesh=True,
            output_feedback=True,
            engines=("fop",),
            matmul=True,
        )
        for t in (2, 10)
    ],
    "tiny": lambda: [
        Point(
            "tiny",
            inputs=3,
            hidden=4,
            outputs=2,
            density=0.7,
            ticks=t,
            batch=2,
            output_feedback=True,
            engines=("fop", "fop_factored", "auto", "bptt", "autograd"),
        )
        for t in (1, 3)
    ],
}

#: workloads that are streams, not engine points: run by :mod:`meshprop.bench.online`
#: (online FOP ticks/s against the network size; peak memory against the stream length).
STREAM_WORKLOADS: tuple[str, ...] = ("online",)
