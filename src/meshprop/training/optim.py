"""Optimisers by name: ``torch.optim`` classes, never hand-written."""

from __future__ import annotations

import math
from typing import Any

import torch

__all__ = ["OPTIMIZERS", "build_optimizer"]

#: optimiser names accepted by ``fit`` → their ``torch.optim`` class.
OPTIMIZERS: dict[str, type[torch.optim.Optimizer]] = {
    "adam": torch.optim.Adam,
    "adamw": torch.optim.AdamW,
    "sgd": torch.optim.SGD,
    "rmsprop": torch.optim.RMSprop,
    "adagrad": torch.optim.Adagrad,
}


def build_optimizer(
    name: str | torch.optim.Optimizer,
    params: Any,
    lr: float = 1e-3,
    momentum: float = 0.0,
    weight_decay: float = 0.0,
) -> torch.optim.Optimizer:
    """A ``torch.optim`` optimiser by name with ``lr``, ``momentum`` (sgd, rmsprop) and
    ``weight_decay``; an optimiser instance passes through unchanged."""
    if isinstance(name, torch.optim.Optimizer):
        return name
    if not isinstance(name, str) or name.lower() not in OPTIMIZERS:
        raise ValueError(f"unknown optimizer {name!r}; expected one of {', '.join(OPTIMIZERS)}")
    if not (isinstance(lr, (int, float)) and lr > 0 and math.isfinite(lr)):
        raise ValueError(f"lr must be a positive number, got {lr!r}")
    if momentum < 0:
        raise ValueError(f"momentum must be >= 0, got {momentum}")
    if weight_decay < 0:
        raise ValueError(f"weight_decay must be >= 0, got {weight_decay}")
    name = name.lower()
    kwargs: dict[str, Any] = {"lr": float(lr), "weight_decay": float(weight_decay)}
    if name in ("sgd", "rmsprop"):
        kwargs["momentum"] = float(momentum)
    elif momentum:
        raise ValueError(f"momentum applies to sgd and rmsprop, not {name}")
    return OPTIMIZERS[name](params, **kwargs)
