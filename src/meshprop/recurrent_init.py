"""Standard initialisations of the recurrent weights of a mesh with memory.

- :func:`unit_gain_`: chosen recurrent edges start at a gain of 1 and the biases of the
  neurons they enter at 0.  On self-loops this is the identity initialisation of recurrent
  networks (Le, Jaitly & Hinton 2015, "A simple way to initialize recurrent networks of
  rectified linear units": W_hh = I, biases 0); on the links of a chain or a ring
  (:meth:`~meshprop.Topology.chain`, :meth:`~meshprop.Topology.ring`) it is the same idea for a
  delay line: each link starts by passing its neuron's value on unchanged (exactly so through
  identity neurons; through tanh neurons the sign is kept and the size shrinks slowly, as
  tanh(h) < h).  The weights stay trainable: it is where learning starts, not a constraint.
- :func:`spectral_radius_`: the hidden → hidden block is scaled to a spectral radius ρ (the
  echo-state recipe for :meth:`~meshprop.Topology.reservoir`; ρ near 1: a long fading memory).

Both act on the edge weights, so they work on either layout (``layout="dense"`` or
``"sparse"``), in place, and return the network.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import torch

from .mesh import MeshNet

__all__ = [
    "SPECTRAL_MAX_HIDDEN",
    "hidden_links",
    "set_edge_weights_",
    "spectral_radius_",
    "unit_gain_",
]

#: :func:`spectral_radius_` builds the H×H recurrent block densely: refused above this H
SPECTRAL_MAX_HIDDEN = 4096


def _edge_index(net: MeshNet, edges: Iterable[tuple[int, int]] | torch.Tensor) -> torch.Tensor:
    """Positions in ``net.topology.edges`` of the (source, target) pairs ``edges``."""
    topo = net.topology
    pairs = torch.as_tensor(edges if isinstance(edges, torch.Tensor) else list(edges))
    pairs = pairs.to(torch.long).reshape(-1, 2)
    n = topo.n_neurons
    keys = topo.edges[:, 0] * n + topo.edges[:, 1]  # sorted (row-major)
    wanted = pairs[:, 0] * n + pairs[:, 1]
    where = torch.searchsorted(keys, wanted).clamp(max=max(len(keys) - 1, 0))
    missing = (keys[where] != wanted).nonzero() if len(keys) else torch.arange(len(wanted))
    if len(missing):
        i, j = (int(v) for v in pairs[int(missing.flatten()[0])])
        raise ValueError(f"edge ({i}, {j}) is not in the network's topology")
    return where


def _set_edges(net: MeshNet, index: torch.Tensor, values: torch.Tensor) -> None:
    weights = net.edge_weights()
    weights[index] = values.to(weights.dtype)
    with torch.no_grad():
        net.parameter.copy_(net.storage.from_edge_values(weights))


def set_edge_weights_(
    net: MeshNet, edges: Iterable[tuple[int, int]] | torch.Tensor, values: torch.Tensor
) -> MeshNet:
    """Set the weights of the (source, target) pairs ``edges`` to ``values`` (one each), on
    either layout.  ValueError for an edge the topology lacks or a count mismatch."""
    index = _edge_index(net, edges)
    values = torch.as_tensor(values).flatten()
    if len(values) != len(index):
        raise ValueError(f"{len(index)} edges but {len(values)} values")
    _set_edges(net, index, values)
    return net


def hidden_links(net: MeshNet) -> torch.Tensor:
    """The (source, target) pairs of the edges from a hidden neuron into a hidden neuron."""
    topo = net.topology
    low, high = topo.n_clamped, topo.n_clamped + topo.n_hidden
    e = topo.edges
    inside = (e[:, 0] >= low) & (e[:, 0] < high) & (e[:, 1] >= low) & (e[:, 1] < high)
    return e[inside]


def unit_gain_(
    net: MeshNet,
    edges: Iterable[tuple[int, int]] | torch.Tensor | None = None,
    gain: float = 1.0,
) -> MeshNet:
    """Set the weights of ``edges`` (default: every hidden → hidden edge,
    :func:`hidden_links`) to ``gain`` and the bias edges into their targets to 0 (module
    docstring).  ValueError for an edge the topology lacks or a non-finite gain."""
    if not math.isfinite(gain):
        raise ValueError(f"gain must be a finite number, got {gain}")
    pairs = hidden_links(net) if edges is None else edges
    index = _edge_index(net, pairs)
    _set_edges(net, index, torch.full((len(index),), float(gain)))
    bias = net.topology.bias_index
    if bias is not None and len(index):
        targets = torch.unique(net.topology.edges[index, 1])
        present = net.topology.edges
        fed = present[(present[:, 0] == bias) & torch.isin(present[:, 1], targets)]
        if len(fed):
            _set_edges(net, _edge_index(net, fed), torch.zeros(len(fed)))
    return net


def spectral_radius_(net: MeshNet, radius: float) -> MeshNet:
    """Scale the hidden → hidden weights so that their matrix has spectral radius ``radius``
    (the largest |eigenvalue|).  ValueError when ``radius`` is negative or not finite, when the
    recurrent block is zero (nothing to scale) or has more than :data:`SPECTRAL_MAX_HIDDEN`
    hidden neurons (its eigenvalues are computed densely)."""
    if not (math.isfinite(radius) and radius >= 0):
        raise ValueError(f"radius must be a finite number >= 0, got {radius}")
    topo = net.topology
    if topo.n_hidden > SPECTRAL_MAX_HIDDEN:
        raise ValueError(
            f"spectral_radius_ computes the eigenvalues of the {topo.n_hidden}×{topo.n_hidden} "
            f"recurrent block densely; at most {SPECTRAL_MAX_HIDDEN} hidden neurons"
        )
    pairs = hidden_links(net)
    index = _edge_index(net, pairs)
    values = net.edge_weights()[index].double()
    low = topo.n_clamped
    block = torch.zeros(topo.n_hidden, topo.n_hidden, dtype=torch.float64)
    block[pairs[:, 0] - low, pairs[:, 1] - low] = values
    current = float(torch.linalg.eigvals(block).abs().max()) if len(pairs) else 0.0
    if current == 0.0:
        raise ValueError("the hidden → hidden weights have spectral radius 0: nothing to scale")
    _set_edges(net, index, values * (radius / current))
    return net
