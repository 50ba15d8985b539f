"""Every loss of meshprop: its value E(y, ȳ), its output gradient dE/dy (the first factor of
paper 000 Eq. 4; the feed of the reciprocal network, paper 004 rule 6), the checks of its target
and the metrics it implies.

The engines turn dE/dy into parameter gradients; the loss itself never sees the ticks.  A loss
is ``"mse"``, ``"cross_entropy"`` or any callable ``(y, target) -> scalar``:

- mse: E = mean((y − ȳ)²) over every element, dE/dy = 2(y − ȳ)/numel;
- cross_entropy (y: (B, C) logits, ȳ: (B,) labels): E = mean_b(−log softmax(y_b)[ȳ_b]),
  dE/dy = (softmax(y) − onehot(ȳ))/B;
- a callable: E = loss(y, ȳ), dE/dy by autograd applied to the loss alone.

Outputs may also be a dict of named tensors (a block diagram with several outputs): a built-in
loss is then the sum over the outputs of the loss of each; a callable receives the dicts.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import overload

import torch
import torch.nn.functional as F

__all__ = [
    "LOSSES",
    "LossFn",
    "Outputs",
    "check_loss",
    "check_target",
    "loss_and_grad",
    "loss_value",
    "metrics",
    "validate_target",
]

LossFn = Callable[..., torch.Tensor]
#: a model's output: one tensor, or named tensors (a block diagram with several outputs).
Outputs = torch.Tensor | Mapping[str, torch.Tensor]
LOSSES = ("mse", "cross_entropy")


def check_loss(loss: object) -> None:
    """Raise ValueError unless ``loss`` is one of :data:`LOSSES` or a callable."""
    if not (loss in LOSSES or callable(loss)):
        raise _unknown(loss)


def _unknown(loss: object) -> ValueError:
    return ValueError(f"unknown loss {loss!r}; expected one of {LOSSES} or a callable")


def _named_targets(y: Mapping[str, torch.Tensor], target: object) -> Mapping[str, torch.Tensor]:
    """Named outputs need a dict of targets with the same names."""
    if not isinstance(target, Mapping) or set(target) != set(y):
        raise TypeError(f"targets must be a dict with the output names {sorted(y)}")
    return target


def _tensor_target(target: object) -> torch.Tensor:
    if not isinstance(target, torch.Tensor):
        raise TypeError(f"target must be a torch.Tensor, got {type(target).__name__}")
    return target


# ------------------------------------------------------------------------------ targets
def validate_target(
    loss: str | LossFn,
    target: object,
    output_shape: Sequence[int] | Mapping[str, Sequence[int]],
) -> None:
    """Check a target against the shape of the output it is compared with: type, dtype,
    shape, finiteness and (cross_entropy) label range.

    ``output_shape`` is a dict of shapes by output name when the outputs are named; ``target``
    must then be a dict with exactly those names.
    """
    check_loss(loss)
    if isinstance(output_shape, Mapping):
        if not isinstance(target, Mapping):
            raise TypeError(f"targets must be a dict by output name, got {type(target).__name__}")
        if set(target) != set(output_shape):
            raise ValueError(
                f"targets must be given for exactly {sorted(output_shape)}, got {sorted(target)}"
            )
        for name, shape in output_shape.items():
            _validate_one(loss, target[name], tuple(shape), name)
    else:
        _validate_one(loss, target, tuple(output_shape), None)


def check_target(loss: str | LossFn, target: object, batch: int, n_outputs: int) -> None:
    """:func:`validate_target` for an output of shape (batch, n_outputs)."""
    validate_target(loss, target, (batch, n_outputs))


def _validate_one(
    loss: str | LossFn, target: object, shape: tuple[int, ...], name: str | None
) -> None:
    of = "" if name is None else f" for {name!r}"
    if not isinstance(target, torch.Tensor):
        raise TypeError(f"target{of} must be a torch.Tensor, got {type(target).__name__}")
    if loss == "cross_entropy":
        if target.dtype.is_floating_point or target.dtype == torch.bool or target.is_complex():
            raise TypeError(
                f"cross_entropy expects integer class labels (torch.long){of}, "
                f"got dtype {target.dtype}"
            )
        if len(shape) != 2:
            raise ValueError(
                f"cross_entropy needs outputs of shape (batch, classes), the model's are {shape}"
            )
        batch, n_outputs = shape
        if target.shape != (batch,):
            raise ValueError(
                f"cross_entropy expects labels{of} of shape ({batch},), got {tuple(target.shape)}"
            )
        if len(target) and (int(target.min()) < 0 or int(target.max()) >= n_outputs):
            bad = target[(target < 0) | (target >= n_outputs)][0]
            raise ValueError(
                f"label {int(bad)} is out of range: the network has {n_outputs} outputs, so "
                f"labels must be in 0..{n_outputs - 1}"
            )
        return
    if loss == "mse":
        if not target.dtype.is_floating_point:
            raise TypeError(f"mse expects a floating-point target{of}, got dtype {target.dtype}")
        if tuple(target.shape) != shape:
            got = tuple(target.shape)
            if name is None:
                raise ValueError(
                    f"mse expects a target of shape {shape} like the output y, got {got}"
                )
            raise ValueError(
                f"mse target for {name!r} must have the output's shape {shape}, got {got}"
            )
    if target.dtype.is_floating_point and not torch.isfinite(target).all():
        raise ValueError(f"target{of} contains NaN or inf")


# ------------------------------------------------------------------------------ values
def loss_value(loss: str | LossFn, y: Outputs, target: Outputs) -> torch.Tensor:
    """E(y, target) as a differentiable tensor (autograd flows back into ``y``)."""
    if callable(loss):
        return _call(loss, y, target)
    if isinstance(y, Mapping):
        targets = _named_targets(y, target)
        return _total([loss_value(loss, y[n], targets[n]) for n in y])
    target = _tensor_target(target)
    if loss == "mse":
        return F.mse_loss(y, target.to(y.dtype))
    if loss == "cross_entropy":
        return F.cross_entropy(y, target.long())
    raise _unknown(loss)


@overload
def loss_and_grad(
    loss: str | LossFn, y: torch.Tensor, target: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]: ...


@overload
def loss_and_grad(
    loss: str | LossFn, y: Mapping[str, torch.Tensor], target: Mapping[str, torch.Tensor]
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]: ...


def loss_and_grad(loss: str | LossFn, y: Outputs, target: Outputs) -> tuple[torch.Tensor, Outputs]:
    """E(y, target) and dE/dy (a dict like ``y`` when the outputs are named), both detached;
    hand-written for the built-in losses, by autograd on the loss alone for a callable."""
    if callable(loss):
        return _callable_and_grad(loss, y, target)
    if isinstance(y, Mapping):
        targets = _named_targets(y, target)
        parts = {n: _builtin_and_grad(loss, y[n], targets[n]) for n in y}
        return _total([v for v, _ in parts.values()]), {n: g for n, (_, g) in parts.items()}
    return _builtin_and_grad(loss, y, _tensor_target(target))


def _total(values: list[torch.Tensor]) -> torch.Tensor:
    """v_1 + v_2 + …, left to right (the sum over named outputs)."""
    total = values[0]
    for value in values[1:]:
        total = total + value
    return total


def _builtin_and_grad(
    loss: str | LossFn, y: torch.Tensor, target: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    y = y.detach()
    if loss == "mse":
        diff = y - target.to(y.dtype)
        return (diff * diff).mean(), 2.0 * diff / diff.numel()
    if loss == "cross_entropy":
        labels = target.long().unsqueeze(1)
        log_p = torch.log_softmax(y, dim=1)
        picked = log_p.gather(1, labels)  # log p[b, label_b]
        value = -picked.mean()
        grad = log_p.exp_()  # softmax(y), from the same log-softmax
        grad.scatter_(1, labels, grad.gather(1, labels).sub_(1.0))  # p − 1 at the labels
        return value, grad.div_(len(labels))
    raise _unknown(loss)


def _call(loss: LossFn, y: Outputs, target: Outputs) -> torch.Tensor:
    value = loss(y, target)
    if not isinstance(value, torch.Tensor) or value.numel() != 1:
        raise ValueError("a loss callable must return a scalar tensor")
    return value.reshape(())


def _callable_and_grad(loss: LossFn, y: Outputs, target: Outputs) -> tuple[torch.Tensor, Outputs]:
    named = isinstance(y, Mapping)
    outputs = dict(y) if isinstance(y, Mapping) else {"": y}
    leaves = {n: v.detach().clone().requires_grad_(True) for n, v in outputs.items()}
    with torch.enable_grad():
        value = _call(loss, leaves if named else leaves[""], target)
        grads: Sequence[torch.Tensor | None]
        if value.requires_grad:
            grads = torch.autograd.grad(value, list(leaves.values()), allow_unused=True)
        else:  # E does not depend on y
            grads = (None,) * len(leaves)
    dy = {
        n: torch.zeros_like(v) if g is None else g
        for (n, v), g in zip(leaves.items(), grads, strict=True)
    }
    return value.detach(), dy if named else dy[""]


# ------------------------------------------------------------------------------ metrics
def metrics(y: torch.Tensor, target: torch.Tensor, loss: str | LossFn) -> dict[str, float]:
    """``loss``, and what the loss implies: ``accuracy`` for cross_entropy (argmax over the
    classes); ``mse`` and ``r2`` = 1 − mse / mean variance of the target over the samples (every
    axis but the last) for mse.  ``r2`` is NaN for a constant target."""
    target = target.to(y.device)
    result = {"loss": float(loss_value(loss, y, target))}
    if loss == "cross_entropy":
        result["accuracy"] = float((y.argmax(dim=1) == target).double().mean())
    elif loss == "mse":
        target = target.to(y.dtype)
        mse = float(((y - target) ** 2).mean())
        samples = tuple(range(max(target.dim() - 1, 1)))
        spread = float(((target - target.mean(dim=samples)) ** 2).mean())
        result["mse"] = mse
        result["r2"] = 1.0 - mse / spread if spread > 0 else float("nan")
    return result
