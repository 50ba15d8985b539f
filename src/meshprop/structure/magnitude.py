"""Gradual magnitude pruning (Zhu & Gupta 2017): at each update the edges with the smallest
|A| are removed until the density is the schedule's d(t) (:func:`~.schedule.pruning_density`,
their Eq. 1), reaching the target density at ``end_step``; pruned edges never come back (the
dense-to-sparse method; ``torch.nn.utils.prune.l1_unstructured`` prunes the same way, once)."""

from __future__ import annotations

import torch

from .edges import EdgeChange, edge_count, weakest_edges
from .rule import UpdateContext
from .schedule import pruning_density

__all__ = ["MagnitudePruning"]


class MagnitudePruning:
    """Prune from ``initial_density`` (the density training starts at) to ``density``."""

    name = "magnitude"

    def __init__(self, density: float, initial_density: float = 1.0) -> None:
        for label, value in (("density", density), ("initial_density", initial_density)):
            if not (isinstance(value, int | float) and 0 < value <= 1):
                raise ValueError(f"{label} must be in (0, 1], got {value!r}")
        if density > initial_density:
            raise ValueError(
                f"magnitude pruning lowers the density: density {density} is above "
                f"initial_density {initial_density}"
            )
        self.density = float(density)
        self.initial_density = float(initial_density)

    def target_density(self, step: int, end_step: int | None) -> float:
        return pruning_density(step, self.initial_density, self.density, end_step)

    def propose(self, context: UpdateContext) -> EdgeChange:
        topo = context.net.topology
        target = self.target_density(context.step, context.schedule.end_step)
        k = topo.n_edges - edge_count(target, topo)
        if k <= 0:
            return EdgeChange.none()
        return EdgeChange(torch.zeros(0, 2, dtype=torch.long), weakest_edges(context.net, k))
