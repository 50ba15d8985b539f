"""The models of paper 001's real-world experiment: sparse 2-tick meshes against small MLPs.

- ``mnn-85`` / ``mnn-80``: 32 inputs + bias, 50 hidden (ReLU), 10 outputs (identity: logits),
  2 ticks.  Following the public script ``experiments.py`` of the paper's reference code, the
  percentage is the fraction of the allowed edges **removed**: mnn-85 keeps 15 % and mnn-80
  keeps 20 % of the edges from the inputs and hidden neurons to the hidden and output neurons
  (the script's masked ``nn.Linear(inputs + hidden, hidden + outputs)``; outputs feed nothing
  back).  The bias edges are not drawn: every hidden and output neuron keeps its bias, as the
  script's unmasked ``nn.Linear`` bias does.  (The NumPy companion ``mnn-numpy.py`` reads the
  same number as the fraction *kept*; we do not follow it.)
- ``mlp-13`` / ``mlp-17``: ``meshprop.layered.MLP`` [32, H, H, 10] (two hidden layers of H ReLU
  neurons, as the script's ``--arch mlp``), identity outputs.

Every model is trained as a :class:`meshprop.MeshNet` (an MLP through ``MLP.to_mesh``, its
layered mask and L = 3 ticks), so the same engines — FOP or autograd — train all four.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ..layered import MLP
from ..mesh import MeshNet
from ..topology import Topology

__all__ = ["ModelSpec", "build_model", "mnn_topology"]


@dataclass(frozen=True)
class ModelSpec:
    """One configuration: a mesh (``kind="mnn"``, ``removed`` = fraction of edges removed) or
    an MLP (``kind="mlp"``, two hidden layers of ``hidden`` neurons)."""

    name: str
    kind: str
    hidden: int
    removed: float = 0.0
    ticks: int = 2
    #: a mesh's structure rule while it trains (``meshprop.structure``): "static" keeps the
    #: drawn edges; "set" and "rigl" move them, keeping their number
    structure: str = "static"

    def __post_init__(self) -> None:
        if self.kind not in ("mnn", "mlp"):
            raise ValueError(f"kind must be 'mnn' or 'mlp', got {self.kind!r}")
        if self.structure not in ("static", "set", "rigl"):
            raise ValueError(f"structure must be 'static', 'set' or 'rigl', got {self.structure!r}")
        if self.kind == "mlp" and self.structure != "static":
            raise ValueError(
                f"an MLP's layers are fixed: structure {self.structure!r} needs an mnn"
            )
        if self.hidden < 1:
            raise ValueError(f"hidden must be >= 1, got {self.hidden}")
        if not 0.0 <= self.removed < 1.0:
            raise ValueError(f"removed must be in [0, 1), got {self.removed}")


def mnn_topology(inputs: int, hidden: int, outputs: int, removed: float, seed: int) -> Topology:
    """A random mesh keeping round((1 − removed)·E) of the E edges from the input and hidden
    neurons to the hidden and output neurons (drawn by ``seed``), plus every bias edge."""
    bias = inputs
    sources = [*range(inputs), *range(inputs + 1, inputs + 1 + hidden)]
    targets = list(range(inputs + 1, inputs + 1 + hidden + outputs))
    candidates = torch.tensor([(i, j) for i in sources for j in targets], dtype=torch.long)
    keep = max(1, round((1.0 - removed) * len(candidates)))
    generator = torch.Generator().manual_seed(int(seed))
    chosen = candidates[torch.randperm(len(candidates), generator=generator)[:keep]]
    bias_edges = torch.tensor([(bias, j) for j in targets], dtype=torch.long)
    return Topology.from_edges(
        inputs=inputs,
        hidden=hidden,
        outputs=outputs,
        edges=torch.cat([chosen, bias_edges]),
        bias=True,
    )


def build_model(
    spec: ModelSpec,
    inputs: int,
    outputs: int,
    seed: int,
    grad: str,
    dtype: torch.dtype = torch.float64,
) -> MeshNet:
    """The network of ``spec`` for ``inputs`` features and ``outputs`` classes, its topology and
    initial weights drawn from ``seed``, trained through engine ``grad``."""
    if spec.kind == "mnn":
        topo = mnn_topology(inputs, spec.hidden, outputs, spec.removed, seed)
        return MeshNet(
            topo,
            ticks=spec.ticks,
            activation="relu",
            output_activation="identity",
            grad=grad,
            dtype=dtype,
            seed=seed,
        )
    mlp = MLP(
        [inputs, spec.hidden, spec.hidden, outputs],
        activation="relu",
        output_activation="identity",
        dtype=dtype,
        seed=seed,
    )
    return mlp.to_mesh(grad=grad)
