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
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import torch

from ..dynamics import Dynamics
from ..topology import Topology
from .base import GradientEngine
from .reach import needed_columns

__all__ = ["FactoredFOPEngine"]


@dataclass(frozen=True)
class _Rows:
    """The rows of the stacked J matrices at the last tick: (tick m, target neuron j) pairs."""

    flat: torch.Tensor  # (m − 1)·F + j for every row, in stacking order
    counts: tuple[int, ...]  # rows stacked after tick 1, 2, ..., T


@lru_cache(maxsize=32)
def _rows(topology: Topology, ticks: int) -> _Rows:
    F = topology.n_free
    columns = needed_columns(topology, ticks)
    flat = torch.cat([(m * F) + R for m, R in enumerate(columns)])
    counts = tuple(int(sum(len(R) for R in columns[: n + 1])) for n in range(ticks))
    return _Rows(flat, counts)


def _on(t: torch.Tensor, device: torch.device) -> torch.Tensor:
    return t if t.device == device else t.to(device)


class FactoredFOPEngine(GradientEngine):
    name = "fop_factored"
    provides_input_grad = True

    def forward(self, dyn: Dynamics, A: torch.Tensor, x: torch.Tensor):
        columns = needed_columns(dyn.topology, dyn.ticks)
        dev = A.device
        A_c, A_f = dyn.split(A)
        B, T, N, F = dyn.batch_size(x), dyn.ticks, dyn.topology.n_neurons, dyn.n_free
        history = torch.empty(B, T, N, dtype=A.dtype, device=dev)  # S_0 … S_{T-1}
        h = torch.zeros(B, F, dtype=A.dtype, device=dev)
        # J_{m→n} for m < n, stacked over m (rows), and J_{n→n} = D_n kept as its diagonal.
        J = torch.empty(B, 0, 0, dtype=A.dtype, device=dev)
        D_R = torch.empty(B, 0, dtype=A.dtype, device=dev)
        blocks: dict[tuple[int, int], torch.Tensor] = {}
        R_prev = None
        for n in range(1, T + 1):
            R = _on(columns[n - 1], dev)
            c = dyn.clamped_state(x, n)
            history[:, n - 1, : c.shape[1]] = c
            history[:, n - 1, c.shape[1] :] = h
            h, D = dyn.activations(c @ A_c + h @ A_f)  # Eq. 3
            if n > 1:  # J_{m→n} = J_{m→n-1} A_f D_n for every m < n
                key = (id(columns[n - 2]), id(columns[n - 1]))
                if key not in blocks:
                    blocks[key] = A_f[R_prev][:, R]
                block = blocks[key]
                # m = n-1: J_{n-1→n-1} = D_{n-1} is diagonal, so the product is elementwise
                newest = D_R.unsqueeze(2) * block
                if J.shape[1]:  # m < n-1: one GEMM over all samples and ticks; D_n after it
                    older = (J.reshape(-1, J.shape[2]) @ block).view(B, -1, len(R))
                    J = torch.cat([older, newest.expand(B, -1, -1)], dim=1)
                else:
                    J = newest.expand(B, -1, -1)
                J = J * D[:, R].unsqueeze(1)  # (J_{m→n-1} A_f) D_n, D_n per sample
            D_R, R_prev = D[:, R], R
        return h[:, F - dyn.n_outputs :], (history, J, D_R)

    def backward(self, dyn, A, x, saved, grad_y):
        history, J, D_T = saved  # (B, T, N), (B, rows before tick T, O), (B, O)
        rows = _rows(dyn.topology, dyn.ticks)
        B, T, N, F, C = (
            history.shape[0],
            dyn.ticks,
            dyn.topology.n_neurons,
            dyn.n_free,
            dyn.n_clamped,
        )
        g = grad_y.to(history.dtype)
        # e_m = J_{m→T}[:, out] · dE/dy on R_m; for m = T, J_{T→T} = D_T
        older = (J * g.unsqueeze(1)).sum(dim=2) if J.shape[1] else g.new_zeros(B, 0)
        e_rows = torch.cat([older, D_T * g], dim=1)
        e = torch.zeros(B, T * F, dtype=A.dtype, device=A.device)
        e.index_copy_(1, _on(rows.flat, A.device), e_rows)
        e = e.view(B * T, F)
        dA = torch.zeros_like(A)
        dA[:, C:] = history.reshape(B * T, N).T @ e  # Σ_b Σ_m S_{m-1}ᵀ e_m
        A_c, _ = dyn.split(A)
        I = dyn.topology.n_inputs
        grad_x = (e @ A_c[:I].T).view(B, T, I)  # ∂E/∂x of tick m = e_m A[inputs, free]ᵀ
        grad_x = grad_x.transpose(0, 1).contiguous() if x.dim() == 3 else grad_x.sum(dim=1)
        return dA * dyn.mask_like(A), grad_x

    def estimate_bytes(self, dyn, batch, itemsize):
        rows = _rows(dyn.topology, dyn.ticks).counts
        widths = [len(R) for R in needed_columns(dyn.topology, dyn.ticks)]
        N, F, T = dyn.topology.n_neurons, dyn.n_free, dyn.ticks
        J_peak = max(3 * rows[n] * widths[n] for n in range(T))  # J_{n-1}, its product, J_n
        return itemsize * batch * (J_peak + T * (N + 2 * F)) + itemsize * 5 * N * N

    def estimate_flops(self, dyn, batch):
        rows = _rows(dyn.topology, dyn.ticks).counts
        widths = [len(R) for R in needed_columns(dyn.topology, dyn.ticks)]
        N, F, T = dyn.topology.n_neurons, dyn.n_free, dyn.ticks
        flops = T * 2 * batch * N * F + 2 * batch * T * N * F  # states, then S^T e
        for n in range(1, T):
            flops += 2 * batch * rows[n - 1] * widths[n - 1] * widths[n] + batch * rows[n]
        return flops + 2 * batch * rows[-1] * widths[-1]
