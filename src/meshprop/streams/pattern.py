r"""Sensitivities kept on a pattern: the pairs (p, o) of RTRL's Z[p, o] = ∂h_o/∂w_p that a
method carries, and the carry that advances them (paper 000 Eq. 17 restricted to the pattern).

For an edge p = (i_p → j_p), Eq. 17,

    Z_n = (Z_{n-1} A_f + S̃_{n-1}) D_n,        D_n = diag φ′(T_n),

fills Z[p, o] only for the free neurons o that j_p reaches by a walk of free edges: every other
entry is structurally zero forever.  A *pattern* of order k keeps, for every edge p, the hidden
neurons that j_p reaches by at most k − 1 free edges and every output neuron (the output rows
are kept in full; there are O of them); ``order=None`` keeps every hidden neuron j_p reaches at
all — the *saturated* pattern, on which the recursion is exact RTRL.  Below saturation the
entries off the pattern are dropped after every tick (SnAp-k, :mod:`meshprop.streams.snap`).

The pattern is a list of K pairs (p, o) and M *transitions* (pair (p, k), free edge k → o, pair
(p, o), both kept), built once per (topology, order) from the edge list in O(K + M) work and
memory, nothing F×F: a breadth-first search over neuron pairs (j, o) — every neuron that some
edge enters, paired with what it reaches — lifted to the edges entering j.  Its size can be
counted, within a budget, before anything of edge size is built (:func:`pattern_size`): the
memory guard and the choice of ``fop``'s representation (:mod:`meshprop.streams.cost`) use it.

:class:`PatternCarry` advances Z on the pattern.  Its whole state is one buffer
X = [Z | c | h] of B·(K + N) numbers; a tick is one gather of X at the M + 2P sources of its
products, one multiply by the matching weights (w at the transitions' edges, 1 for S̃, w for
the forward sum), one ``index_add_`` into [Z_next | T] — the transitions Z A_f, the injected
S̃_{n-1} at (p, j_p) and Eq. 3's T_n = S_{n-1} A[:, free] in one call — then φ(T_n), φ′(T_n)
and the scaling of the K kept entries by φ′ at their column: eight torch operations per tick
whatever the size, O(B·(K + M + P)) work.  The weights are read as the edge vector
(``Layout.edge_values``) once per element, so both layouts run the same arithmetic.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import torch

from ..dynamics import Dynamics
from ..engines.edge_ops import edge_index_of
from ..engines.fop_sparse import expand_walks, free_out_edges
from ..layout import Layout
from ..memory import get_memory_limit
from ..topology import Topology
from .protocol import StreamCarry

__all__ = [
    "MIN_BYTES_PER_ENTRY",
    "PatternCarry",
    "PatternPlan",
    "PatternSize",
    "pattern_budget",
    "pattern_bytes",
    "pattern_plan",
    "pattern_size",
    "saturation_order",
]


#: bytes a kept pair or a transition may cost while its pattern is searched (the int64 keys, the
#: walks expanded and the sorts' temporaries) and at least costs in the carry (its int64
#: indices): the search stops once the pattern passes the memory limit at this rate, so that
#: the guard's own count never needs more memory than the limit
MIN_BYTES_PER_ENTRY = 48


def pattern_budget() -> int | None:
    """Pairs plus transitions beyond which a pattern cannot fit the memory limit that applies
    now (None: no limit): the search of a pattern's size stops there."""
    limit = get_memory_limit()
    return None if limit is None else limit // MIN_BYTES_PER_ENTRY + 1


@dataclass(frozen=True)
class PatternSize:
    """The size of a pattern: K kept pairs and M transitions (edge level)."""

    pairs: int
    transitions: int


@dataclass(frozen=True)
class PatternPlan:
    """The kept pairs (p, o) and the transitions between them (module docstring)."""

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

    def to(self, device: torch.device) -> PatternPlan:
        if self.edge.device == device:
            return self
        return PatternPlan(**{k: v.to(device) for k, v in vars(self).items()})


class _Seen:
    """A growing set of int64 keys kept as sorted runs of decreasing size (each at least the
    sum of those after it, so O(log n) runs): a membership test searches every run, an
    insertion adds a run and merges the smaller ones — O(n log² n) over a search of many
    levels (a chain of L neurons has L levels)."""

    def __init__(self, keys: torch.Tensor) -> None:
        self.runs = [torch.unique(keys)]

    def new(self, keys: torch.Tensor) -> torch.Tensor:
        """The distinct keys not in the set (sorted); they are added."""
        keys = torch.unique(keys)
        for run in self.runs:
            if len(keys) == 0:
                break
            if len(run):
                at = torch.searchsorted(run, keys).clamp(max=len(run) - 1)
                keys = keys[run[at] != keys]
        if len(keys):
            self.runs.append(keys)
            while len(self.runs) >= 2 and len(self.runs[-2]) <= 2 * len(self.runs[-1]):
                last = self.runs.pop()
                self.runs[-1] = torch.unique(torch.cat([self.runs[-1], last]))
        return keys

    def all(self) -> torch.Tensor:
        return torch.unique(torch.cat(self.runs))


@dataclass(frozen=True)
class _Neurons:
    """The neuron-level pattern: sorted keys j·F + o of the kept (j, o) and the transitions
    (j, k) → (j, o) through free edges k → o (indices into the keys, the edge id)."""

    keys: torch.Tensor
    t_src: torch.Tensor
    t_via: torch.Tensor
    t_dst: torch.Tensor
    depth: int  # the longest shortest walk (free edges) from an entered neuron to a hidden one


def _in_degrees(topology: Topology) -> torch.Tensor:
    """The number of edges (from any neuron) into every free neuron, (F,)."""
    dst = topology.edges[:, 1] - topology.n_clamped
    return torch.bincount(dst, minlength=topology.n_free)


#: the neuron-level patterns searched so far: (topology, order) → (pattern, work spent) or
#: (None, the budget it exceeded); bounded, the oldest dropped first
_SEARCHED: dict[tuple[Topology, int | None], tuple[_Neurons | None, int]] = {}
_SEARCHED_MAX = 32


def _neuron_pattern(topology: Topology, order: int | None, budget: int | None) -> _Neurons | None:
    """The neuron-level pattern of ``order`` (None: saturated), or None when its edge-level
    work — the pairs found and the walks expanded, each weighted by the edges entering its
    neuron j — exceeds ``budget`` (None: no budget): the search stops there, so a pattern too
    large to keep is never built.  Cached per (topology, order)."""
    key = (topology, order)
    cached = _SEARCHED.get(key)
    if cached is not None:
        neurons, amount = cached
        if neurons is not None:
            return neurons if budget is None or amount <= budget else None
        if budget is not None and budget <= amount:
            return None
    neurons, amount = _search(topology, order, budget)
    if len(_SEARCHED) >= _SEARCHED_MAX:
        del _SEARCHED[next(iter(_SEARCHED))]
    _SEARCHED[key] = (neurons, amount)
    return neurons


def _search(
    topology: Topology, order: int | None, budget: int | None
) -> tuple[_Neurons | None, int]:
    """:func:`_neuron_pattern` uncached: (the pattern, the work spent) or (None, ``budget``)."""
    F, O = topology.n_free, topology.n_outputs
    indeg = _in_degrees(topology)
    ptr, targets, ids = free_out_edges(topology)
    outdeg = ptr[1:] - ptr[:-1]
    entered = (indeg > 0).nonzero().flatten()
    spent = int(indeg.sum()) * (1 + O)  # the pairs (p, j_p) and the output pairs

    def over(amount: int) -> bool:
        nonlocal spent
        spent += amount
        return budget is not None and spent > budget

    if over(0):
        return None, int(budget or 0)
    seen = _Seen(entered * F + entered)
    frontier = seen.all()
    step, depth = 0, 0
    while len(frontier) and (order is None or step < order - 1):
        j, o = frontier // F, frontier % F
        if over(int((indeg[j] * outdeg[o]).sum())):
            return None, int(budget or 0)
        a, _, nxt = expand_walks(o, ptr, targets)
        frontier = seen.new(j[a] * F + nxt)
        step += 1
        if bool((frontier % F < F - O).any()):
            depth = step
        if over(int(indeg[frontier // F].sum())):
            return None, int(budget or 0)
    reached = seen.all()
    hidden = reached[reached % F < F - O]
    outputs = (entered * F).repeat_interleave(O) + torch.arange(F - O, F).repeat(len(entered))
    keys = torch.unique(torch.cat([hidden, outputs]))
    q_j, q_o = keys // F, keys % F
    if over(int((indeg[q_j] * outdeg[q_o]).sum())):
        return None, int(budget or 0)
    a, slot, o = expand_walks(q_o, ptr, targets)
    target_keys = q_j[a] * F + o
    at = torch.searchsorted(keys, target_keys).clamp(max=max(len(keys) - 1, 0))
    kept = keys[at] == target_keys if len(keys) else target_keys.new_zeros(0, dtype=torch.bool)
    return _Neurons(keys, a[kept], ids[slot[kept]], at[kept], depth), spent


def pattern_size(
    topology: Topology, order: int | None, budget: int | None = None
) -> PatternSize | None:
    """K and M of the pattern of ``order`` (None: saturated) without building it at edge level,
    or None when counting it would pass ``budget`` pairs plus transitions (see
    :func:`_neuron_pattern`; None: no budget)."""
    neurons = _neuron_pattern(topology, order, budget)
    if neurons is None:
        return None
    indeg = _in_degrees(topology)
    F = topology.n_free
    pairs = int(indeg[neurons.keys // F].sum())
    transitions = int(indeg[neurons.keys[neurons.t_src] // F].sum())
    return PatternSize(pairs, transitions)


def saturation_order(topology: Topology) -> int:
    """The least k for which SnAp-k keeps every entry RTRL can fill: 1 + the longest shortest
    walk (over free edges) from a neuron some edge enters to a hidden neuron it reaches."""
    neurons = _neuron_pattern(topology, None, None)
    assert neurons is not None
    return neurons.depth + 1


@lru_cache(maxsize=16)
def pattern_plan(topology: Topology, order: int | None) -> PatternPlan:
    """The :class:`PatternPlan` of ``order`` (None: saturated) for ``topology`` (cached; built
    from the edge list in O(K + M) work and memory)."""
    neurons = _neuron_pattern(topology, order, None)
    assert neurons is not None
    C, F, O = topology.n_clamped, topology.n_free, topology.n_outputs
    P = topology.n_edges
    dst = topology.edges[:, 1] - C
    q_keys = neurons.keys
    q_j, q_o = q_keys // F, q_keys % F
    q_ptr = torch.zeros(F + 1, dtype=torch.long)
    q_ptr[1:] = torch.cumsum(torch.bincount(q_j, minlength=F), 0)
    t_src, t_via, t_dst = neurons.t_src, neurons.t_via, neurons.t_dst
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
    inject = base + torch.searchsorted(q_keys, dst * F + dst) - q_ptr[dst]
    # the output pairs: the last O entries of every Q(j) (sorted by o, outputs last)
    out_pair = (base + sizes).repeat_interleave(O) - O + torch.arange(O).repeat(P)
    return PatternPlan(
        edge=pair_edge,
        col=pair_col,
        src_pair=src_pair,
        via=t_via[t_q],
        dst_pair=dst_pair,
        inject_pair=inject,
        out_pair=out_pair,
    )


def pattern_bytes(size: PatternSize, topology: Topology, batch: int, itemsize: int) -> int:
    """Bytes a :class:`PatternCarry` allocates for ``batch`` streams (its buffers and the
    plan's int64 indices)."""
    K, M = size.pairs, size.transitions
    P, N, F, O = topology.n_edges, topology.n_neurons, topology.n_free, topology.n_outputs
    G = M + 2 * P
    floats = batch * (2 * K + N + K + F + G + 2 * F + P * O + 2 * O) + G + 2 * P
    indices = 2 * K + 3 * M + P + P * O + 2 * G + 3 * P
    return itemsize * floats + 8 * indices


class PatternCarry(StreamCarry):
    """A stream whose sensitivities live on a :class:`PatternPlan` (module docstring): the
    buffer X = [Z | c | h] (B, K + N), the edge gradient, and the preallocated buffers of a
    tick.  ``exact``: the plan is saturated (the carry is RTRL and takes entering
    sensitivities); otherwise entering sensitivities are ignored (SnAp: h is a constant)."""

    def __init__(
        self,
        dyn: Dynamics,
        storage: Layout,
        theta: torch.Tensor,
        batch: int,
        plan: PatternPlan,
        exact: bool,
    ) -> None:
        super().__init__(dyn, storage, batch)
        topo = dyn.topology
        dev, dtype = theta.device, theta.dtype
        plan = plan.to(dev)
        self.plan, self.exact = plan, exact
        C, F, O, N, P = dyn.n_clamped, dyn.n_free, dyn.n_outputs, topo.n_neurons, topo.n_edges
        K, M = plan.pairs, plan.transitions
        self.K, self.M, self.P, self.C, self.F, self.O, self.N = K, M, P, C, F, O, N
        index = edge_index_of(topo, dev)
        src = index.src
        free_dst = topo.edges[:, 1].to(dev) - C
        # the gathered sources and their destinations: transitions, S̃, Eq. 3's sum
        self.src_ext = torch.cat([plan.src_pair, K + src, K + src])
        self.dst_ext = torch.cat([plan.dst_pair, plan.inject_pair, K + free_dst])
        self.w_ext = torch.ones(M + 2 * P, dtype=dtype, device=dev)
        self.w_via = self.w_ext[:M]
        self.w_forward = self.w_ext[M + P :]
        self.X = torch.zeros(batch, K + N, dtype=dtype, device=dev)
        if topo.bias:
            self.X[:, K + C - 1] = 1.0
        self.Z = self.X[:, :K]
        self.x_view = self.X[:, K : K + topo.n_inputs]
        self._h = self.X[:, K + C :]
        self.y = self.X[:, K + N - O :]
        self.Y = torch.empty(batch, K + F, dtype=dtype, device=dev)
        self.Y_pairs, self.T = self.Y[:, :K], self.Y[:, K:]
        self.G = torch.empty(batch, M + 2 * P, dtype=dtype, device=dev)
        self.D = torch.ones(batch, F, dtype=dtype, device=dev)
        self.D_col = torch.empty(batch, K, dtype=dtype, device=dev)
        self.ones = torch.ones(batch, F, dtype=dtype, device=dev)
        self.uniform = dyn.activations.uniform
        one = batch == 1
        self.gather_views = (
            (self.X[0], self.G[0], self.D[0], self.D_col[0])
            if one
            else (self.X, self.G, self.D, self.D_col)
        )
        self.Z_out = torch.empty(batch, P * O, dtype=dtype, device=dev)
        self.grad_edges = torch.zeros(P, dtype=dtype, device=dev)
        self.w = torch.empty(batch, O, dtype=dtype, device=dev)
        self.err = torch.empty(batch, O, dtype=dtype, device=dev)
        self.scalar = batch == 1 and O == 1
        self.w_scalar = 0.0
        self._pending = 0  # 0: nothing; 1: w fed, not contracted; 2: the host scalar w
        self._accumulated = False  # grad_edges holds a sum
        self._edge_buffer: tuple[torch.Tensor, bool] | None = None

    # ---------------------------------------------------------------- state
    @property
    def h(self) -> torch.Tensor:
        return self._h

    @property
    def sensitivities(self) -> torch.Tensor | None:
        """Z (B, P, F), zero off the pattern (a new tensor); None below saturation."""
        if not self.exact:
            return None
        B, P, F = self.batch, self.P, self.F
        Z = torch.zeros(B, P * F, dtype=self.X.dtype, device=self.X.device)
        Z[:, self.plan.edge * F + self.plan.col] = self.Z
        return Z.view(B, P, F)

    def _enter_sensitivities(self, Z: torch.Tensor) -> None:
        B, P, F = self.batch, self.P, self.F
        if tuple(Z.shape) != (B, P, F):
            raise ValueError(
                f"state.sensitivities must have shape {(B, P, F)}, got {tuple(Z.shape)}"
            )
        flat = Z.detach().to(self.X).reshape(B, P * F)
        at = self.plan.edge * F + self.plan.col
        kept = flat[:, at]
        off = float(flat.abs().sum()) - float(kept.abs().sum())
        if off > 0.0:
            raise ValueError(
                "state.sensitivities are non-zero where this topology's edges cannot reach "
                "(off the pattern of exact RTRL): they do not belong to this network"
            )
        self.Z.copy_(kept)

    def enter(self, h, sensitivities=None):
        self._flush()
        if h is None:
            self._h.zero_()
        else:
            self._h.copy_(h)
        if sensitivities is None or not self.exact:
            self.Z.zero_()
        else:
            self._enter_sensitivities(sensitivities)

    def reset(self) -> None:
        self._flush()
        self._h.zero_()
        self.Z.zero_()

    # ---------------------------------------------------------------- steps
    def advance(self, theta, x):
        if self._pending:
            self._flush()
        w = self.storage.edge_values(theta.detach())
        torch.index_select(w, 0, self.plan.via, out=self.w_via)
        self.w_forward.copy_(w)
        self.x_view.copy_(x)
        G, Y, T, h, D = self.G, self.Y, self.T, self._h, self.D
        src_ext, dst_ext, w_ext, col = self.src_ext, self.dst_ext, self.w_ext, self.plan.col
        # one stream: the gathers read 1-D views (faster than dim 1 of a (1, n) tensor)
        X_in, G_out, D_in, D_col = self.gather_views
        dim = 0 if self.batch == 1 else 1
        for _ in range(self.dyn.ticks):
            torch.index_select(X_in, dim, src_ext, out=G_out)
            G.mul_(w_ext)
            Y.zero_()
            Y.index_add_(1, dst_ext, G)  # Z A_f on the pattern, + S̃_{n-1}, and T_n (Eq. 3)
            if self.uniform == "tanh":
                torch.tanh(T, out=h)
                torch.addcmul(self.ones, h, h, value=-1.0, out=D)
            else:
                value, slope = self.dyn.activations(T)
                h.copy_(value)
                D.copy_(slope)
            torch.index_select(D_in, dim, col, out=D_col)
            torch.mul(self.Y_pairs, self.D_col, out=self.Z)  # · φ′(T_n) (Eq. 17)
        return self.y

    def feed(self, theta, grad_y):
        if self._pending:
            self._flush()
        self.w.copy_(grad_y)
        self._pending = 1

    def feed_mse(self, theta, target, mask, scale):
        if self._pending:
            self._flush()
        if self.scalar and mask is None:
            err = float(self.y) - float(target)
            self.w_scalar = scale * 2.0 * err
            self._pending = 2
            return err * err
        err = torch.sub(self.y, target, out=self.err)
        if mask is not None:
            err.mul_(mask.unsqueeze(1))
        torch.mul(err, 2.0 * scale / self.O, out=self.w)
        self._pending = 1
        return float((err * err).sum()) / self.O

    def _contract(self, out: torch.Tensor, beta: float) -> None:
        """out (P,) ← beta · out + Σ_{b,o} Z[b, (p, o)] w[b, o] over the output pairs
        (Algorithm 1's last line on the pattern)."""
        if self.batch == 1:
            torch.index_select(self.X[0], 0, self.plan.out_pair, out=self.Z_out[0])
        else:
            torch.index_select(self.Z, 1, self.plan.out_pair, out=self.Z_out)
        if self._pending == 2:
            if beta == 0.0:
                torch.mul(self.Z_out[0], self.w_scalar, out=out)
            else:
                out.add_(self.Z_out[0], alpha=self.w_scalar)
            return
        B, P, O = self.batch, self.P, self.O
        if B == 1:
            out.addmv_(self.Z_out.view(P, O), self.w[0], beta=beta)
        else:
            part = torch.bmm(self.Z_out.view(B, P, O), self.w.unsqueeze(2)).sum(dim=(0, 2))
            if beta == 0.0:
                out.copy_(part)
            else:
                out.add_(part)

    def _flush(self) -> None:
        if self._pending:
            self._contract(self.grad_edges, 1.0 if self._accumulated else 0.0)
            self._pending, self._accumulated = 0, True

    def _is_edge_vector(self, out: torch.Tensor) -> bool:
        """Whether ``out`` is its own edge vector (the sparse layout's shape): the gradient of
        one element is then contracted straight into it.  Cached for the last buffer."""
        cached = self._edge_buffer
        if cached is None or cached[0] is not out:
            values = self.storage.edge_values(out)
            same = values.data_ptr() == out.data_ptr() and tuple(values.shape) == tuple(out.shape)
            cached = self._edge_buffer = (out, same)
        return cached[1]

    def gradient(self, theta, out=None):
        if out is None:
            out = torch.zeros(
                self.storage.shape, dtype=self.grad_edges.dtype, device=self.grad_edges.device
            )
        if self._pending and not self._accumulated and self._is_edge_vector(out):
            self._contract(out, 0.0)  # one element: no accumulator traffic
            self._pending = 0
            return out
        if not self._pending and not self._accumulated:
            self.grad_edges.zero_()
        self._flush()
        self.storage.write_edge_values(out, self.grad_edges)
        self._pending, self._accumulated = 0, False
        return out

    def finite(self) -> bool:
        return math.isfinite(float(self.Z.sum()))

    # ---------------------------------------------------------------- saving
    def state_dict(self) -> dict[str, Any]:
        self._flush()
        grad = self.grad_edges.clone() if self._accumulated else torch.zeros_like(self.grad_edges)
        return {"h": self._h.clone(), "carried": self.Z.clone(), "grad": grad}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        carried = state["carried"]
        if self.exact and "slopes" in state and carried.dim() == 3:
            # saved by the dense representation: V = Uᵀ (B, F, P) and D, Z = U D
            self._restore("h", self._h, state["h"])
            self._enter_sensitivities(carried.transpose(1, 2) * state["slopes"].unsqueeze(1))
        else:
            self._restore("h", self._h, state["h"])
            self._restore("carried", self.Z, carried)
        self._restore("grad", self.grad_edges, state["grad"])
        self._pending, self._accumulated = 0, True
