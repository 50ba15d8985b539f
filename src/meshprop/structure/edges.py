"""Edge bookkeeping shared by the update rules: density, the absent edges, the weakest edges,
and :class:`EdgeChange`, what one structural update does.

Nothing here builds an N×N tensor: the allowed edges of a mesh are every (i, j) with j a hidden
or output neuron (``Topology.mesh``), so their count is N·F; an edge is named by its row-major
key i·N + j, and ``topo.edges`` (row-major) is a sorted list of keys, so "is (i, j) present?" is
a binary search (:func:`is_present`) and the weights come from ``net.edge_weights()``, in the
same order on both layouts.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ..memory import check_fits, format_bytes
from ..mesh import MeshNet
from ..topology import Topology

__all__ = [
    "EdgeChange",
    "allowed_count",
    "candidates",
    "density",
    "edge_count",
    "edge_keys",
    "is_present",
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
    """E = N·F: how many edges a topology of these sizes may have (``Topology.mesh``: from any
    neuron into every hidden and output neuron)."""
    return topology.n_neurons * topology.n_free


def density(topology: Topology) -> float:
    """P / E: the fraction of the allowed edges present."""
    return topology.n_edges / allowed_count(topology)


def edge_count(target_density: float, topology: Topology) -> int:
    """round(d · E), at least 1: the edge count of density d (as ``Topology.random``)."""
    return max(1, round(float(target_density) * allowed_count(topology)))


def edge_keys(topology: Topology) -> torch.Tensor:
    """The row-major keys i·N + j of the edges, sorted (``topo.edges`` is row-major)."""
    edges = topology.edges
    return edges[:, 0] * topology.n_neurons + edges[:, 1]


def is_present(keys: torch.Tensor, sorted_keys: torch.Tensor) -> torch.Tensor:
    """Whether each of ``keys`` is in ``sorted_keys`` (a binary search: O(len(keys)) memory)."""
    if len(sorted_keys) == 0:
        return torch.zeros(keys.shape, dtype=torch.bool)
    at = torch.searchsorted(sorted_keys, keys).clamp(max=len(sorted_keys) - 1)
    return sorted_keys[at] == keys


def candidates(topology: Topology) -> torch.Tensor:
    """Every allowed edge absent from ``topology`` ((E − P, 2), row-major).  O(E) memory, checked
    against the memory guard first; the rules enumerate them only for small meshes
    (:data:`~meshprop.topology.RANDOM_DENSE_LIMIT` allowed edges) and sample otherwise."""
    N, C, F = topology.n_neurons, topology.n_clamped, topology.n_free
    need = N * F * 8 * 4  # the keys, the pairs and the temporaries of the search
    check_fits(
        need,
        "structure",
        lambda limit: (
            f"listing the {N * F} allowed edges of {N} neurons needs about {format_bytes(need)}"
            f", but the memory limit is {format_bytes(limit)}"
        ),
    )
    flat = torch.arange(N * F)
    keys = (flat // F) * N + C + flat % F
    absent = keys[~is_present(keys, edge_keys(topology))]
    return torch.stack([absent // N, absent % N], dim=1)


def largest(scores: torch.Tensor, k: int) -> torch.Tensor:
    """Indices of the ``k`` largest scores; ties go to the earlier index (a stable sort, so
    the choice never depends on the platform)."""
    order = torch.sort(scores, descending=True, stable=True).indices
    return order[:k]


def weakest_edges(net: MeshNet, k: int) -> torch.Tensor:
    """The ``k`` edges of ``net`` with the smallest |weight| ((k, 2); ties: row-major order),
    read from the edge vector ``net.edge_weights()`` (O(P), either layout)."""
    magnitude = net.edge_weights().abs().cpu()
    return net.topology.edges[largest(-magnitude, k)]
