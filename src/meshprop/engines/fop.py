"""Forward-Only gradient Propagation (FOP): paper 000 Algorithm 1, Eq. 13 / Eq. 17.

The sensitivities Z_n[b, p, o] = ∂S_{n,o}/∂A_p are carried forward with the state, for the P
trainable edges p = (i_p, j_p) only and for the F free neurons o only (clamped neurons do not
depend on A).  Eq. 13 / 17 then reads, per tick,

    Z_n = φ′(T_n) ⊙ (Z_{n-1} A_f + S̃_{n-1}),      S̃_{n-1}[b, p, o] = S_{n-1, i_p} if o = j_p else 0

with A_f = A[free, free].  S̃ has one non-zero per edge, so it is added as a scatter, never
materialised.  Memory is O(B·P·F) whatever the number of ticks: no history is kept.  The error
gradient is the contraction of Algorithm 1's last line,

    dE/dA_p = Σ_b Σ_o dE/dy[b, o] · Z_T[b, p, o]       (o over the output neurons).
"""

from __future__ import annotations

import torch

from ..dynamics import Dynamics
from .base import GradientEngine

__all__ = ["FOPEngine", "edge_index"]


def edge_index(dyn: Dynamics, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """(source neuron i_p, free-neuron index j_p − C) of every trainable edge, row-major."""
    edges = dyn.topology.mask.nonzero()
    src = edges[:, 0].to(device)
    dst = (edges[:, 1] - dyn.n_clamped).to(device)
    return src, dst


class FOPEngine(GradientEngine):
    name = "fop"

    def forward(self, dyn: Dynamics, A: torch.Tensor, x: torch.Tensor):
        A_c, A_f = dyn.split(A)
        B, F, P = dyn.batch_size(x), dyn.n_free, dyn.topology.n_edges
        src, dst = edge_index(dyn, A.device)
        scatter = torch.arange(P, device=A.device) * F + dst  # flat (p, j_p) positions of S̃
        h = torch.zeros(B, F, dtype=A.dtype, device=A.device)
        Z = torch.zeros(B, P, F, dtype=A.dtype, device=A.device)
        for n in range(1, dyn.ticks + 1):
            c = dyn.clamped_state(x, n)
            S_prev = torch.cat([c, h], dim=1)
            h, D = dyn.activations(c @ A_c + h @ A_f)  # Eq. 3
            U = Z @ A_f  # ∂S_{n-1}/∂A · A  (Eq. 17, first term)
            U.view(B, P * F)[:, scatter] += S_prev[:, src]  # + S̃  (Eq. 16, built from S_{n-1})
            Z = U.mul_(D.unsqueeze(1))  # φ′(T_n) ⊙ (...)
        out = slice(F - dyn.n_outputs, F)
        return h[:, out], Z[:, :, out].contiguous()

    def backward(self, dyn, A, x, saved, grad_y):
        Z_out = saved  # (B, P, O)
        src, dst = edge_index(dyn, A.device)
        grad_edges = torch.einsum("bpo,bo->p", Z_out, grad_y.to(Z_out.dtype))
        dA = torch.zeros_like(A)
        dA[src, dst + dyn.n_clamped] = grad_edges
        return dA, None

    def estimate_bytes(self, dyn, batch, itemsize):
        P, F = dyn.topology.n_edges, dyn.n_free
        return 3 * batch * P * F * itemsize
