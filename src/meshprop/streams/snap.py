r"""Method "snap" (``order=k``): the sparse n-step approximation SnAp-k of RTRL (Menick et al.,
ICLR 2021) on a mesh of any topology.

RTRL (method "fop", paper 000 Eq. 17) carries every sensitivity Z[p, o] = ∂h_o/∂w_p,

    Z_n = (Z_{n-1} A_f + S̃_{n-1}) D_n,        D_n = diag φ′(T_n),                     (Eq. 17)

P·F numbers per stream.  SnAp-k keeps, for an edge p = (i_p → j_p), only the entries of the
hidden neurons o that j_p reaches by a walk of at most k − 1 free edges — the entries the
recursion fills within k ticks of the edge's influence — and drops the others after every tick:

    Z_n = ((Z_{n-1} A_f + S̃_{n-1}) D_n) ⊙ M_k,
    M_k[p, o] = 1  iff  o is an output neuron, or o is hidden and dist(j_p → o) ≤ k − 1.

The output neurons' rows are kept in full: an output reads the hidden neurons one tick late, so a
SnAp that also truncated the outputs would give every edge into a hidden neuron a zero gradient
at k = 1; there are only O of them.  The gradient is Algorithm 1's last line on the kept entries,
dE/dw_p += Σ_{b, o ∈ outputs} dE/dy[b, o] · Z[b, p, o], after every element that carries a loss.

Where every hidden neuron that j_p reaches at all is within k − 1 edges (k ≥
:func:`saturation_order`), nothing is ever dropped and SnAp-k is exact RTRL; SnAp-1 on a
recurrence of self-loops only is exact too.

The kept entries are the pattern of order k of :mod:`meshprop.streams.pattern` — a list of
*pairs* (p, o) and of *transitions* (pair (p, k), free edge k → o, pair (p, o), both kept),
computed once per (topology, k) from the edge list (no N×N structure): SnAp-1 has the P pairs
(p, j_p) plus the P·O output pairs.  A tick is the pattern carry's (one gather, one multiply,
one ``index_add_`` for the transitions, S̃_{n-1} and the forward sum of Eq. 3, then φ and the
scaling by φ′) — the weights read as the edge vector (``Layout.edge_values``), so both layouts
run the same arithmetic.  Exact ``fop`` runs the same carry on the saturated pattern wherever
that is cheaper than its dense product (:mod:`meshprop.streams.cost`).

Cost per tick and stream: O(K + M + P) for K kept pairs and M transitions — for SnAp-1,
K = P·(1 + O) and M ≤ P·(1 + O + E_out) (E_out: the edges among the outputs and between them
and j_p), i.e. O(P) plus the output rows' O(P·O).  Memory O(B·(K + M)) floats and O(K + M)
indices, flat in the stream's length.  The memory guard counts K and M before anything of edge
size is built, and stops counting once the pattern could not fit the limit.
"""

from __future__ import annotations

import torch

from ..dynamics import Dynamics
from ..layout import Layout
from .pattern import (
    MIN_BYTES_PER_ENTRY,
    PatternCarry,
    PatternPlan,
    pattern_budget,
    pattern_bytes,
    pattern_plan,
    pattern_size,
    saturation_order,
)
from .protocol import StreamMethod

__all__ = ["SnAp", "SnApCarry", "SnApPlan", "saturation_order", "snap_plan"]

#: the plan of SnAp-k: the pattern of order k (:mod:`meshprop.streams.pattern`)
SnApPlan = PatternPlan


def snap_plan(topology, order: int) -> PatternPlan:
    """The :class:`~meshprop.streams.pattern.PatternPlan` of SnAp-``order`` (cached)."""
    return pattern_plan(topology, check_order(order))


class SnApCarry(PatternCarry):
    """A stream of SnAp-k: the pattern carry of :mod:`meshprop.streams.pattern` on the plan of
    order k (entering sensitivities are ignored: h enters as a constant)."""

    def __init__(
        self, dyn: Dynamics, storage: Layout, theta: torch.Tensor, batch: int, order: int
    ) -> None:
        super().__init__(dyn, storage, theta, batch, snap_plan(dyn.topology, order), exact=False)


def check_order(order: object) -> int:
    """``order`` as SnAp's k: an integer ≥ 1 (ValueError otherwise)."""
    if isinstance(order, bool) or not isinstance(order, int) or order < 1:
        raise ValueError(f"method 'snap' needs order=k, an integer >= 1 (SnAp-k), got {order!r}")
    return order


class SnAp(StreamMethod):
    """ "snap": SnAp-k, RTRL's sensitivities kept within k ticks of each edge (module
    docstring)."""

    name = "snap"
    online = True
    options = ("order",)

    def __init__(self, order: int | None = None) -> None:
        k = check_order(order)
        super().__init__(order=k)
        self.order = k

    def start(self, dyn, storage, theta, batch):
        return SnApCarry(dyn, storage, theta, batch, self.order)

    def estimate_bytes(self, dyn, storage, batch, itemsize, length=1):
        """The pattern's bytes, counted before anything of edge size is built; a pattern whose
        count passes the memory limit is not counted further (the bound is returned)."""
        budget = pattern_budget()
        size = pattern_size(dyn.topology, self.order, budget)
        if size is None:
            assert budget is not None
            return MIN_BYTES_PER_ENTRY * budget
        return pattern_bytes(size, dyn.topology, batch, itemsize)

    def describe_cost(self, dyn, batch, itemsize) -> str:
        """One line for the memory guard's message: the pattern's size (or its bound)."""
        size = pattern_size(dyn.topology, self.order, pattern_budget())
        if size is None:
            return (
                f"SnAp-{self.order}'s pattern has more pairs and transitions than the limit "
                f"allows at {MIN_BYTES_PER_ENTRY} bytes each; it was not counted further"
            )
        return f"SnAp-{self.order}: {size.pairs:,} kept pairs, {size.transitions:,} transitions"
