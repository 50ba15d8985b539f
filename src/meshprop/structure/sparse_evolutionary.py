"""SET, sparse evolutionary training (Mocanu et al. 2018): at each update remove the fraction
f(t) of the edges with the smallest |A| and grow as many new edges chosen uniformly at random
among the allowed edges that are absent (not the ones just removed).  New edges start at 0.
The draw needs no N×N mask (:mod:`.sampling`: O(P + k) memory on large meshes)."""

from __future__ import annotations

from .edges import EdgeChange, weakest_edges
from .rule import UpdateContext
from .sampling import random_absent_edges

__all__ = ["SET"]


class SET:
    """Drop the weakest edges, regrow at random; the edge count never changes."""

    name = "set"

    def propose(self, context: UpdateContext) -> EdgeChange:
        topo = context.net.topology
        remove = weakest_edges(
            context.net, round(context.schedule.fraction(context.step) * topo.n_edges)
        )
        # the removed edges are present, so they are not among the absent ones drawn
        add = random_absent_edges(topo, len(remove), context.generator)
        return EdgeChange(add, remove[: len(add)])
