"""Tensor batch backpropagation, paper 003: the whole batch at once, bias as a leading 1.

Paper 003 writes a layer as the row-major product Net = Φ · V (§1.2): Φ is the (b, n+1) batch
whose rows are [1, inputs] — the bias enters as a leading 1 in the input — and V is the
(n+1, m) weight matrix whose FIRST row holds the biases.  meshprop stores W_h as paper 002 does
(N_h × (N_{h−1}+1), bias in the last column), so this module converts with :func:`to_paper` /
:func:`from_paper` and otherwise follows paper 003 literally (§2.2–2.5):

    ψ = σ(Net),   δ = ∂E/∂ψ ⊙ ∂ψ/∂Net  (the delta rule),   ∂E/∂V = Φᵀ · δ,
    ∂E/∂ψ_{previous layer} = δ · Vᵀ  (bias column dropped: nothing feeds the constant 1).

∂E/∂V = Φᵀ · δ is one inner tensor product over the batch axis: the sum over the batch of the
per-sample outer products, computed in a single contraction.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from ..activations import ACTIVATIONS

__all__ = ["TensorBatchCache", "backward", "forward", "from_paper", "to_paper"]


@dataclass
class TensorBatchCache:
    """Φ_h (the layer inputs, leading ones column when bias) and ∂ψ/∂Net for every layer."""

    phis: list[torch.Tensor]
    dpsi_dnet: list[torch.Tensor]


def to_paper(W: torch.Tensor, bias: bool) -> torch.Tensor:
    """V = paper 003's (n+1, m) weights: W_h transposed with the bias row first."""
    if not bias:
        return W.T
    return torch.cat([W[:, -1:], W[:, :-1]], dim=1).T


def from_paper(V: torch.Tensor, bias: bool) -> torch.Tensor:
    """Inverse of :func:`to_paper`: back to N_h × (N_{h−1}+1) with the bias last."""
    if not bias:
        return V.T
    return torch.cat([V[1:], V[:1]], dim=0).T


def _with_leading_ones(X: torch.Tensor) -> torch.Tensor:
    """[1 | X]: the bias input of paper 003 §1.2 in front of every batch row."""
    return torch.cat([torch.ones(X.shape[0], 1, dtype=X.dtype, device=X.device), X], dim=1)


def forward(
    weights: Sequence[torch.Tensor], x: torch.Tensor, activations: Sequence[str], bias: bool
) -> tuple[torch.Tensor, TensorBatchCache]:
    """Batch forward propagation (§1.2): Net = Φ · V, ψ = σ(Net), layer after layer."""
    psi = x
    cache = TensorBatchCache([], [])
    for W, name in zip(weights, activations, strict=True):
        phi = _with_leading_ones(psi) if bias else psi
        net = phi @ to_paper(W, bias)
        psi, dpsi = ACTIVATIONS[name](net)
        cache.phis.append(phi)
        cache.dpsi_dnet.append(dpsi)
    return psi, cache


def backward(
    weights: Sequence[torch.Tensor], cache: TensorBatchCache, grad_y: torch.Tensor, bias: bool
) -> tuple[list[torch.Tensor], torch.Tensor]:
    """Tensor batch backpropagation (§2.2–2.5) from ∂E/∂ψ of the output layer (b, m).

    Returns [∂E/∂W_1, …, ∂E/∂W_L] in meshprop's orientation and ∂E/∂x (b, N_0).
    """
    dE_dpsi = grad_y
    grads: list[torch.Tensor] = [None] * len(weights)  # type: ignore[list-item]
    for h in range(len(weights) - 1, -1, -1):
        V = to_paper(weights[h], bias)
        delta = dE_dpsi * cache.dpsi_dnet[h]  # the delta rule
        dE_dV = torch.tensordot(cache.phis[h], delta, dims=([0], [0]))  # Φᵀ·δ over the batch
        grads[h] = from_paper(dE_dV, bias)
        dE_dphi = delta @ V.T  # §2.5: ∂E/∂ψ = δ · Wᵀ
        dE_dpsi = dE_dphi[:, 1:] if bias else dE_dphi
    return grads, dE_dpsi
