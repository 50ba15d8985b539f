"""Absent edges drawn uniformly at random (SET's regrowth), without an N×N mask.

An allowed edge is a pair (i, j), i any neuron, j a hidden or output neuron (E = N·F of them).
For a small mesh (E ≤ :data:`~meshprop.topology.RANDOM_DENSE_LIMIT`) the absent ones are listed
row-major and ``k`` of them taken by ``torch.randperm`` (the draws every figure so far was made
with).  Above that, pairs are drawn uniformly among the allowed ones and rejected when present
(a binary search in the sorted edge keys) or already drawn, until ``k`` remain: every absent edge
is equally likely and the memory is O(P + k).
"""

from __future__ import annotations

import torch

from ..topology import RANDOM_DENSE_LIMIT, Topology
from .edges import allowed_count, candidates, edge_keys, is_present

__all__ = ["random_absent_edges"]


def random_absent_edges(topology: Topology, k: int, generator: torch.Generator) -> torch.Tensor:
    """``min(k, E − P)`` distinct absent allowed edges ((k, 2)), uniformly at random."""
    total = allowed_count(topology)
    k = max(0, min(k, total - topology.n_edges))
    if total <= RANDOM_DENSE_LIMIT:  # drawn even for k = 0: the generator advances as it did
        free = candidates(topology)
        return free[torch.randperm(len(free), generator=generator)[:k]]
    if k == 0:
        return torch.zeros(0, 2, dtype=torch.long)
    N, C, F = topology.n_neurons, topology.n_clamped, topology.n_free
    present = edge_keys(topology)
    acceptance = (total - topology.n_edges) / total
    chosen = torch.zeros(0, dtype=torch.long)
    while len(chosen) < k:
        need = k - len(chosen)
        draws = min(max(64, int(2 * need / acceptance)), 4 * k + 1024)
        i = torch.randint(0, N, (draws,), generator=generator)
        j = C + torch.randint(0, F, (draws,), generator=generator)
        keys = i * N + j
        keys = torch.cat([chosen, keys[~is_present(keys, present)]])
        unique, inverse = torch.unique(keys, return_inverse=True)
        first = torch.full((len(unique),), len(keys), dtype=torch.long)
        first.scatter_reduce_(0, inverse, torch.arange(len(keys)), reduce="amin")
        chosen = keys[first.sort().values][:k]  # first draws first: the order is the draw's
    return torch.stack([chosen // N, chosen % N], dim=1)
