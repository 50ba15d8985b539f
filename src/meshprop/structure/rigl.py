"""RigL, rigged lottery (Evci et al. 2020): at each update remove the fraction f(t) of the edges
with the smallest |A| and grow as many absent edges where |dE/dA| of the dense network is
largest (not the ones just removed).  New edges start at 0.

dE/dA on edges that do not exist yet is the gradient of the network on the full allowed mesh
with A = 0 there: the same function (absent edges carry weight 0), so its gradient on the
present edges is the sparse network's and on the absent ones what RigL needs.  It is computed
exactly with one reverse pass (``mp.gradient``, by default the ``bptt`` engine: the reciprocal
network of paper 004, O(T·N) memory per sample) on the update step's batch only; every other
step uses the network's own engine on its sparse topology.
"""

from __future__ import annotations

import torch

from ..losses import LossFn
from ..mesh import MeshNet, gradient
from ..topology import Topology
from .edges import EdgeChange, candidates, largest, weakest_edges
from .rule import UpdateContext

__all__ = ["RigL", "dense_gradient"]


def dense_gradient(
    net: MeshNet,
    x: torch.Tensor,
    target: torch.Tensor,
    loss: str | LossFn = "cross_entropy",
    method: str = "bptt",
) -> torch.Tensor:
    """dE/dA (N×N) of ``net`` on every allowed edge, present or not (see the module
    docstring), by the engine ``method``."""
    topo = net.topology
    full = Topology.mesh(topo.n_inputs, topo.n_hidden, topo.n_outputs, topo.bias)
    with torch.random.fork_rng(devices=[]):  # with_topology initialises, then overwrites
        dense = net.with_topology(full)
    if target.dtype.is_floating_point:
        target = target.to(net.A.dtype)
    _, dA = gradient(dense, x, target, loss, method=method)
    return dA


class RigL:
    """Drop the weakest edges, regrow where the dense gradient is largest."""

    name = "rigl"

    def __init__(self, dense_method: str = "bptt") -> None:
        self.dense_method = dense_method

    def propose(self, context: UpdateContext) -> EdgeChange:
        net, topo = context.net, context.net.topology
        remove = weakest_edges(net, round(context.schedule.fraction(context.step) * topo.n_edges))
        free = candidates(topo, remove)
        k = min(len(remove), len(free))
        if k == 0:
            return EdgeChange.none()
        dA = dense_gradient(net, context.x, context.target, context.loss, self.dense_method)
        scores = dA.detach()[free[:, 0].to(dA.device), free[:, 1].to(dA.device)].abs().cpu()
        return EdgeChange(free[largest(scores, k)], remove[:k])
