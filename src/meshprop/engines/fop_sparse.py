r"""Sparse FOP: paper 000's forward sensitivities (Eq. 13 / 17) carried only where they can be
non-zero, for large sparse meshes.

Eq. 13 for one edge p = (i_p → j_p), with D_n = diag φ′(T_n), reads per tick

    Z_n[p, o] = φ′(T_n)_o · ( Σ_k Z_{n-1}[p, k] A_f[k, o] + [o = j_p] S_{n-1, i_p} ),

so Z_n[p, ·] is non-zero only on neurons o that j_p reaches by a walk of at most n − 1 edges of
the free block; and only the columns R_n that still reach an output in the T − n remaining ticks
matter (``reach.needed_columns``).  The carried state is therefore a list of *pairs* (p, o):

    U_1 = {(p, j_p) : j_p ∈ R_1},
    U_n = {(p, o) : o ∈ R_n, o = j_p or (p, k) ∈ U_{n-1} for an edge k → o},

about P·(1 + d + … + d^{n-1}) pairs for mean out-degree d before the pruning by R_n, instead of
``fop``'s P·F.  The pairs and the *transitions* (pair a of tick n−1, free edge e = k → o, pair b
of tick n) depend on the topology only; they are computed once per (topology, ticks) and cached.
A tick is then one gather-multiply-``index_add_`` over the transitions, one ``index_add_`` of the
injected S̃_{n-1} term (Eq. 16) and one scaling by φ′ — exact, the same recursion as ``fop``.
The gradient is Algorithm 1's last line over the pairs of tick T (outputs only):

    dE/dw_p = Σ_b Σ_{(p, o) ∈ U_T} dE/dy[b, o] · Z_T[b, (p, o)].

Registered as the dense-layout engine ``"fop_sparse"`` (reading A at the edges) and used by
``MeshNet(..., layout="sparse")`` as its ``"fop"``.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import torch

from ..dynamics import Dynamics
from ..topology import Topology
from .base import GradientEngine
from .edge_ops import (
    CHUNK,
    edge_grad,
    joined_state,
    propagate,
    tick_edge_counts,
    tick_edges,
    transpose_product,
)
from .reach import needed_columns

__all__ = [
    "FOP_SPARSE",
    "SparseFOPEngine",
    "expand_walks",
    "free_out_edges",
    "last_pairs",
    "pair_counts",
    "sparse_fop_backward",
    "sparse_fop_carry",
    "sparse_fop_forward",
    "sparse_fop_gradient",
    "sparse_fop_row_operations",
]

#: ticks above which the cost model stops counting walks and bounds the pairs by P·|R_n|.
WALK_TICKS = 12


@dataclass(frozen=True)
class _Tick:
    # the pairs (p, o) of tick n: first the L_n pairs (p, j_p) where S̃_{n-1} enters, then the
    # others, each block sorted by edge p (the edges are sorted by source, so the injected
    # S_{n-1}[i_p] rows are read in order and a pair's transitions come from nearby rows)
    edge: torch.Tensor  # (K_n,) edge p of every pair
    col: torch.Tensor  # (K_n,) free neuron o of every pair
    inject_edge: torch.Tensor  # (L_n,) the edge p of pair 0..L_n-1
    inject_src: torch.Tensor  # (L_n,) its source neuron i_p
    # where every pair L_n..K_n-1 receives exactly one transition (a wired mesh): its source
    # pair of tick n-1 and the transition's edge, one row gather for the whole block
    gather: torch.Tensor | None
    gather_edge: torch.Tensor | None
    # the transitions added by scatter (sorted by target pair): all of them without ``gather``,
    # else those into the injected pairs: pair a of tick n-1 through the edge e = k → o
    # (index into the edge list) into pair b of tick n
    src_pair: torch.Tensor
    via: torch.Tensor
    dst_pair: torch.Tensor

    def nbytes(self) -> int:
        tensors = [t for t in vars(self).values() if isinstance(t, torch.Tensor)]
        return sum(t.numel() * t.element_size() for t in tensors)

    def to(self, device: torch.device) -> _Tick:
        if self.edge.device == device:
            return self
        moved: dict[str, Any] = {
            k: v.to(device) if isinstance(v, torch.Tensor) else v for k, v in vars(self).items()
        }
        return _Tick(**moved)


def free_out_edges(topology: Topology) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The free block's edges k → o grouped by source: (pointer (F+1,), targets, edge ids)."""
    C, F = topology.n_clamped, topology.n_free
    edges = topology.edges
    src, dst = edges[:, 0], edges[:, 1] - C
    free = (src >= C).nonzero().flatten()
    order = free[torch.argsort(src[free] - C, stable=True)]
    ptr = torch.zeros(F + 1, dtype=torch.long)
    ptr[1:] = torch.cumsum(torch.bincount(src[order] - C, minlength=F), 0)
    return ptr, dst[order], order


def expand_walks(
    at: torch.Tensor, ptr: torch.Tensor, targets: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """For every entry a and free edge at[a] → o: (a, the edge's slot in ``targets``, o)."""
    counts = ptr[at + 1] - ptr[at]
    a = torch.repeat_interleave(torch.arange(len(at)), counts)
    starts = torch.cumsum(counts, 0) - counts
    offset = torch.arange(len(a)) - torch.repeat_interleave(starts, counts)
    slot = ptr[at][a] + offset
    return a, slot, targets[slot]


@lru_cache(maxsize=16)
def _plan(topology: Topology, ticks: int) -> tuple[_Tick, ...]:
    """The pairs and transitions of ticks 1..T (Z_T's pairs: the Jacobian of the outputs)."""
    return _build_plan(topology, ticks, ticks)


@lru_cache(maxsize=16)
def _carry_plan(topology: Topology, ticks: int) -> tuple[_Tick, ...]:
    """The pairs and transitions of ticks 1..T−1: what the gradient engine carries (tick T is
    contracted with dE/dy at once, :func:`sparse_fop_gradient`)."""
    return _build_plan(topology, ticks, ticks - 1)


def _build_plan(topology: Topology, ticks: int, count: int) -> tuple[_Tick, ...]:
    C, F = topology.n_clamped, topology.n_free
    dst = topology.edges[:, 1] - C
    # the free block's edges grouped by source (k → o), with their index in the edge list
    out_ptr, out_dst, order = free_out_edges(topology)
    columns = needed_columns(topology, ticks)[:count]
    empty = torch.zeros(0, dtype=torch.long)
    ticks_out = []
    prev_edge, prev_col = empty, empty
    for n, R in enumerate(columns, start=1):
        in_R = torch.zeros(F, dtype=torch.bool)
        in_R[R] = True
        inject = in_R[dst].nonzero().flatten()  # edges p whose j_p ∈ R_n
        inject_keys = inject * F + dst[inject]
        if n == 1 or len(prev_edge) == 0:
            a = via = o = empty
        else:
            a, slot, o = expand_walks(prev_col, out_ptr, out_dst)
            keep = in_R[o]
            a, via, o = a[keep], order[slot[keep]], o[keep]
        keys = torch.cat([prev_edge[a] * F + o, inject_keys])
        unique, inverse = torch.unique(keys, sorted=True, return_inverse=True)
        K, L = len(unique), len(inject)
        # injected pairs first: the inject keys are ascending, so they keep their order
        injected = torch.zeros(K, dtype=torch.bool)
        injected[inverse[len(a) :]] = True
        arranged = torch.cat([injected.nonzero().flatten(), (~injected).nonzero().flatten()])
        position = torch.empty(K, dtype=torch.long)
        position[arranged] = torch.arange(K)
        unique = unique[arranged]
        dst_pair = position[inverse[: len(a)]]
        by_dst = torch.argsort(dst_pair, stable=True)  # sequential writes, nearby reads
        a, via, dst_pair = a[by_dst], via[by_dst], dst_pair[by_dst]
        gather = gather_edge = None
        rest = dst_pair >= L
        single = int(rest.sum()) == K - L and bool((dst_pair[rest] == torch.arange(L, K)).all())
        if single and K > L:
            gather, gather_edge = a[rest], via[rest]
            a, via, dst_pair = a[~rest], via[~rest], dst_pair[~rest]
        ticks_out.append(
            _Tick(
                edge=unique // F,
                col=unique % F,
                inject_edge=inject,
                inject_src=topology.edges[inject, 0],
                gather=gather,
                gather_edge=gather_edge,
                src_pair=a,
                via=via,
                dst_pair=dst_pair,
            )
        )
        prev_edge, prev_col = unique // F, unique % F
    return tuple(ticks_out)


@lru_cache(maxsize=64)
def pair_counts(topology: Topology, ticks: int) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Upper bounds of (K_1..K_T pairs, M_1..M_T transitions) without building the plan.

    K_n(p) ≤ min(|R_n|, Σ_{ℓ<n} walks of length ℓ from j_p into R_n) and M_n(p) ≤ the walks
    into R_{n-1} weighted by their out-degree into R_n: O(T²·P) work on count vectors (for more
    than :data:`WALK_TICKS` ticks only the P·|R_n| bound)."""
    C, F = topology.n_clamped, topology.n_free
    edges = topology.edges
    src, dst = edges[:, 0], edges[:, 1] - C
    inside = src >= C
    fs, fd = src[inside] - C, dst[inside]
    columns = needed_columns(topology, ticks)
    sizes = [float(len(R)) for R in columns]
    P = float(len(edges))
    if ticks > WALK_TICKS:
        K = [P * s for s in sizes]
        return tuple(K), (0.0, *(K[n - 1] * sizes[n] for n in range(1, ticks)))

    def walks_from(v: torch.Tensor, length: int) -> torch.Tensor:
        """Σ_{ℓ ≤ length} A_f^ℓ v: weighted walk counts of length ≤ ``length`` from each k."""
        total, current = v.clone(), v
        for _ in range(length):
            current = torch.zeros(F, dtype=torch.float64).index_add_(0, fs, current[fd])
            total += current
        return total

    K, M = [], []
    indicators = []
    for R in columns:
        flags = torch.zeros(F, dtype=torch.float64)
        flags[R] = 1.0
        indicators.append(flags)
    previous = torch.zeros(len(dst), dtype=torch.float64)
    for n in range(1, ticks + 1):
        per_edge = walks_from(indicators[n - 1], n - 1)[dst].clamp(max=sizes[n - 1])
        K.append(float(per_edge.sum()))
        if n == 1:
            M.append(0.0)
        else:
            fan = torch.zeros(F, dtype=torch.float64).index_add_(0, fs, indicators[n - 1][fd])
            weight = fan * indicators[n - 2]  # out-degree into R_n of the neurons of R_{n-1}
            bound = walks_from(weight, n - 2)[dst].clamp(max=previous * float(fan.max()))
            M.append(float(bound.sum()))
        previous = per_edge
    return tuple(K), tuple(M)


def _advance(
    tick: _Tick,
    Zt: torch.Tensor,
    St: torch.Tensor,
    Dt: torch.Tensor | None,
    w: torch.Tensor,
) -> torch.Tensor:
    """Eq. 13 for one tick on pair-major sensitivities: Z_n (K_n, B) from Z_{n-1} (K_{n-1}, B),
    the state S_{n-1} as (N, B), φ′(T_n) as (F, B) and the weights w (P,).  With ``Dt`` None
    the factor φ′(T_n) is left out: the result is then the sensitivity of the pre-activation,
    ∂T_n[o]/∂w_p (the caller applies φ′ later).

    Pair-major storage keeps every sample of a pair in one contiguous row, so each gather and
    scatter moves whole rows (``index_select`` / ``index_add_`` along dim 0).  The injected
    pairs come first (rows 0..L_n-1: one ordered gather of S_{n-1}[i_p], the edges being sorted
    by source), then the others, each block sorted by edge; where each of the others receives
    one transition they are one row gather, otherwise a zero fill and a scatter of the
    transitions sorted by target pair (sequential writes, nearby reads)."""
    B, K, L = St.shape[1], len(tick.edge), len(tick.inject_src)
    Y = St.new_empty(K, B)
    # S̃_{n-1}: S_{n-1, i_p} at the pairs (p, j_p), rows 0..L-1   (Eq. 16)
    torch.index_select(St, 0, tick.inject_src, out=Y[:L])
    if tick.gather is not None and tick.gather_edge is not None:  # one transition per pair
        torch.index_select(Zt, 0, tick.gather, out=Y[L:])
        Y[L:].mul_(w.index_select(0, tick.gather_edge).unsqueeze(1))
    else:
        Y[L:].zero_()
    step = max(1, CHUNK // max(B, 1))  # transitions in chunks: ≤ CHUNK numbers at once
    for start in range(0, len(tick.src_pair), step):  # + Σ_k Z_{n-1}[p, k] A_f[k, o]
        part = slice(start, start + step)
        moved = Zt.index_select(0, tick.src_pair[part])
        weights = w.index_select(0, tick.via[part]).unsqueeze(1)
        Y.index_add_(0, tick.dst_pair[part], moved.mul_(weights))
    if Dt is not None:
        Y.mul_(Dt.index_select(0, tick.col))  # · φ′(T_n)
    return Y


def _run_ticks(
    dyn: Dynamics, w: torch.Tensor, x: torch.Tensor, plan: tuple[_Tick, ...], defer: bool = False
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Ticks 1..T with the sensitivities of ``plan``'s ticks: (h_T, Z (K, B) of the plan's
    last tick, S_{T-1} (B, N), φ′(T_T) (B, F), φ′ of the tick before (B, F)); with ``defer``
    the plan's last tick leaves φ′ out (``_advance`` with ``Dt=None``)."""
    dev = w.device
    ticks = tick_edges(dyn.topology, dyn.ticks, dev)
    B, F = dyn.batch_size(x), dyn.n_free
    h = torch.zeros(B, F, dtype=w.dtype, device=dev)
    Zt = torch.zeros(0, B, dtype=w.dtype, device=dev)
    S_prev = D = D_before = h
    for n in range(1, dyn.ticks + 1):
        # tick n on the edges into R_n only (``tick_edges``): S_n is exact on R_n, which holds
        # every free source of the edges into R_{n+1} and every column of Z_n
        ids, index = ticks[n - 1]
        S_prev, D_before = joined_state(dyn.clamped_state(x, n), h), D
        w_n = w if ids is None else w.index_select(0, ids)
        h, D = dyn.activations(propagate(index, w_n, S_prev))  # Eq. 3
        if n <= len(plan):
            Dt = None if defer and n == len(plan) else D.T.contiguous()
            Zt = _advance(plan[n - 1].to(dev), Zt, S_prev.T, Dt, w)
    return h, Zt, S_prev, D, D_before


def sparse_fop_forward(
    dyn: Dynamics, w: torch.Tensor, x: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """(y, Z_T): the outputs and the sensitivities of the pairs of tick T, shape (B, K_T)
    (the transposed view of the pair-major (K_T, B) tensor the recursion stores)."""
    h, Zt, _, _, _ = _run_ticks(dyn, w, x, _plan(dyn.topology, dyn.ticks))
    return h[:, dyn.n_free - dyn.n_outputs :], Zt.T


def sparse_fop_carry(dyn: Dynamics, w: torch.Tensor, x: torch.Tensor) -> tuple[torch.Tensor, Any]:
    """(y, what :func:`sparse_fop_gradient` needs): ticks 1..T with the sensitivities Z_n of
    ticks 1..T−1 carried forward (Eq. 13), the last of them without its factor φ′(T_{T-1})
    (V_{T-1} = ∂T_{T-1}/∂w on its pairs; Z_{T-1} = φ′(T_{T-1}) ⊙ V_{T-1}); Z_T is left to
    the gradient, which contracts it with dE/dy at once."""
    plan = _carry_plan(dyn.topology, dyn.ticks)
    h, Vt, S_prev, D, D_before = _run_ticks(dyn, w, x, plan, defer=True)
    O = dyn.n_outputs
    return h[:, dyn.n_free - O :], (Vt, S_prev, D[:, dyn.n_free - O :], D_before)


def sparse_fop_gradient(
    dyn: Dynamics, w: torch.Tensor, saved: Any, grad_y: torch.Tensor
) -> torch.Tensor:
    r"""dE/dw (P,) from :func:`sparse_fop_carry`'s V_{T-1}, S_{T-1}, φ′(T_T), φ′(T_{T-1})
    and dE/dy.

    Algorithm 1's last line, dE/dw_p = Σ_b Σ_o dE/dy[b, o] Z_T[b, (p, o)], with Eq. 13's tick T
    written out (o runs over the outputs, e = dE/dy ⊙ φ′(T_T), Z_{T-1} = φ′(T_{T-1}) ⊙ V_{T-1}):

        dE/dw_p = Σ_b Σ_k V_{T-1}[b, (p, k)] φ′(T_{T-1})[b, k] (Σ_o A_f[k, o] e[b, o])
                  + Σ_b S_{T-1}[b, i_p] e[b, j_p]

    — the same sums reassociated: the inner sum is one product over the edges into the outputs,
    so tick T's pairs (p, o) are never stored (at T = 3 they are most of the work), and the
    factors φ′(T_{T-1})[b, k] (Σ_o …) are gathered once per pair instead of twice."""
    Vt, S_prev, D_out, D_before = saved
    C, F, O = dyn.n_clamped, dyn.n_free, dyn.n_outputs
    ids, index = tick_edges(dyn.topology, dyn.ticks, w.device)[-1]  # the edges into R_T
    w_T = w if ids is None else w.index_select(0, ids)
    e = grad_y.new_zeros(grad_y.shape[0], F, dtype=w.dtype)
    e[:, F - O :] = grad_y.to(w.dtype) * D_out
    last = edge_grad(index, S_prev, e)  # Σ_b S_{T-1}[b, i_p] e[b, j_p]: the injected term
    dw = last if ids is None else w.new_zeros(len(w)).index_add_(0, ids, last)
    plan = _carry_plan(dyn.topology, dyn.ticks)
    if plan:
        tick = plan[-1].to(w.device)
        back = transpose_product(index, w_T, e).T[C:]  # (F, B): Σ_o A_f[k, o] e[b, o]
        rows = back.mul_(D_before.T).index_select(0, tick.col)
        contributions = torch.bmm(Vt.unsqueeze(1), rows.unsqueeze(2)).flatten()
        dw.index_add_(0, tick.edge, contributions)
    return dw


def last_pairs(dyn: Dynamics) -> tuple[torch.Tensor, torch.Tensor]:
    """(edge p, output o) of every pair of tick T, the columns of ``sparse_fop_forward``'s Z:
    Z[b, k] = ∂y[b, o_k]/∂w_{p_k} (every other edge–output derivative is 0)."""
    last = _plan(dyn.topology, dyn.ticks)[-1]
    return last.edge, last.col - (dyn.n_free - dyn.n_outputs)


def sparse_fop_backward(dyn: Dynamics, Z: torch.Tensor, grad_y: torch.Tensor) -> torch.Tensor:
    """dE/dw (P,) from Z_T (B, K_T) and dE/dy (B, O): Algorithm 1's last line over the pairs,
    Σ_b Z_T[b, (p, o)] dE/dy[b, o] per pair (row-wise dot products on the pair-major Z_Tᵀ)."""
    last = _plan(dyn.topology, dyn.ticks)[-1].to(Z.device)
    first_output = dyn.n_free - dyn.n_outputs
    g = grad_y.to(Z.dtype).T.contiguous().index_select(0, last.col - first_output)
    Zt = Z.T
    contributions = torch.bmm(Zt.unsqueeze(1), g.unsqueeze(2)).flatten()
    out = torch.zeros(dyn.topology.n_edges, dtype=Z.dtype, device=Z.device)
    return out.index_add_(0, last.edge, contributions)


#: a gathered/scattered multiply-add costs about this many dense GEMM flops (cost model).
GATHER_COST = 8


def sparse_fop_bytes(dyn: Dynamics, batch: int, itemsize: int) -> int:
    """Bytes of one step of the engine (:func:`sparse_fop_carry` and :func:`sparse_fop_gradient`):
    at tick n < T, Z_{n-1} and Z_n with one gathered operand (φ′ or S̃ rows, or a chunk of
    transitions) per sample; in the gradient, V_{T-1} and its gathered factor rows; the plan,
    the states and the edge vectors."""
    K, M = pair_counts(dyn.topology, dyn.ticks)
    P, N = dyn.topology.n_edges, dyn.topology.n_neurons
    carried = K[:-1]  # ticks 1..T-1
    live = 0.0
    for n, k in enumerate(carried):
        previous = carried[n - 1] if n else 0.0
        moved = min(M[n], CHUNK / max(batch, 1))
        live = max(live, previous + 2 * k + moved)
    if carried:
        live = max(live, 2 * carried[-1])
    plan = 8 * (3 * sum(M[:-1]) + 6 * sum(carried))
    states = itemsize * batch * (6 * N) + itemsize * 4 * P  # S, T, h, D; w, its gathers, dw
    return int(itemsize * (batch * live + (carried[-1] if carried else 0)) + plan + states)


def sparse_fop_row_operations(dyn: Dynamics) -> float:
    """Row operations (a B-long row gathered, scaled or scattered) of one step, the cost
    model's unit: the forward products over the edges into R_n; per carried tick n < T its
    injections (the edges into R_n), transitions (gather and scale) and φ′ rows (all but
    tick T−1's); the contraction (gather and row dot) over tick T−1's pairs; tick T's
    per-edge gradient and transposed product over the edges into the outputs."""
    K, M = pair_counts(dyn.topology, dyn.ticks)
    into, _ = tick_edge_counts(dyn.topology, dyn.ticks)
    T = dyn.ticks
    ops = float(sum(into)) + 2 * into[-1]
    for n in range(T - 1):
        ops += into[n] + 2 * M[n] + (K[n] if n < T - 2 else 0.0)
    if T > 1:
        ops += 2 * K[T - 2]
    return ops


def sparse_fop_flops(dyn: Dynamics, batch: int) -> int:
    """Flop-equivalents: every row operation is B gathered multiply-adds (``GATHER_COST``)."""
    return int(GATHER_COST * 2 * batch * sparse_fop_row_operations(dyn))


class SparseFOPEngine(GradientEngine):
    """Sparse FOP on the dense layout: A is read at the edges, dE/dA written at the edges."""

    name = "fop_sparse"

    def forward(self, dyn: Dynamics, A: torch.Tensor, x: torch.Tensor):
        src, dst = dyn.topology.edges.to(A.device).unbind(1)
        w = A[src, dst]
        y, carried = sparse_fop_carry(dyn, w, x)
        return y, (w, carried)

    def backward(self, dyn, A, x, saved, grad_y):
        w, carried = saved
        dw = sparse_fop_gradient(dyn, w, carried, grad_y)
        dA = torch.zeros_like(A)
        src, dst = dyn.topology.edges.to(A.device).unbind(1)
        dA[src, dst] = dw.to(A.dtype)
        return dA, None

    def estimate_bytes(self, dyn, batch, itemsize):
        return sparse_fop_bytes(dyn, batch, itemsize) + 2 * itemsize * dyn.topology.n_neurons**2

    def estimate_flops(self, dyn, batch):
        return sparse_fop_flops(dyn, batch)


#: the one instance ``auto`` weighs (not in the registry of methods).
FOP_SPARSE = SparseFOPEngine()
