"""Edge bookkeeping shared by the update rules: density, candidate edges, the weakest edges,
and :class:`EdgeChange`, what one structural update does."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ..mesh import MeshNet
from ..topology import Topology

__all__ = [
    "EdgeChange",
    "allowed_count",
    "candidates",
    "density",
    "edge_count",
    "largest",
    "weakest_edges",
]


@dataclass(frozen=True)
class EdgeChange:
    """Edges to ``add`` and to ``remove``, each a (K, 2) LongTensor of (source, target); the
    two never share an edge (an edge dropped in an update is not regrown in the same one)."""

    add: torch.Tensor
    remove: torch.Tensor

    @classmethod
    def none(cls) -> EdgeChange:
        empty = torch.zeros(0, 2, dtype=torch.long)
        return cls(empty, empty)


def allowed_count(topology: Topology) -> int:
    """E: how many edges a topology of these sizes may have (``Topology.mesh``)."""
    return int(topology.allowed_mask().sum())


def density(topology: Topology) -> float:
    """P / E: the fraction of the allowed edges present."""
    return topology.n_edges / allowed_count(topology)


def edge_count(target_density: float, topology: Topology) -> int:
    """round(d · E), at least 1: the edge count of density d (as ``Topology.random``)."""
    return max(1, round(float(target_density) * allowed_count(topology)))


def candidates(topology: Topology, excluded: torch.Tensor | None = None) -> torch.Tensor:
    """The allowed edges not in ``topology`` nor in ``excluded`` ((K, 2)), row-major."""
    free = topology.allowed_mask() & ~topology.dense_mask()
    if excluded is not None and len(excluded):
        free[excluded[:, 0], excluded[:, 1]] = False
    return free.nonzero()


def largest(scores: torch.Tensor, k: int) -> torch.Tensor:
    """Indices of the ``k`` largest scores; ties go to the earlier index (a stable sort, so
    the choice never depends on the platform)."""
    order = torch.sort(scores, descending=True, stable=True).indices
    return order[:k]


def weakest_edges(net: MeshNet, k: int) -> torch.Tensor:
    """The ``k`` edges of ``net`` with the smallest |A| ((k, 2); ties: row-major order)."""
    edges = net.topology.edges.to(net.A.device)
    magnitude = net.A.detach()[edges[:, 0], edges[:, 1]].abs()
    return edges[largest(-magnitude, k)].cpu()
