"""Which free neurons can still influence the outputs: the column sets the fast engines carry.

The error gradient only reads ∂S_{T,o}/∂A for output neurons o (Algorithm 1, last line of paper
000).  Unrolling Eq. 13, ∂S_{T,o}/∂A is built from ∂S_{n,k}/∂A only for neurons k from which a
path of exactly T − n edges inside the free block A_f leads to o.  So tick n only needs the
columns

    R_T = outputs,        R_{n-1} = {k : A_f[k, l] ≠ 0 for some l ∈ R_n}        (predecessors)

and every other column of the sensitivities can be skipped without changing the gradient by one
bit.  For a layered network this drops most of the work; for a full mesh R_n is every free neuron.
The sets depend on the mask only, never on the weights, so they are computed once per
(topology, ticks) and cached.
"""

from __future__ import annotations

from functools import lru_cache

import torch

from ..topology import Topology

__all__ = ["needed_columns"]


@lru_cache(maxsize=64)
def needed_columns(topology: Topology, ticks: int) -> tuple[torch.Tensor, ...]:
    """(R_1, ..., R_T): sorted free-neuron indices (0..F-1) whose tick-n sensitivities matter."""
    C, F, O = topology.n_clamped, topology.n_free, topology.n_outputs
    edges = topology.edges  # O(P): never the N×N mask
    inside = edges[:, 0] >= C
    src_f, dst_f = edges[inside, 0] - C, edges[inside, 1] - C
    current = torch.zeros(F, dtype=torch.bool)
    current[F - O :] = True
    sets: list[torch.Tensor] = [current]
    seen: dict[bytes, torch.Tensor] = {}
    for _ in range(ticks - 1):
        previous, current = current, torch.zeros(F, dtype=torch.bool)
        current[src_f[previous[dst_f]]] = True  # predecessors of the current set
        key = current.numpy().tobytes()
        current = seen.setdefault(key, current)  # share identical sets (long runs cycle)
        sets.append(current)
    index: dict[int, torch.Tensor] = {}
    out = []
    for flags in reversed(sets):
        if id(flags) not in index:
            index[id(flags)] = flags.nonzero().flatten()
        out.append(index[id(flags)])
    return tuple(out)
