"""SET, sparse evolutionary training (Mocanu et al. 2018): at each update remove the fraction
f(t) of the edges with the smallest |A| and grow as many new edges chosen uniformly at random
among the allowed edges that are absent (not the ones just removed).  New edges start at 0."""

from __future__ import annotations

import torch

from .edges import EdgeChange, candidates, weakest_edges
from .rule import UpdateContext

__all__ = ["SET"]


class SET:
    """Drop the weakest edges, regrow at random; the edge count never changes."""

    name = "set"

    def propose(self, context: UpdateContext) -> EdgeChange:
        topo = context.net.topology
        remove = weakest_edges(
            context.net, round(context.schedule.fraction(context.step) * topo.n_edges)
        )
        free = candidates(topo, remove)
        k = min(len(remove), len(free))
        remove = remove[:k]
        chosen = torch.randperm(len(free), generator=context.generator)[:k]
        return EdgeChange(free[chosen], remove)
