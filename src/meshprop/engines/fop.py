"""Forward-Only gradient Propagation (FOP): paper 000 Algorithm 1, Eq. 13 / Eq. 17, made fast.

The sensitivities Z_n[b, p, o] = ∂S_{n,o}/∂A_p are carried forward with the state, for the P
trainable edges p = (i_p, j_p) only and for the free neurons o only (clamped neurons do not
depend on A).  Eq. 13 / 17 reads, per tick,

    Z_n = (Z_{n-1} A_f + S̃_{n-1}) D_n,     S̃_{n-1}[b, p, o] = S_{n-1, i_p} if o = j_p else 0,

with A_f = A[free, free] and D_n = diag φ′(T_n) (Eq. 15).  Memory is O(B·P·F) whatever the number
of ticks: no history is kept.  The error gradient is the contraction of Algorithm 1's last line,

    dE/dA_p = Σ_b Σ_o dE/dy[b, o] · Z_T[b, p, o]       (o over the output neurons).

How the recursion is organised for speed (every step is exact, the recursion is still Eq. 17):

- **Only the columns that matter.**  Tick n carries only the columns R_n of neurons from which a
  path of T − n edges reaches an output (``reach.needed_columns``); the last tick carries only
  the outputs.  Edges whose target is in no R_n have a sensitivity of exactly zero at the outputs
  and are not carried at all.
- **The first two ticks in closed form.**  Z_0 = 0, so Z_1 = S̃_0 D_1 has one non-zero per edge,
  u_p = φ′(T_1)_{j_p} · S_{0, i_p}, at column j_p: it is kept as the (B, P) matrix u.  Then
  Z_1 A_f is row j_p of A_f scaled by u_p, so Z_2 = (u ⊗ A_f[j_p, :] + S̃_1) D_2 costs one pass
  over B·P·F numbers instead of a B·P·F·F product.
- **One batched GEMM per later tick, D fused into it.**  (Z_{n-1} A_f) D_n = Z_{n-1} (A_f D_n), so
  each tick is ``bmm(Z_{n-1}, A_f[R_{n-1}, R_n] · φ′(T_n)[b])`` — a (B, P, |R_{n-1}|) by
  (B, |R_{n-1}|, |R_n|) product written into a preallocated buffer (two buffers, used in turn).
- **S̃ as a scatter.**  S̃_{n-1} D_n has one non-zero per edge, φ′(T_n)_{j_p} S_{n-1, i_p}; it is
  added with ``index_add_`` at the flat positions (p, j_p), never materialised.

Sparse products (``torch.sparse``) were measured against the dense batched GEMM on the benchmark
workloads and did not win at the densities measured (see docs/performance.md), so the GEMM stays
dense: the mask's sparsity already shrinks P, the number of rows.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from functools import lru_cache

import torch
import torch.nn.functional as fn

from ..dynamics import Dynamics
from ..topology import Topology
from .base import GradientEngine
from .reach import needed_columns

__all__ = ["FOPEngine", "carried_edges", "edge_index"]


def edge_index(dyn: Dynamics, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """(source neuron i_p, free-neuron index j_p − C) of every trainable edge, row-major."""
    edges = dyn.topology.edges
    src = edges[:, 0].to(device)
    dst = (edges[:, 1] - dyn.n_clamped).to(device)
    return src, dst


@dataclass(frozen=True)
class _TickPlan:
    """Where S̃_{n-1} D_n lands in tick n's carried columns R_n."""

    columns: torch.Tensor  # R_n, free-neuron indices
    edges: torch.Tensor  # carried edges whose target j_p is in R_n
    flat: torch.Tensor  # their flat positions p·|R_n| + position of j_p in R_n
    position: torch.Tensor  # position of j_p in R_n (for padded widths)


@dataclass(frozen=True)
class _EdgePlan:
    src: torch.Tensor  # (P,) source neuron of each carried edge
    dst: torch.Tensor  # (P,) target free-neuron index of each carried edge
    rows: torch.Tensor  # (P,) row-major index of each carried edge among all mask edges
    ticks: tuple[_TickPlan, ...]  # one per tick 1..T (shared objects where R_n repeats)


@lru_cache(maxsize=32)
def _edge_plan(topology: Topology, ticks: int) -> _EdgePlan:
    C, F = topology.n_clamped, topology.n_free
    edges = topology.edges
    src_all, dst_all = edges[:, 0], edges[:, 1] - C
    columns = needed_columns(topology, ticks)
    useful = torch.zeros(F, dtype=torch.bool)
    for R in columns:
        useful[R] = True
    rows = useful[dst_all].nonzero().flatten()
    src, dst = src_all[rows], dst_all[rows]
    plans: dict[int, _TickPlan] = {}
    per_tick = []
    for R in columns:
        if id(R) not in plans:
            position = torch.full((F,), -1, dtype=torch.long)
            position[R] = torch.arange(len(R))
            pos = position[dst]
            sel = (pos >= 0).nonzero().flatten()
            plans[id(R)] = _TickPlan(R, sel, sel * len(R) + pos[sel], pos[sel])
        per_tick.append(plans[id(R)])
    return _EdgePlan(src, dst, rows, tuple(per_tick))


def carried_edges(topology: Topology, ticks: int) -> torch.Tensor:
    """The row-major indices (into ``topology.edges``) of the edges whose sensitivities the
    engine carries, in the order of the P axis of its saved (B, P, O) sensitivities; every other
    edge has ∂y/∂A_p exactly 0 (``reach.needed_columns``)."""
    return _edge_plan(topology, ticks).rows


def _on(t: torch.Tensor, device: torch.device) -> torch.Tensor:
    return t if t.device == device else t.to(device)


def padded_width(columns: int) -> int:
    """The working width for ``columns`` carried columns: rounded up to a multiple of 16 when
    that adds at most 1/16 more columns (aligned rows let the GEMM kernel run full vectors;
    measured on the ``rate`` workload: 111 → 112 columns, bmm 117 → 127 GFLOP/s)."""
    wide = -(-columns // 16) * 16
    return wide if 16 * (wide - columns) <= columns else columns


def _carried_widths(dyn: Dynamics) -> tuple[int, list[int]]:
    """(P carried edges, [|R_1|, ..., |R_T|])."""
    plan = _edge_plan(dyn.topology, dyn.ticks)
    return len(plan.rows), [len(t.columns) for t in plan.ticks]


class FOPEngine(GradientEngine):
    name = "fop"

    def __init__(self) -> None:
        self._buffers: dict[tuple[torch.dtype, torch.device, int], torch.Tensor] = {}

    def forward(self, dyn: Dynamics, A: torch.Tensor, x: torch.Tensor):
        plan = _edge_plan(dyn.topology, dyn.ticks)
        dev = A.device
        A_c, A_f = dyn.split(A)
        B, T, F = dyn.batch_size(x), dyn.ticks, dyn.n_free
        src, dst = _on(plan.src, dev), _on(plan.dst, dev)
        P = len(src)

        # tick 1: h_0 = 0, Z_0 = 0  →  Z_1 = S̃_0 D_1, one non-zero per edge: u (B, P)
        c = dyn.clamped_state(x, 1)
        S_prev = torch.cat([c, torch.zeros(B, F, dtype=A.dtype, device=dev)], dim=1)
        h, D = dyn.activations(c @ A_c)
        u = D[:, dst] * S_prev[:, src]
        if T == 1:
            tick = plan.ticks[0]
            Z = torch.zeros(B, P * len(tick.columns), dtype=A.dtype, device=dev)
            Z.index_add_(1, _on(tick.flat, dev), u[:, _on(tick.edges, dev)])
            # explicit width: with no carried edge (P = 0) a -1 would be ambiguous
            return h[:, F - dyn.n_outputs :], Z.view(B, P, len(tick.columns))

        # working width of tick n: |R_n| (padded, see padded_width); the last tick exactly O
        width = [padded_width(len(t.columns)) for t in plan.ticks[:-1]] + [dyn.n_outputs]
        size = B * P * max(width[1:-1], default=0)
        buffers = self._workspace(size, min(2, T - 2), A.dtype, dev)
        blocks: dict[tuple[int, int], torch.Tensor] = {}
        flats: dict[int, torch.Tensor] = {}
        previous = plan.ticks[0]
        for n in range(2, T + 1):
            tick, W, W_prev = plan.ticks[n - 1], width[n - 1], width[n - 2]
            R = _on(tick.columns, dev)
            c = dyn.clamped_state(x, n)
            S_prev = torch.cat([c, h], dim=1)
            h, D = dyn.activations(c @ A_c + h @ A_f)  # Eq. 3
            D_R = fn.pad(D[:, R], (0, W - len(R)))  # φ′(T_n) on the carried columns, 0 on pads
            if n == T:  # the last tick writes the saved (B, P, O) outputs, fresh memory
                Z_next = torch.empty(B, P, W, dtype=A.dtype, device=dev)
            else:  # earlier ticks use the two cached buffers in turn
                Z_next = buffers[n % len(buffers)][: B * P * W].view(B, P, W)
            if n == 2:  # Z_1 A_f D_2: row j_p of A_f scaled by u_p, times φ′(T_2)
                rows_of_A = fn.pad(A_f[:, R][dst], (0, W - len(R)))
                torch.mul(u.unsqueeze(2), rows_of_A, out=Z_next)
                Z_next.mul_(D_R.unsqueeze(1))
            else:  # Eq. 17 first term with D fused: Z_{n-1} (A_f[R_{n-1}, R_n] φ′(T_n))
                key = (id(previous), id(tick))
                if key not in blocks:
                    block = A_f[_on(previous.columns, dev)][:, R]
                    pads = (0, W - len(R), 0, W_prev - len(previous.columns))
                    blocks[key] = fn.pad(block, pads)  # zero rows/columns on the pads
                torch.bmm(Z, blocks[key].unsqueeze(0) * D_R.unsqueeze(1), out=Z_next)
            # + S̃_{n-1} D_n: one entry per edge, φ′(T_n)_{j_p} S_{n-1, i_p}   (Eq. 13, 16)
            sel = _on(tick.edges, dev)
            if len(R) == W:
                flat = _on(tick.flat, dev)
            else:
                if id(tick) not in flats:
                    flats[id(tick)] = sel * W + _on(tick.position, dev)
                flat = flats[id(tick)]
            values = D[:, dst[sel]] * S_prev[:, src[sel]]
            Z_next.view(B, -1).index_add_(1, flat, values)
            Z, previous = Z_next, tick
        return h[:, F - dyn.n_outputs :], Z

    def _workspace(
        self, size: int, count: int, dtype: torch.dtype, device: torch.device
    ) -> list[torch.Tensor]:
        """``count`` flat working buffers of ``size`` numbers each, kept between calls.

        Reusing them spares the operating system from zeroing fresh pages every step (profiled:
        on the paper config that page-faulting cost more than the arithmetic).  Call
        :meth:`release` to hand the memory back.
        """
        key = (dtype, device, threading.get_ident())  # one workspace per thread
        cached = self._buffers.get(key)
        if cached is None or cached.numel() < count * size:
            self._buffers.pop(key, None)
            cached = torch.empty(count * size, dtype=dtype, device=device)
            self._buffers[key] = cached
        return [cached[k * size : (k + 1) * size] for k in range(count)]

    def release(self) -> None:
        """Free the cached working buffers (of every thread)."""
        self._buffers.clear()

    def backward(self, dyn, A, x, saved, grad_y):
        Z_out = saved  # (B, P, O): carried edges only
        plan = _edge_plan(dyn.topology, dyn.ticks)
        g = grad_y.to(Z_out.dtype).unsqueeze(2)
        grad_edges = torch.bmm(Z_out, g).sum(dim=0).squeeze(1)
        dA = torch.zeros_like(A)
        src, dst = _on(plan.src, A.device), _on(plan.dst, A.device)
        dA[src, dst + dyn.n_clamped] = grad_edges.to(A.dtype)
        return dA, None

    def estimate_bytes(self, dyn, batch, itemsize):
        P, widths = _carried_widths(dyn)
        wide = max((padded_width(w) for w in widths[1:-1]), default=0)  # two cached buffers
        carried = min(2, dyn.ticks - 2) * wide + dyn.n_outputs + 4  # + saved outputs, tick 1
        # + the masked A and its blocks (Dynamics.split) and dE/dA: three N×N tensors
        return itemsize * batch * P * carried + 3 * itemsize * dyn.topology.n_neurons**2

    def estimate_flops(self, dyn, batch):
        P, widths = _carried_widths(dyn)
        N, F = dyn.topology.n_neurons, dyn.n_free
        flops = dyn.ticks * 2 * batch * N * F + 4 * batch * P  # states and tick 1
        if dyn.ticks >= 2:
            flops += 3 * batch * P * widths[1]
        for n in range(3, dyn.ticks + 1):
            flops += 2 * batch * P * widths[n - 2] * widths[n - 1] + 2 * batch * P
        return flops + 2 * batch * P * widths[-1]
