r"""Factored forward-only gradients: Eq. 13 of paper 000 unrolled, carried forward with the state.

Derivation.  With D_n = diag φ′(T_n) and the free block A_f = A[free, free], Eq. 13 / 17 for one
weight A_{i,j} reads (row vectors over the free neurons o)

    ∂S_n/∂A_{i,j} = (∂S_{n-1}/∂A_{i,j} · A_f + S̃^{(i,j)}_{n-1}) D_n,
    S̃^{(i,j)}_{n-1} = S_{n-1,i} e_j                          (one non-zero, Eq. 16, from S_{n-1}).

Starting from ∂S_0/∂A = 0 and unrolling n times,

    ∂S_n/∂A_{i,j} = Σ_{m=1}^{n} S_{m-1,i} · e_j D_m A_f D_{m+1} A_f ⋯ A_f D_n,

so, component-wise,

    ∂S_{n,o}/∂A_{i,j} = Σ_{m≤n} S_{m-1,i} · J_{m→n}[j, o],
    J_{m→n} = D_m A_f D_{m+1} ⋯ A_f D_n,      J_{n→n} = D_n,      J_{m→n} = J_{m→n-1} A_f D_n.

The sensitivity tensor of Eq. 14 (P·F numbers per sample) factors into the state history
S_0 … S_{n-1} (n·N numbers) and the n matrices J_{m→n} (n·F² numbers).  Both are carried
*forward*: at tick n every J_{m→n-1} is multiplied on the right by A_f — one GEMM over all
samples and all m at once; the per-sample D_n then scales its columns, since
(J A_f) D_n = J (A_f D_n) — and J_{n→n} = D_n is appended, kept as a vector until the next tick
turns it into the product D_n A_f D_{n+1}.  Nothing runs backward in time; the cost is
O(n·F³) per tick and the memory O(n·(F² + N)) per sample — far below ``fop``'s O(P·F) per tick
and O(P·F²) work when the number of ticks is small compared with the number of edges, and
growing with the ticks where ``fop`` stays flat (``method="auto"`` weighs the two).

The error gradient is Algorithm 1's last line with the factored sensitivities:

    dE/dA_{i,j} = Σ_b Σ_o dE/dy_{b,o} ∂S_{T,o}/∂A_{i,j}
                = Σ_b Σ_m S_{m-1,b,i} · e_{m,b,j},        e_m = J_{m→T}[:, out] · dE/dy,

one (N × B·T) by (B·T × F) product, masked to the edges.  e_m = ∂E/∂T_m, so the input gradient
comes for free: ∂E/∂x_m = e_m A[inputs, free]ᵀ (x_m = the input of tick m).

As in ``fop``, tick n carries only the columns R_n that can still reach an output
(``reach.needed_columns``), so J_{m→n} is |R_m| × |R_n| and the last tick carries outputs only.

How the carry is organised (exact: the same products, regrouped; float64 1e-10 against autograd
in the tests).  On the paper workloads (≈ 100 neurons, batch 32, 2–3 ticks) a step is a few
MFLOP, so it costs what its few dozen tensor operations cost to launch; the engine is written to
launch few of them and to carry the smallest per-sample matrices Eq. 13 allows:

- **Diagonal factors stay vectors.**  J_{m→n} = D_m K_{m→n} with K_{m→n} = A_f D_{m+1} ⋯ A_f D_n
  (K_{m→m} = I): the row factor D_m = φ′(T_m)[R_m] is kept as a vector and applied in the last
  line, e_m = D_m ⊙ (K_{m→T} dE/dy); D_T is applied to dE/dy there too,
  Σ_o K[j, o] D_T[o] g[o] being one sum whichever way its factors are grouped.
- **The carry is one tick ahead.**  The next tick multiplies K_{m→n} by the constant block
  A_f[R_n, R_{n+1}] in any case (Eq. 17: Z_n A_f), so the engine carries
  Q_{m→n} = K_{m→n} A_f[R_n, R_{n+1}] — |R_m| × |R_{n+1}| per sample — with

      Q_{n→n} = A_f[R_n, R_{n+1}]   (weights only: nothing per sample),
      Q_{m→n} = Q_{m→n-1} D_n A_f[R_n, R_{n+1}],      K_{m→T} = Q_{m→T-1} D_T.

  Every quantity at tick n still comes from ticks ≤ n and the weights; nothing runs backward.
  At 3 ticks (the paper's) the only per-sample matrix is Q_{1→2} = A_f D_2 A_f[·, out]
  (|R_1| × O), made by one batched product from the (|R_2| × O) block D_2 A_f[·, out]: the
  |R_1| × |R_2| matrix J_{1→2} is never formed.  At 2 ticks the carry is the weights alone.
- **Samples innermost.**  States are kept column-wise, S (N, T, B) with S[:, m] = S_mᵀ, and the
  carried Q as Qᵀ (|R_{n+1}|, rows, B), so each tick's update of every older row is one product
  A_f[R_n, R_{n+1}]ᵀ · Qᵀ (the row-major (B·rows × |R_n|)·(|R_n| × O) product ran at 9 GFLOP/s
  for O = 10 outputs here, the transposed one at 43), and φ′ scalings broadcast along the
  contiguous sample axis.
- **One plan per topology.**  The column sets become slices where they are contiguous (hidden
  and output neurons are numbered in blocks); the masked free columns of A, the rows' places in
  e and the row offsets are computed once per (topology, ticks) and per (dtype, device).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import lru_cache

import torch
import torch.nn.functional as fn

from ..activations import ACTIVATIONS
from ..dynamics import Dynamics
from ..topology import Topology
from .base import GradientEngine
from .reach import needed_columns

__all__ = ["FactoredFOPEngine"]

#: a set of free neurons: a slice where the indices are consecutive, else an index tensor
Columns = slice | torch.Tensor


def _as_columns(R: torch.Tensor) -> Columns:
    """R (sorted, distinct) as a slice when its indices are consecutive: a view, not a gather."""
    if len(R) == 0:
        return slice(0, 0)
    first, last = int(R[0]), int(R[-1])
    return slice(first, last + 1) if last - first + 1 == len(R) else R


def _take(t: torch.Tensor, R: Columns) -> torch.Tensor:
    """t[R] along the first axis."""
    return t[R] if isinstance(R, slice) else t.index_select(0, R)


def _block(A_f: torch.Tensor, R_from: Columns, R_to: Columns) -> torch.Tensor:
    """A_f[R_from, R_to]."""
    rows = _take(A_f, R_from)
    return rows[:, R_to] if isinstance(R_to, slice) else rows.index_select(1, R_to)


@dataclass(frozen=True)
class _Local:
    """The plan's tensors on one (device, dtype)."""

    columns: tuple[Columns, ...]  # R_1 … R_T
    mask: torch.Tensor  # (N, F): the mask of A[:, free]
    rows_flat: torch.Tensor  # (rows,): row j·T + m − 1 of eᵀ (F·T, B) for row (m, j), m < T


@dataclass
class _Plan:
    """What depends on (topology, ticks) only: the column sets R_n and the rows of the carry."""

    topology: Topology
    clamped: int
    free: int
    inputs: int
    outputs: int
    columns: tuple[torch.Tensor, ...]
    widths: tuple[int, ...]  # |R_1| … |R_T|
    offsets: tuple[int, ...]  # |R_1| + … + |R_{n-1}| at index n − 1 (n = 1 … T)
    rows_flat: torch.Tensor
    _local: dict[tuple[torch.device, torch.dtype], _Local] = field(default_factory=dict)

    def on(self, device: torch.device, dtype: torch.dtype) -> _Local:
        local = self._local.get((device, dtype))
        if local is None:
            columns = tuple(
                c if isinstance(c, slice) else c.to(device) for c in map(_as_columns, self.columns)
            )
            mask = self.topology.dense_mask()[:, self.clamped :].to(device=device, dtype=dtype)
            local = _Local(columns, mask, self.rows_flat.to(device))
            self._local[(device, dtype)] = local
        return local


@lru_cache(maxsize=32)
def _plan(topology: Topology, ticks: int) -> _Plan:
    columns = needed_columns(topology, ticks)
    widths = tuple(len(R) for R in columns)
    offsets = tuple(sum(widths[:n]) for n in range(ticks))
    rows_flat = torch.cat(
        [R * ticks + m for m, R in enumerate(columns[:-1])] + [torch.zeros(0, dtype=torch.long)]
    )
    counts = (topology.n_clamped, topology.n_free, topology.n_inputs, topology.n_outputs)
    return _Plan(topology, *counts, columns, widths, offsets, rows_flat)


class FactoredFOPEngine(GradientEngine):
    name = "fop_factored"
    provides_input_grad = True

    def forward(self, dyn: Dynamics, A: torch.Tensor, x: torch.Tensor):
        plan = _plan(dyn.topology, dyn.ticks)
        local = plan.on(A.device, A.dtype)
        R, widths, offsets = local.columns, plan.widths, plan.offsets
        T, C, F, I, B = dyn.ticks, plan.clamped, plan.free, plan.inputs, x.shape[-2]
        W = (A.detach() if A.requires_grad else A)[:, C:] * local.mask  # masked A[:, free]
        W_t, A_f = W.T, W[C:]
        # S[:, m] = S_mᵀ for m = 0 … T−1: inputs, bias, then h_m (h_0 = 0)
        S = torch.empty(C + F, T, B, dtype=A.dtype, device=A.device)
        S[:I].copy_(x.T.unsqueeze(1) if x.dim() == 2 else x.permute(2, 0, 1))
        states = S.unbind(1)
        if C > I:
            S[I].fill_(1.0)
        states[0][C:].zero_()
        uniform = dyn.activations.uniform
        phi = ACTIVATIONS.get(uniform or "")  # elementwise: any shape
        D_rows: list[torch.Tensor] = []  # φ′(T_m)[R_m], m < T
        Q = None  # Qᵀ_{m→n} for m < n, shape (|R_{n+1}|, rows, B)
        A_next = A_f  # A_f[R_n, R_{n+1}]
        h = D = A_f
        O = plan.outputs
        out_t = W_t[F - O :]  # the last tick needs the outputs only (y, φ′(T_T)[out])
        for n in range(1, T + 1):
            if uniform == "relu":  # T_nᵀ (F, B) written where h_n goes, φ in place (Eq. 3)
                if n < T:
                    h = torch.mm(W_t, states[n - 1], out=states[n][C:]).relu_()
                else:
                    h = torch.mm(out_t, states[n - 1]).relu_()
                D = torch.sign(h)  # relu′: 1 where T_n > 0, else 0 (activations._relu)
            elif phi is not None:
                h, D = phi(torch.mm(W_t if n < T else out_t, states[n - 1]))
            else:  # φ̂ indexes its neurons on the last axis
                h, D = dyn.activations(torch.mm(W_t, states[n - 1]).T)
                h, D = h.T, D.T
            if n == T:
                break
            if uniform != "relu":
                states[n][C:] = h
            D_R = _take(D, R[n - 1])
            D_rows.append(D_R)
            if n == 1:
                A_next = _block(A_f, R[0], R[1])
                continue
            # Q_{m→n} = Q_{m→n-1} D_n A_f[R_n, R_{n+1}];  Q_{n-1→n-1} = A_prev
            A_prev, A_next = A_next, _block(A_f, R[n - 1], R[n])
            older = offsets[n - 2]
            if not older:  # only Q_{n-1→n} = A_prev · (D_n A_next): one product, a (j, o, b) view
                width = widths[n] * B
                scaled = (A_next.unsqueeze(2) * D_R.unsqueeze(1)).view(widths[n - 1], width)
                Q = torch.mm(A_prev, scaled).view(widths[n - 2], widths[n], B).transpose(0, 1)
                continue
            assert Q is not None
            rows = offsets[n - 1]
            X = torch.empty(widths[n - 1], rows, B, dtype=A.dtype, device=A.device)
            torch.mul(Q, D_R.unsqueeze(1), out=X[:, :older])
            torch.mul(A_prev.T.unsqueeze(2), D_R.unsqueeze(1), out=X[:, older:])
            Q = torch.mm(A_next.T, X.view(widths[n - 1], rows * B)).view(widths[n], rows, B)
            del X  # not kept alive into the next tick
        if phi is None:  # mixed φ̂ ran on every free neuron at the last tick
            h, D = h[F - O :], D[F - O :]
        return h.T, (S, Q, D_rows, D, W, plan, local)

    def backward(self, dyn, A, x, saved, grad_y):
        S, Q, D_rows, D_out, W, plan, local = saved  # see forward; D_out = φ′(T_T)[out] (O, B)
        N, T, B = S.shape
        C, F, O = plan.clamped, plan.free, plan.outputs
        # eᵀ: e[:, m−1] = e_mᵀ = ∂E/∂T_m;  e_T = D_T dE/dy,
        # e_m = D_m ⊙ K_{m→T} D_T dE/dy = D_m ⊙ Q_{m→T-1} e_T   (Algorithm 1's last line)
        e = torch.zeros(F, T, B, dtype=S.dtype, device=S.device)
        e_T = torch.mul(D_out, grad_y.to(S.dtype).T, out=e[F - O :, T - 1])
        if T > 1:
            rows, older = plan.offsets[T - 1], plan.offsets[T - 2]
            e_rows = torch.empty(rows, B, dtype=S.dtype, device=S.device)
            if older:
                assert Q is not None
                torch.sum(Q * e_T.unsqueeze(1), 0, out=e_rows[:older])
            A_last = _block(W[C:], local.columns[T - 2], local.columns[T - 1])
            torch.mm(A_last, e_T, out=e_rows[older:])
            e_rows.mul_(torch.cat(D_rows) if T > 2 else D_rows[0])
            e.view(F * T, B).index_copy_(0, local.rows_flat, e_rows)
        e_flat = e.view(F, T * B)
        # dE/dA[:, free] = Σ_b Σ_m S_{m-1}ᵀ e_m, masked to the edges
        dA = fn.pad(torch.mm(S.view(N, T * B), e_flat.T).mul_(local.mask), (C, 0))
        W_in = W[: plan.inputs]  # ∂E/∂x_m = e_m A[inputs, free]ᵀ
        if x.dim() == 2:
            return dA, torch.mm(W_in, e.sum(1)).T
        return dA, torch.mm(W_in, e_flat).view(-1, T, B).permute(1, 2, 0)

    def estimate_bytes(self, dyn, batch, itemsize):
        plan = _plan(dyn.topology, dyn.ticks)
        w, off = plan.widths, plan.offsets
        N, F, T, I = dyn.topology.n_neurons, dyn.n_free, dyn.ticks, dyn.topology.n_inputs
        # carried Q (|R_{n+1}| × rows) of ticks n − 1 and n, the scaled copy X (|R_n| × rows),
        # and Q ⊙ e_T in the backward
        carry = [2 * w[-1] * off[-1]]
        if T > 2:  # tick 2: D_2 A_f[R_2, R_3] and Q
            carry.append(w[2] * (w[1] + w[0]))
        carry += [w[n] * off[n - 1] + w[n - 1] * (off[n - 1] + off[n - 2]) for n in range(3, T)]
        # S, eᵀ, the input gradient, φ′ and φ of every tick (T·(N + 3F + I) per sample), the
        # rows of e and their φ′ (2·rows), t, φ and φ′ of a tick; W, the mask and S·eᵀ (N×F
        # each), dE/dA (N×N)
        per_sample = max(carry) + T * (N + 3 * F + I) + 2 * off[-1] + 6 * F
        return itemsize * (batch * per_sample + 3 * N * F + N * N)

    def estimate_flops(self, dyn, batch):
        plan = _plan(dyn.topology, dyn.ticks)
        w, off = plan.widths, plan.offsets
        N, F, T = dyn.topology.n_neurons, dyn.n_free, dyn.ticks
        O = dyn.n_outputs  # states (outputs only at the last tick), then S eᵀ
        flops = 2 * batch * N * ((T - 1) * F + O) + 2 * batch * T * N * F
        for n in range(2, T):  # Q_{m→n} = Q_{m→n-1} D_n A_f[R_n, R_{n+1}]
            flops += 2 * batch * off[n - 1] * w[n - 1] * w[n] + batch * off[n - 1] * w[n - 1]
        return flops + 2 * batch * off[-1] * w[-1]  # the last line
