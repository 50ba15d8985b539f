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

import torch

from ..dynamics import Dynamics
from ..topology import Topology
from .base import GradientEngine
from .edge_ops import CHUNK, edge_index_of, propagate
from .reach import needed_columns

__all__ = [
    "FOP_SPARSE",
    "SparseFOPEngine",
    "expand_walks",
    "free_out_edges",
    "last_pairs",
    "pair_counts",
    "sparse_fop_backward",
    "sparse_fop_forward",
]

#: ticks above which the cost model stops counting walks and bounds the pairs by P·|R_n|.
WALK_TICKS = 12


@dataclass(frozen=True)
class _Tick:
    edge: torch.Tensor  # (K_n,) edge p of every pair (p, o)
    col: torch.Tensor  # (K_n,) free neuron o of every pair
    src_pair: torch.Tensor  # (M_n,) transitions: pair a of tick n-1 ...
    via: torch.Tensor  # (M_n,) ... through the edge e = k → o (index into the edge list) ...
    dst_pair: torch.Tensor  # (M_n,) ... into pair b of tick n
    inject_pair: torch.Tensor  # (L_n,) pairs (p, j_p): where S̃_{n-1} enters
    inject_edge: torch.Tensor  # (L_n,) their edge p

    def nbytes(self) -> int:
        return sum(t.numel() * t.element_size() for t in vars(self).values())

    def to(self, device: torch.device) -> _Tick:
        if self.edge.device == device:
            return self
        return _Tick(**{k: v.to(device) for k, v in vars(self).items()})


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
    C, F = topology.n_clamped, topology.n_free
    dst = topology.edges[:, 1] - C
    # the free block's edges grouped by source (k → o), with their index in the edge list
    out_ptr, out_dst, order = free_out_edges(topology)
    columns = needed_columns(topology, ticks)
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
        ticks_out.append(
            _Tick(
                edge=unique // F,
                col=unique % F,
                src_pair=a,
                via=via,
                dst_pair=inverse[: len(a)],
                inject_pair=inverse[len(a) :],
                inject_edge=inject,
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


def sparse_fop_forward(
    dyn: Dynamics, w: torch.Tensor, x: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """(y, Z_T): the outputs and the sensitivities of the pairs of tick T, shape (B, K_T)."""
    dev = w.device
    index = edge_index_of(dyn.topology, dev)
    plan = [t.to(dev) for t in _plan(dyn.topology, dyn.ticks)]
    B, F = dyn.batch_size(x), dyn.n_free
    h = torch.zeros(B, F, dtype=w.dtype, device=dev)
    Z = torch.zeros(B, 0, dtype=w.dtype, device=dev)
    for n, tick in enumerate(plan, start=1):
        S_prev = torch.cat([dyn.clamped_state(x, n), h], dim=1)
        h, D = dyn.activations(propagate(index, w, S_prev))  # Eq. 3
        Z_next = torch.zeros(B, len(tick.edge), dtype=w.dtype, device=dev)
        step = max(1, CHUNK // B)  # transitions in chunks: a temporary of ≤ CHUNK numbers
        for start in range(0, len(tick.src_pair), step):  # Σ_k Z_{n-1}[p, k] A_f[k, o]
            part = slice(start, start + step)
            moved = Z[:, tick.src_pair[part]].mul_(w[tick.via[part]])
            Z_next.index_add_(1, tick.dst_pair[part], moved)
        # + S̃_{n-1}: S_{n-1, i_p} at (p, j_p)   (Eq. 16)
        Z_next.index_add_(1, tick.inject_pair, S_prev[:, index.src[tick.inject_edge]])
        Z = Z_next.mul_(D[:, tick.col])  # · φ′(T_n)
    return h[:, F - dyn.n_outputs :], Z


def last_pairs(dyn: Dynamics) -> tuple[torch.Tensor, torch.Tensor]:
    """(edge p, output o) of every pair of tick T, the columns of ``sparse_fop_forward``'s Z:
    Z[b, k] = ∂y[b, o_k]/∂w_{p_k} (every other edge–output derivative is 0)."""
    last = _plan(dyn.topology, dyn.ticks)[-1]
    return last.edge, last.col - (dyn.n_free - dyn.n_outputs)


def sparse_fop_backward(dyn: Dynamics, Z: torch.Tensor, grad_y: torch.Tensor) -> torch.Tensor:
    """dE/dw (P,) from Z_T and dE/dy (B, O): Algorithm 1's last line over the pairs."""
    last = _plan(dyn.topology, dyn.ticks)[-1].to(Z.device)
    first_output = dyn.n_free - dyn.n_outputs
    g = grad_y.to(Z.dtype)[:, last.col - first_output]
    contributions = (Z * g).sum(dim=0)
    out = torch.zeros(dyn.topology.n_edges, dtype=Z.dtype, device=Z.device)
    return out.index_add_(0, last.edge, contributions)


#: a gathered/scattered multiply-add costs about this many dense GEMM flops (cost model).
GATHER_COST = 8


def sparse_fop_bytes(dyn: Dynamics, batch: int, itemsize: int) -> int:
    """Bytes of one step: Z_{n-1}, its gathered transitions and Z_n per sample, the plan."""
    K, M = pair_counts(dyn.topology, dyn.ticks)
    P, N = dyn.topology.n_edges, dyn.topology.n_neurons
    # tick n: Z_{n-1}, Z_n, φ′ on Z_n's columns, the injected S values (≤ P) and one chunk of
    # gathered transitions (≤ CHUNK numbers, with the weights of the chunk)
    live = max(K[n - 1] + 2 * K[n] + P for n in range(1, dyn.ticks)) if dyn.ticks > 1 else 0
    live = max(live, 3 * K[0] + P)
    moved = min(max(M), CHUNK / max(batch, 1)) if max(M) else 0.0
    plan = 8 * (3 * sum(M) + 4 * sum(K))
    states = itemsize * batch * (6 * N) + itemsize * 3 * P  # S, T, h, D; w and its permutation
    return int(itemsize * (batch * (live + moved) + 2 * moved + K[-1]) + plan + states)


def sparse_fop_flops(dyn: Dynamics, batch: int) -> int:
    K, M = pair_counts(dyn.topology, dyn.ticks)
    P = dyn.topology.n_edges
    return int(dyn.ticks * 2 * batch * P + GATHER_COST * batch * (2 * sum(M) + 3 * sum(K)))


class SparseFOPEngine(GradientEngine):
    """Sparse FOP on the dense layout: A is read at the edges, dE/dA written at the edges."""

    name = "fop_sparse"

    def forward(self, dyn: Dynamics, A: torch.Tensor, x: torch.Tensor):
        src, dst = dyn.topology.edges.to(A.device).unbind(1)
        return sparse_fop_forward(dyn, A[src, dst], x)

    def backward(self, dyn, A, x, saved, grad_y):
        dw = sparse_fop_backward(dyn, saved, grad_y)
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
