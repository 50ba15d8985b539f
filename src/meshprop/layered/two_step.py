"""The two-step rule of paper 002: forward Y = W X, X = σ(Y); backward δ_up, δ_down, δ_W.

Vectors are columns as in the paper (§2): a batch of B samples is the N_h × B matrix whose
columns are the samples, so every formula below is the paper's formula applied to B columns at
once and δ_W = δ_down (X^{h−1})ᵀ sums over the batch by the matrix product itself.

With the bias as the last column of W_h (Remark 1) every X^{h−1} fed to W_h carries a last row of
ones, and the backward step uses W♯ — W without its last column — because ∂(W X)/∂X = W♯ᵀ when
X's last entry is the constant 1 (Eq. 13, Eq. 25).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from ..activations import ACTIVATIONS

__all__ = ["TwoStepCache", "backward", "forward"]


@dataclass
class TwoStepCache:
    """What the backward rule needs: X^{h−1} as fed to W_h (ones row included when bias) and
    σ′(Y^h), for h = 1..L, in column form."""

    inputs: list[torch.Tensor]
    derivatives: list[torch.Tensor]


def _with_ones_row(X: torch.Tensor) -> torch.Tensor:
    """[X; 1ᵀ]: Remark 1's formal bias neuron appended as the last row."""
    return torch.cat([X, torch.ones(1, X.shape[1], dtype=X.dtype, device=X.device)], dim=0)


def forward(
    weights: Sequence[torch.Tensor], x: torch.Tensor, activations: Sequence[str], bias: bool
) -> tuple[torch.Tensor, TwoStepCache]:
    """The two-step forward rule, Eq. (1)/(20): X⁰ = x, Y^h = W_h X^{h−1}, X^h = σ_h(Y^h).

    ``x`` is (B, N_0) (one sample per row, PyTorch's convention); the rule itself runs on its
    transpose.  Returns the output (B, N_L) and the cache for :func:`backward`.
    """
    X = x.T
    cache = TwoStepCache([], [])
    for W, name in zip(weights, activations, strict=True):
        X_in = _with_ones_row(X) if bias else X
        Y = W @ X_in  # step 1: Y^h = W_h X^{h−1}
        X, dsigma = ACTIVATIONS[name](Y)  # step 2: X^h = σ(Y^h), with σ′(Y^h) kept
        cache.inputs.append(X_in)
        cache.derivatives.append(dsigma)
    return X.T, cache


def backward(
    weights: Sequence[torch.Tensor], cache: TwoStepCache, grad_y: torch.Tensor, bias: bool
) -> tuple[list[torch.Tensor], torch.Tensor]:
    """The two-step backward rule, Eq. (21)/(25) with Eq. (22):

        δ_L^up = ∂J/∂X^L,   δ_h^down = δ_h^up ⊙ σ′(Y^h),   δ_{W_h} = δ_h^down (X^{h−1})ᵀ,
        δ_{h−1}^up = (W♯_h)ᵀ δ_h^down,   h = L, …, 1.

    ``grad_y`` is ∂J/∂X^L in row form (B, N_L).  Returns [δ_{W_1}, …, δ_{W_L}] and δ_0^up =
    ∂J/∂x in row form (B, N_0).
    """
    delta_up = grad_y.T
    grads: list[torch.Tensor] = [None] * len(weights)  # type: ignore[list-item]
    for h in range(len(weights) - 1, -1, -1):
        delta_down = delta_up * cache.derivatives[h]
        grads[h] = delta_down @ cache.inputs[h].T
        W_sharp = weights[h][:, :-1] if bias else weights[h]
        delta_up = W_sharp.T @ delta_down
    return grads, delta_up.T
