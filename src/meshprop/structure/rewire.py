"""Moving a network being trained onto a new topology, in place, and its optimiser state with it.

A structural update makes a new :class:`~meshprop.Topology` (``topo.with_edges``) and the weights
of ``net.with_topology(new)``: kept edges keep their weight, removed edges become 0, new edges
start at 0.  :func:`rewire` puts that network's topology, dynamics, mask and weights into the
``net`` that :func:`meshprop.training.fit` trains, keeping the parameter ``net.A`` itself, so the
optimiser still holds it; :func:`reset_optimizer_state` then resets the optimiser's per-weight
state (Adam's moments, momentum buffers, ...) of the removed and the new edges to its initial
value.  Kept edges keep theirs.  Engines cache their plans on the topology value, so the next
gradient is computed for the new topology, exactly.
"""

from __future__ import annotations

import torch

from ..mesh import MeshNet
from ..topology import Topology
from .edges import EdgeChange

__all__ = ["apply_change", "reset_optimizer_state", "rewire"]

#: optimiser state keys whose initial value is not 0, with the param-group option giving it
_INITIAL = {"sum": "initial_accumulator_value"}  # Adagrad


def rewire(
    net: MeshNet, topology: Topology, optimizer: torch.optim.Optimizer | None = None
) -> None:
    """Move ``net`` onto ``topology`` in place (``MeshNet.rewire_``): the weights, their
    gradient and, when given, ``optimizer``'s per-weight state follow the edges, as one
    operation; the parameter object stays the same."""
    net.rewire_(topology, optimizer)


def reset_optimizer_state(
    optimizer: torch.optim.Optimizer, param: torch.Tensor, edges: torch.Tensor
) -> None:
    """Set ``optimizer``'s per-entry state of ``param`` at ``edges`` ((K, 2)) to its initial
    value (0; Adagrad's ``sum``: ``initial_accumulator_value``).  Scalar state (``step``) is
    left alone.  A ``param`` the optimiser does not hold is an error."""
    group = next((g for g in optimizer.param_groups if any(p is param for p in g["params"])), None)
    if group is None:
        raise ValueError("the optimizer does not hold this parameter (net.A): cannot remap it")
    state = optimizer.state.get(param, {})
    if not len(edges):
        return
    rows, cols = edges[:, 0], edges[:, 1]
    for key, value in state.items():
        if isinstance(value, torch.Tensor) and value.shape == param.shape:
            initial = float(group.get(_INITIAL[key], 0.0)) if key in _INITIAL else 0.0
            value[rows.to(value.device), cols.to(value.device)] = initial


def apply_change(
    net: MeshNet, optimizer: torch.optim.Optimizer | None, change: EdgeChange
) -> Topology:
    """The new topology ``net.topology.with_edges(add, remove)``, with ``net`` rewired onto it
    and the optimiser state of every added and removed edge reset.  Returns the new topology."""
    new = net.topology.with_edges(add=change.add, remove=change.remove)
    rewire(net, new, optimizer)
    return new
