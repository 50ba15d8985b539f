"""The networks ``meshprop online`` builds (``--topology``) and the one it picks per task.

- ``full``: every allowed edge (self-loops, output feedback and input → output edges
  included), tanh hidden neurons, MeshNet's uniform ±1/√fan-in weights × ``--init-scale``.
  The default of prediction tasks: with an identity output its input → output edges are a
  linear autoregressive model of the window, and the hidden neurons add a nonlinear,
  recurrent part.
- ``chain``: a delay line (:meth:`Topology.chain` with :data:`CHAIN_FEATURES` feature
  neurons): inputs → ReLU feature neurons → a chain of ``--hidden`` identity neurons, every
  chain neuron (a tap) and every feature neuron read by the output.  Links start at a gain of
  1 with zero biases (:func:`~meshprop.recurrent_init.unit_gain_`), everything else at the
  ``full`` initialisation, and every weight is learned.  At one tick per element tap k holds
  (a learned function of) the input of k elements ago, so recalling the element of D ago is
  learning to read tap D: the default of the memory tasks, with a line half as long again
  as the span the task needs (:func:`line_length`; D for delayed recall, K + D for copy, L
  for adding).  The weights do not encode which tap: the readout starts random.
- ``ring``: the chain without features, closed into a cycle (tanh neurons, unit-gain links).
- ``self-loops``: a tanh layer whose only recurrence is one self-loop per neuron, started at
  1 (the identity initialisation); SnAp of order 1 is exact RTRL on it.
- ``reservoir``: sparse random recurrence (:data:`RESERVOIR_DEGREE` recurrent edges per
  neuron on average, tanh), scaled to spectral radius :data:`RESERVOIR_RADIUS`.
"""

from __future__ import annotations

import math

import torch

from ..mesh import MeshNet
from ..recurrent_init import spectral_radius_, unit_gain_
from ..topology import Topology

__all__ = [
    "CHAIN_FEATURES",
    "DEFAULT_INIT_SCALE",
    "RESERVOIR_DEGREE",
    "RESERVOIR_RADIUS",
    "TOPOLOGIES",
    "build_net",
    "line_length",
    "shape_of",
]

TOPOLOGIES = ("full", "chain", "ring", "self-loops", "reservoir")
#: ``--init-scale``: MeshNet's uniform ±1/√fan-in weights × √3 (unit variance per fan-in)
DEFAULT_INIT_SCALE = math.sqrt(3.0)
#: feature neurons in front of the ``chain`` topology's delay line
CHAIN_FEATURES = 8
#: mean recurrent fan-in and spectral radius of the ``reservoir`` topology
RESERVOIR_DEGREE = 4.0
RESERVOIR_RADIUS = 0.9


def line_length(span: int) -> int:
    """The length of the delay line for a task whose answer lies ``span`` elements back:
    half as long again (1.5 · span, at least span + 1), so the span is not the line's end."""
    return max(span + 1, span + span // 2)


def _links(first: int, length: int, closed: bool) -> list[tuple[int, int]]:
    links = [(first + k, first + k + 1) for k in range(length - 1)]
    if closed:
        links.append((first + length - 1, first))
    return links


def build_net(
    hidden: int,
    seed: int,
    dtype: torch.dtype,
    init_scale: float = DEFAULT_INIT_SCALE,
    inputs: int = 1,
    output: str = "tanh",
    topology: str = "full",
) -> MeshNet:
    """``inputs`` inputs, bias, ``hidden`` hidden neurons (for ``chain``: the line's length,
    plus :data:`CHAIN_FEATURES` features), 1 output (``output`` activation), 1 tick per
    element, built and initialised as the module docstring says; ``seed`` seeds the weights
    (and the reservoir's edges)."""
    if topology not in TOPOLOGIES:
        raise ValueError(f"topology must be one of {TOPOLOGIES}, got {topology!r}")
    clamped = inputs + 1
    activation: str | list[str] = "tanh"
    if topology == "chain":
        topo = Topology.chain(inputs, hidden, 1, features=CHAIN_FEATURES)
        activation = (
            ["identity"] * clamped + ["relu"] * CHAIN_FEATURES + ["identity"] * hidden + [output]
        )
    elif topology == "ring":
        topo = Topology.ring(inputs, hidden, 1)
    elif topology == "self-loops":
        topo = Topology.self_loops(inputs, hidden, 1)
    elif topology == "reservoir":
        topo = Topology.reservoir(inputs, hidden, 1, degree=min(RESERVOIR_DEGREE, hidden),
                                  seed=seed)  # fmt: skip
    else:
        topo = Topology.random(inputs, hidden, 1, density=1.0, bias=True, seed=seed)
    net = MeshNet(
        topo, ticks=1, activation=activation, output_activation=output, dtype=dtype, seed=seed
    )
    with torch.no_grad():
        net.parameter.mul_(init_scale)
    if topology == "chain":
        unit_gain_(net, _links(clamped + CHAIN_FEATURES, hidden, closed=False))
    elif topology == "ring":
        unit_gain_(net, _links(clamped, hidden, closed=True))
    elif topology == "self-loops":
        unit_gain_(net)
    elif topology == "reservoir":
        spectral_radius_(net, RESERVOIR_RADIUS)
    return net


def shape_of(topology: str, hidden: int, output: str) -> str:
    """The network in words, for the line ``meshprop online`` prints at the start."""
    if topology == "chain":
        return (
            f"{CHAIN_FEATURES} relu features → a delay line of {hidden} identity neurons "
            f"(links started at gain 1), every tap and feature read by the {output} output"
        )
    if topology == "ring":
        return f"a ring of {hidden} tanh neurons (links started at gain 1) read by the output"
    if topology == "self-loops":
        return f"{hidden} tanh neurons with self-loops only (started at 1)"
    if topology == "reservoir":
        return (
            f"a sparse random reservoir of {hidden} tanh neurons (spectral radius "
            f"{RESERVOIR_RADIUS})"
        )
    return f"{hidden} tanh hidden, 1 {output} output, fully connected (input → output edges too)"
