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

The kept entries are a list of *pairs* (p, o), computed once per (topology, k) from the edge
list (no N×N structure): SnAp-1 has the P pairs (p, j_p) plus the P·O output pairs.  A tick is
one gather-multiply-``index_add_`` over the *transitions* (pair (p, k), free edge k → o, pair
(p, o), both kept), one ``index_add_`` of S̃_{n-1}, one scaling by φ′ — the weights read as the
edge vector (``Layout.edge_values``), so both layouts run the same arithmetic; the state itself
advances through the layout's ``Transition``.

Cost per tick and stream: O(K + M) for K kept pairs and M transitions — for SnAp-1,
K = P·(1 + O) and M ≤ P·(1 + O + E_out) (E_out: the edges among the outputs and between them
and j_p), i.e. O(P) plus the output rows' O(P·O) — besides the forward tick.  Memory
O(B·(K + M)) floats and O(K + M) indices, flat in the stream's length.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import torch

from ..dynamics import Dynamics
from ..engines.edge_ops import edge_index_of
from ..engines.fop_sparse import expand_walks, free_out_edges
from ..layout import Layout
from ..topology import Topology
from .protocol import StateCarry, StreamMethod, take_edge_gradient

__all__ = ["SnAp", "SnApCarry", "SnApPlan", "saturation_order", "snap_plan"]


@dataclass(frozen=True)
class SnApPlan:
    """The kept pairs (p, o) of SnAp-k and the transitions between them (module docstring)."""

    edge: torch.Tensor  # (K,) edge p of every kept pair
    col: torch.Tensor  # (K,) free neuron o of every kept pair
    src_pair: torch.Tensor  # (M,) transitions: pair (p, k) ...
    via: torch.Tensor  # (M,) ... through the free edge k → o (its index in the edge list) ...
    dst_pair: torch.Tensor  # (M,) ... into pair (p, o)
    inject_pair: torch.Tensor  # (P,) the pair (p, j_p) of every edge: where S̃ enters
    out_pair: torch.Tensor  # (P·O,) the output pairs, edge-major: (p, o) at p·O + (o − F + O)

    @property
    def pairs(self) -> int:
        return len(self.edge)

    @property
    def transitions(self) -> int:
        return len(self.src_pair)

    def to(self, device: torch.device) -> SnApPlan:
        if self.edge.device == device:
            return self
        return SnApPlan(**{k: v.to(device) for k, v in vars(self).items()})


def _reach(topology: Topology, steps: int | None) -> tuple[torch.Tensor, torch.Tensor]:
    """Pairs (j, o) of free neurons with dist(j → o) ≤ ``steps`` over free edges (None: any
    distance), sorted by j·F + o: breadth-first over the edge list, nothing F×F."""
    F = topology.n_free
    ptr, targets, _ = free_out_edges(topology)
    keys = torch.arange(F) * F + torch.arange(F)
    frontier = keys
    step = 0
    while len(frontier) and (steps is None or step < steps):
        j, o = frontier // F, frontier % F
        a, _, nxt = expand_walks(o, ptr, targets)
        new = torch.unique(j[a] * F + nxt)
        new = new[~torch.isin(new, keys)]
        keys = torch.unique(torch.cat([keys, new]))
        frontier = new
        step += 1
    return keys // F, keys % F


def saturation_order(topology: Topology) -> int:
    """The least k for which SnAp-k keeps every entry RTRL can fill: 1 + the longest
    shortest walk (over free edges) from a free neuron to a hidden neuron it reaches."""
    F, O = topology.n_free, topology.n_outputs
    ptr, targets, _ = free_out_edges(topology)
    seen = torch.arange(F) * F + torch.arange(F)
    frontier, depth, longest = seen, 0, 0
    while len(frontier):
        j, o = frontier // F, frontier % F
        a, _, nxt = expand_walks(o, ptr, targets)
        new = torch.unique(j[a] * F + nxt)
        new = new[~torch.isin(new, seen)]
        depth += 1
        if bool((new % F < F - O).any()):
            longest = depth
        seen = torch.unique(torch.cat([seen, new]))
        frontier = new
    return longest + 1


@lru_cache(maxsize=16)
def snap_plan(topology: Topology, order: int) -> SnApPlan:
    """The :class:`SnApPlan` of SnAp-``order`` for ``topology`` (cached; built from the edge
    list in O(K + M) work and memory)."""
    C, F, O = topology.n_clamped, topology.n_free, topology.n_outputs
    edges = topology.edges
    P = len(edges)
    dst = edges[:, 1] - C
    # the neuron-level pattern Q(j): hidden o within order − 1 edges of j, and every output
    j_reach, o_reach = _reach(topology, order - 1)
    hidden = o_reach < F - O
    j_all = torch.cat([j_reach[hidden], torch.arange(F).repeat_interleave(O)])
    o_all = torch.cat([o_reach[hidden], torch.arange(F - O, F).repeat(F)])
    q_keys = torch.unique(j_all * F + o_all)
    q_j, q_o = q_keys // F, q_keys % F
    q_ptr = torch.zeros(F + 1, dtype=torch.long)
    q_ptr[1:] = torch.cumsum(torch.bincount(q_j, minlength=F), 0)
    # neuron-level transitions (j, k) → (j, o) through a free edge k → o, both kept
    ptr, targets, ids = free_out_edges(topology)
    a, slot, o = expand_walks(q_o, ptr, targets)
    target_keys = q_j[a] * F + o
    at = torch.searchsorted(q_keys, target_keys).clamp(max=max(len(q_keys) - 1, 0))
    kept = q_keys[at] == target_keys if len(q_keys) else target_keys.new_zeros(0, dtype=torch.bool)
    t_src, t_via, t_dst = a[kept], ids[slot[kept]], at[kept]
    t_j = q_j[t_src]
    t_order = torch.argsort(t_j, stable=True)
    t_src, t_via, t_dst, t_j = t_src[t_order], t_via[t_order], t_dst[t_order], t_j[t_order]
    t_ptr = torch.zeros(F + 1, dtype=torch.long)
    t_ptr[1:] = torch.cumsum(torch.bincount(t_j, minlength=F), 0)
    # lift to edges: edge p owns a copy of Q(j_p) starting at base[p]
    sizes = q_ptr[dst + 1] - q_ptr[dst]
    base = torch.cumsum(sizes, 0) - sizes
    pair_edge = torch.repeat_interleave(torch.arange(P), sizes)
    local = torch.arange(len(pair_edge)) - torch.repeat_interleave(base, sizes)
    pair_q = q_ptr[dst][pair_edge] + local  # the neuron-level pair of every edge-level pair
    pair_col = q_o[pair_q]
    t_sizes = t_ptr[dst + 1] - t_ptr[dst]
    t_edge = torch.repeat_interleave(torch.arange(P), t_sizes)
    t_base = torch.cumsum(t_sizes, 0) - t_sizes
    t_local = torch.arange(len(t_edge)) - torch.repeat_interleave(t_base, t_sizes)
    t_q = t_ptr[dst][t_edge] + t_local  # the neuron-level transition
    q_start = q_ptr[dst][t_edge]
    src_pair = base[t_edge] + t_src[t_q] - q_start
    dst_pair = base[t_edge] + t_dst[t_q] - q_start
    # (p, j_p): j_p's own entry of Q(j_p) (dist 0, or an output)
    self_keys = dst * F + dst
    inject = base + torch.searchsorted(q_keys, self_keys) - q_ptr[dst]
    # the output pairs: the last O entries of every Q(j) (sorted by o, outputs last)
    out_pair = (base + sizes).repeat_interleave(O) - O + torch.arange(O).repeat(P)
    return SnApPlan(
        edge=pair_edge,
        col=pair_col,
        src_pair=src_pair,
        via=t_via[t_q],
        dst_pair=dst_pair,
        inject_pair=inject,
        out_pair=out_pair,
    )


class SnApCarry(StateCarry):
    """A stream of SnAp-k: h, the kept sensitivities Z (B, K) and the edge gradient."""

    def __init__(
        self, dyn: Dynamics, storage: Layout, theta: torch.Tensor, batch: int, order: int
    ) -> None:
        super().__init__(dyn, storage, batch, theta)
        dev, dtype = theta.device, theta.dtype
        self.plan = snap_plan(dyn.topology, order).to(dev)
        self.index = edge_index_of(dyn.topology, dev)
        self.Z = torch.zeros(batch, self.plan.pairs, dtype=dtype, device=dev)
        self.grad_edges = torch.zeros(dyn.topology.n_edges, dtype=dtype, device=dev)

    def enter(self, h, sensitivities=None):
        self.enter_state(h)
        self.Z.zero_()

    def reset(self) -> None:
        self.enter(None)

    def advance(self, theta, x):
        dyn, plan = self.dyn, self.plan
        theta = theta.detach()
        tr = self.storage.transition(dyn, theta)
        w = self.storage.edge_values(theta)
        w_via = w[plan.via]
        c = dyn.clamped_state(x, 1)
        drive = tr.drive(c)
        h, Z = self._h, self.Z
        src_values = None
        for _ in range(dyn.ticks):
            S_prev = torch.cat([c, h], dim=1)
            h, D = dyn.activations(tr.pre_activation(drive, h))  # Eq. 3
            Z_next = torch.zeros_like(Z)
            Z_next.index_add_(1, plan.dst_pair, Z[:, plan.src_pair] * w_via)  # Z A_f, kept
            src_values = S_prev[:, self.index.src]
            Z_next.index_add_(1, plan.inject_pair, src_values)  # + S̃_{n-1} at (p, j_p)
            Z = Z_next.mul_(D[:, plan.col])  # · φ′(T_n); the dropped entries never exist
        self.Z = Z
        self.set_state(h)
        return self.y

    def feed(self, theta, grad_y):
        """dE/dw_p += Σ_{b,o} dE/dy[b, o] Z[b, (p, o)] over the output pairs."""
        P, O = len(self.grad_edges), self.dyn.n_outputs
        out = self.Z[:, self.plan.out_pair].view(self.batch, P, O)
        self.grad_edges += torch.einsum("bpo,bo->p", out, grad_y.to(out.dtype))

    def gradient(self, theta, out=None):
        return take_edge_gradient(self.storage, self.grad_edges, out)

    def finite(self) -> bool:
        return bool(torch.isfinite(self.Z).all())

    def state_dict(self) -> dict[str, Any]:
        return {"h": self._h.clone(), "carried": self.Z.clone(), "grad": self.grad_edges.clone()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self._restore("h", self._h, state["h"])
        self._restore("carried", self.Z, state["carried"])
        self._restore("grad", self.grad_edges, state["grad"])


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
        plan = snap_plan(dyn.topology, self.order)
        K, M = plan.pairs, plan.transitions
        topo = dyn.topology
        P, N = topo.n_edges, topo.n_neurons
        floats = batch * (3 * K + M + P) + 3 * P + 6 * batch * N
        return itemsize * floats + 8 * (2 * K + 3 * M + 2 * P + P * topo.n_outputs)
