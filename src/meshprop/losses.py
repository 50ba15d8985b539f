"""Losses E(y, ȳ) and their output gradients dE/dy (the first factor of paper 000 Eq. 4).

Every engine turns dE/dy into dE/dA; the loss itself never sees the ticks.  ``"mse"`` and
``"cross_entropy"`` have hand-written gradients; any callable ``(y, target) -> scalar`` gets its
dE/dy from autograd applied to the loss alone.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

__all__ = ["LOSSES", "LossFn", "check_target", "loss_and_grad"]

LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
LOSSES = ("mse", "cross_entropy")


def check_target(loss: str | LossFn, target: torch.Tensor, batch: int, n_outputs: int) -> None:
    """Validate a target for a built-in loss: shape, dtype, finiteness and label range."""
    if not isinstance(target, torch.Tensor):
        raise TypeError(f"target must be a torch.Tensor, got {type(target).__name__}")
    if loss == "cross_entropy":
        if target.dtype.is_floating_point or target.dtype == torch.bool:
            raise TypeError(
                f"cross_entropy expects integer class labels (torch.long), got dtype {target.dtype}"
            )
        if target.shape != (batch,):
            raise ValueError(
                f"cross_entropy expects labels of shape ({batch},), got {tuple(target.shape)}"
            )
        if len(target) and (int(target.min()) < 0 or int(target.max()) >= n_outputs):
            bad = target[(target < 0) | (target >= n_outputs)][0]
            raise ValueError(
                f"label {int(bad)} is out of range: the network has {n_outputs} outputs, so "
                f"labels must be in 0..{n_outputs - 1}"
            )
    elif loss == "mse":
        if not target.dtype.is_floating_point:
            raise TypeError(f"mse expects a floating-point target, got dtype {target.dtype}")
        if target.shape != (batch, n_outputs):
            raise ValueError(
                f"mse expects a target of shape ({batch}, {n_outputs}) like the output y, "
                f"got {tuple(target.shape)}"
            )
        if not torch.isfinite(target).all():
            raise ValueError("target contains NaN or inf")
    elif callable(loss):
        if target.dtype.is_floating_point and not torch.isfinite(target).all():
            raise ValueError("target contains NaN or inf")
    else:
        raise ValueError(f"unknown loss {loss!r}; expected one of {LOSSES} or a callable")


def loss_and_grad(
    loss: str | LossFn, y: torch.Tensor, target: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """E(y, target) and dE/dy, both detached.

    - mse: E = mean((y − ȳ)²), dE/dy = 2(y − ȳ)/numel.
    - cross_entropy: E = mean_b(−log softmax(y_b)[ℓ_b]), dE/dy = (softmax(y) − onehot(ℓ))/B.
    - callable: E = loss(y, ȳ), dE/dy by autograd on the loss alone.
    """
    y = y.detach()
    if loss == "mse":
        target = target.to(y.dtype)
        diff = y - target
        return (diff * diff).mean(), 2.0 * diff / diff.numel()
    if loss == "cross_entropy":
        labels = target.long()
        rows = torch.arange(len(labels), device=y.device)
        log_p = torch.log_softmax(y, dim=1)
        value = -log_p[rows, labels].mean()
        grad = log_p.exp_()  # softmax(y), from the same log-softmax
        grad[rows, labels] -= 1.0
        return value, grad / len(labels)
    if callable(loss):
        leaf = y.clone().requires_grad_(True)
        with torch.enable_grad():
            value = loss(leaf, target)
            if not isinstance(value, torch.Tensor) or value.numel() != 1:
                raise ValueError("a loss callable must return a scalar tensor")
            (grad,) = torch.autograd.grad(value.reshape(()), leaf, allow_unused=True)
        if grad is None:
            grad = torch.zeros_like(y)
        return value.detach().reshape(()), grad
    raise ValueError(f"unknown loss {loss!r}; expected one of {LOSSES} or a callable")
