"""Algorithm 1 of paper 000 written literally in NumPy: the readable, slow baseline.

Nothing is optimised.  The full sensitivity tensor ∂S/∂A ∈ R^{N×N×N} (Eq. 14; first index the
source i, second the target j, third the differentiated neuron o) is kept per sample, and S̃
(Eq. 16) is materialised every tick.  Following Eq. 13, S̃ is built from the previous state
S_{n-1}:

    S ← clamp(S, x_n);  t ← S A;  ∂S/∂A ← φ′(t) ⊙ (∂S/∂A · A + S̃);  S ← φ(t)      (Eq. 17)

Clamped neurons (inputs, bias) are overwritten before every tick, so their φ′ is taken as 0.
The error gradient is  dE/dA = Σ_o dE/dy_o ∂S_o/∂A  (Algorithm 1, last line), masked.
Memory O(B·N³), time O(B·N⁴) per tick.
"""

from __future__ import annotations

import numpy as np
import torch

from ..dynamics import Dynamics
from .base import GradientEngine

__all__ = ["ReferenceEngine"]


class ReferenceEngine(GradientEngine):
    name = "reference"

    def forward(self, dyn: Dynamics, A: torch.Tensor, x: torch.Tensor):
        topo = dyn.topology
        N, I, C = topo.n_neurons, topo.n_inputs, topo.n_clamped
        A_np = (A * dyn.mask_like(A)).detach().cpu().numpy()
        x_np = x.detach().cpu().numpy()
        B = x_np.shape[-2]
        dtype = A_np.dtype
        S = np.zeros((B, N), dtype=dtype)
        dSdA = np.zeros((B, N, N, N), dtype=dtype)
        diagonal = np.arange(N)
        for n in range(1, dyn.ticks + 1):
            S[:, :I] = x_np[n - 1] if x_np.ndim == 3 else x_np  # S[0:i] ← x
            if topo.bias:
                S[:, I] = 1.0
            t = S @ A_np
            S_tilde = np.zeros((B, N, N, N), dtype=dtype)
            S_tilde[:, :, diagonal, diagonal] = S[:, :, None]  # S̃[i, j, j] = S_{n-1, i}
            dphi = np.zeros((B, N), dtype=dtype)
            phi = np.zeros((B, N), dtype=dtype)
            phi[:, C:], dphi[:, C:] = dyn.activations.numpy(t[:, C:])
            dSdA = dphi[:, None, None, :] * (dSdA @ A_np + S_tilde)
            S = phi
        out = topo.output_slice
        y = torch.from_numpy(S[:, out].copy()).to(A.device)
        return y, dSdA[..., out]

    def backward(self, dyn, A, x, saved, grad_y):
        g = grad_y.detach().cpu().numpy().astype(saved.dtype)
        dEdA = np.einsum("bijo,bo->ij", saved, g)
        dA = torch.from_numpy(dEdA).to(device=A.device, dtype=A.dtype)
        return dA * dyn.mask_like(A), None

    def estimate_bytes(self, dyn, batch, itemsize):
        # ∂S/∂A, S̃, the product ∂S/∂A·A, the sum and NumPy's temporaries: six (B, N, N, N)
        # arrays at most (measured: about 5.2 at N = 20)
        N = dyn.topology.n_neurons
        return 6 * batch * N**3 * itemsize + 4 * N * N * itemsize

    def estimate_flops(self, dyn, batch):
        N = dyn.topology.n_neurons
        return dyn.ticks * batch * (2 * N**4 + 4 * N**3) + 2 * batch * N**3
