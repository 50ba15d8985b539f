"""PyTorch autograd over the unrolled ticks: the computational-graph baseline of paper 000 §1.

The forward pass records every tick in a graph (memory O(T·B·N) plus the graph's bookkeeping);
the backward pass is ``torch.autograd.grad``.  φ is applied with plain PyTorch functions, never
with the hand-written derivatives the other engines use, so this engine is an independent oracle.
"""

from __future__ import annotations

import torch

from ..dynamics import Dynamics
from .base import GradientEngine

__all__ = ["AutogradEngine", "differentiable_output"]


def differentiable_output(dyn: Dynamics, A: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """y = S_T[outputs] built from differentiable torch operations (Eq. 3 unrolled)."""
    Am = A * dyn.mask_like(A)
    C = dyn.n_clamped
    A_c, A_f = Am[:C, C:], Am[C:, C:]
    h = torch.zeros(dyn.batch_size(x), dyn.n_free, dtype=A.dtype, device=A.device)
    for n in range(1, dyn.ticks + 1):
        h = dyn.activations.value(dyn.clamped_state(x, n) @ A_c + h @ A_f)
    return h[:, dyn.n_free - dyn.n_outputs :]


class AutogradEngine(GradientEngine):
    name = "autograd"
    provides_input_grad = True

    def forward(self, dyn: Dynamics, A: torch.Tensor, x: torch.Tensor):
        with torch.enable_grad():
            A_leaf = A.detach().requires_grad_(True)
            x_leaf = x.detach().requires_grad_(True)
            y = differentiable_output(dyn, A_leaf, x_leaf)
        return y.detach(), (A_leaf, x_leaf, y)

    def backward(self, dyn, A, x, saved, grad_y):
        A_leaf, x_leaf, y = saved
        dA, dx = torch.autograd.grad(y, (A_leaf, x_leaf), grad_y)
        return dA, dx

    def estimate_bytes(self, dyn, batch, itemsize):
        # every tick keeps T_n, h_n and the masked blocks alive in the graph
        T, N = dyn.ticks, dyn.topology.n_neurons
        return T * batch * N * itemsize * 6 + 4 * N * N * itemsize

    def estimate_flops(self, dyn, batch):
        T, N, F = dyn.ticks, dyn.topology.n_neurons, dyn.n_free
        return T * 2 * batch * N * F * 3
