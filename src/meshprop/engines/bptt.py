"""Backpropagation through time as the reciprocal network of paper 004.

The MNN is the block diagram  h_n = φ̂(c_{n-1} A_c + h_{n-1} A_f)  with a unit delay q⁻¹ on the
feedback h_{n-1}.  The six rules of paper 004 §2 turn it into its reciprocal network: the
multivariate gain A becomes Aᵀ (rule 4), φ becomes the gain φ′(T_n) (rule 3), the delay becomes
an advance (rule 5) so the recursion runs from n = T down to 1, and the output y is fed with
∂E/∂y (rule 6).  With δ_n = ∂E/∂h_n and e_n = ∂E/∂T_n (paper 004 §3.2, Eq. 4):

    δ_T = [0 … 0, ∂E/∂y],     e_n = δ_n ⊙ φ′(T_n),     δ_{n-1} = e_n A_fᵀ,
    ∂E/∂A[:, free] = Σ_n S_{n-1}ᵀ e_n,                  ∂E/∂x_{n-1} = e_n A_{x}ᵀ.

The forward pass stores S_{n-1} and φ′(T_n) for every tick: memory O(T·B·N).
"""

from __future__ import annotations

import torch

from ..dynamics import Dynamics
from .base import GradientEngine

__all__ = ["BPTTEngine"]


class BPTTEngine(GradientEngine):
    name = "bptt"
    provides_input_grad = True

    def forward(self, dyn: Dynamics, A: torch.Tensor, x: torch.Tensor):
        A_c, A_f = dyn.split(A)
        h = torch.zeros(dyn.batch_size(x), dyn.n_free, dtype=A.dtype, device=A.device)
        history = []
        for n in range(1, dyn.ticks + 1):
            c = dyn.clamped_state(x, n)
            S_prev = torch.cat([c, h], dim=1)
            h, D = dyn.activations(c @ A_c + h @ A_f)
            history.append((S_prev, D))
        return h[:, dyn.n_free - dyn.n_outputs :], history

    def backward(self, dyn, A, x, saved, grad_y):
        A_c, A_f = dyn.split(A)
        C, F, I = dyn.n_clamped, dyn.n_free, dyn.topology.n_inputs
        delta = torch.zeros(grad_y.shape[0], F, dtype=A.dtype, device=A.device)
        delta[:, F - dyn.n_outputs :] = grad_y
        grad_free_cols = torch.zeros(A.shape[0], F, dtype=A.dtype, device=A.device)
        grad_x = torch.zeros_like(x)
        for n in range(dyn.ticks, 0, -1):
            S_prev, D = saved[n - 1]
            e = delta * D  # through φ′ (rule 3)
            grad_free_cols += S_prev.T @ e  # ∂E/∂A accumulated at the gains
            x_grad = e @ A_c[:I].T  # outputs of the reciprocal network at the inputs
            if x.dim() == 3:
                grad_x[n - 1] = x_grad
            else:
                grad_x += x_grad
            delta = e @ A_f.T  # through Aᵀ and the advance (rules 4, 5)
        dA = torch.zeros_like(A)
        dA[:, C:] = grad_free_cols
        return dA * dyn.mask_like(A), grad_x

    def estimate_bytes(self, dyn, batch, itemsize):
        # the trajectory: S_{n-1} (B, N) and φ′(T_n) (B, F) per tick, plus the working tensors;
        # 2 KiB per tick covers the two small tensors' allocator and bookkeeping overhead
        # (measured with ``meshprop bench``: 4.6 MiB at 1000 ticks, batch 16, N = 37)
        T, N, F = dyn.ticks, dyn.topology.n_neurons, dyn.n_free
        return itemsize * (T * batch * (N + F) + 6 * batch * N + 6 * N * N) + 2048 * T

    def estimate_flops(self, dyn, batch):
        T, N, F, I = dyn.ticks, dyn.topology.n_neurons, dyn.n_free, dyn.topology.n_inputs
        return T * 2 * batch * (N * F + N * F + F * F + I * F)
