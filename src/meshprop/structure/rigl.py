"""RigL, rigged lottery (Evci et al. 2020): at each update remove the fraction f(t) of the edges
with the smallest |A| and grow as many absent edges where |dE/dA| of the dense network is
largest (not the ones just removed).  New edges start at 0.

dE/dA on edges that do not exist yet is the gradient of the network on the full allowed mesh
with A = 0 there: the same function (absent edges carry weight 0), so its gradient on the
present edges is the sparse network's and on the absent ones what RigL needs.  It is computed
exactly by one pass of the reciprocal network of paper 004 over the present edges
(:mod:`.absent_gradient`: dE/dA = Σ_n S_{n−1}ᵀ e_n, O(T·B·N + P) memory) on the update step's
batch only, and its largest entries are found a block of rows at a time — never as an N×N
matrix, on either layout; every other step uses the network's own engine.
"""

from __future__ import annotations

from .absent_gradient import dense_gradient, gradient_factors, largest_absent_gradients
from .edges import EdgeChange, allowed_count, weakest_edges
from .rule import UpdateContext

__all__ = ["RigL", "dense_gradient"]


class RigL:
    """Drop the weakest edges, regrow where the dense gradient is largest."""

    name = "rigl"

    def propose(self, context: UpdateContext) -> EdgeChange:
        net, topo = context.net, context.net.topology
        remove = weakest_edges(net, round(context.schedule.fraction(context.step) * topo.n_edges))
        # the removed edges are present, so they are not among the absent ones grown below
        k = min(len(remove), allowed_count(topo) - topo.n_edges)
        if k == 0:
            return EdgeChange.none()
        S, E = gradient_factors(net, context.x, context.target, context.loss)
        return EdgeChange(largest_absent_gradients(topo, S, E, k), remove[:k])
