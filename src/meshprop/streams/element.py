"""The loss of one element of a sequence and its gradient dE/dy, the quantity every stream method
is fed (:meth:`meshprop.streams.protocol.StreamCarry.feed`)."""

from __future__ import annotations

import torch

from ..losses import loss_and_grad

__all__ = ["SEQUENCE_LOSSES", "element_loss"]

SEQUENCE_LOSSES = ("mse", "cross_entropy")


def element_loss(
    loss: str, y: torch.Tensor, target: torch.Tensor, mask: torch.Tensor, total: int
) -> tuple[torch.Tensor, torch.Tensor] | None:
    """E_l and dE_l/dy_l (B, O) of one element: the per-sample loss of the masked samples summed
    and divided by ``total``, the number of masked (l, b) pairs of the whole sequence, so that
    Σ_l E_l is the mean of the per-sample loss over the masked pairs.  Built on
    :func:`meshprop.losses.loss_and_grad` (mse: mean over the outputs of (y − t)²;
    cross_entropy: −log softmax(y)[label]).  None when no sample of the element is masked."""
    rows = mask.nonzero().flatten()
    m = len(rows)
    if m == 0:
        return None
    value, g_rows = loss_and_grad(loss, y[rows], target[rows])
    grad = torch.zeros_like(y)
    grad[rows] = g_rows.to(y.dtype)
    scale = m / total
    return value * scale, grad * scale
