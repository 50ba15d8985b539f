"""Moving a network being trained onto a new topology, in place, and its optimiser state with it.

A structural update makes a new :class:`~meshprop.Topology` (``topo.with_edges``); :func:`rewire`
moves the ``net`` that :func:`meshprop.training.fit` trains onto it as one operation
(``MeshNet.rewire_``, either layout): kept edges keep their weight, their gradient and the
optimiser's per-weight state (Adam's moments, momentum buffers, ...); new edges start at weight 0
and at the optimiser's initial state (0; Adagrad's ``initial_accumulator_value``); removed edges
are gone.  The parameter object stays (in the sparse layout its shape becomes (P_new,)), so the
optimiser still holds it.  Engines cache their plans on the topology value, so the next gradient
is computed for the new topology, exactly.
"""

from __future__ import annotations

import torch

from ..mesh import MeshNet
from ..topology import Topology
from .edges import EdgeChange

__all__ = ["apply_change", "rewire"]


def rewire(
    net: MeshNet, topology: Topology, optimizer: torch.optim.Optimizer | None = None
) -> None:
    """Move ``net`` onto ``topology`` in place (``MeshNet.rewire_``): the weights, their
    gradient and, when given, ``optimizer``'s per-weight state follow the edges, as one
    operation; the parameter object stays the same."""
    net.rewire_(topology, optimizer)


def apply_change(
    net: MeshNet, optimizer: torch.optim.Optimizer | None, change: EdgeChange
) -> Topology:
    """The new topology ``net.topology.with_edges(add, remove)``, with ``net`` (and the
    optimiser's state of its weights) rewired onto it (:func:`rewire`).  Returns the new
    topology."""
    new = net.topology.with_edges(add=change.add, remove=change.remove)
    rewire(net, new, optimizer)
    return new
