"""One vector–Jacobian protocol for every differentiable piece of meshprop.

A mesh engine bound to its dynamics, a layered rule bound to its layer activations and a block
diagram all compute a function y = f(θ, x) of named parameters θ and an input x, together with
its own reverse pass.  They implement the same two stateless methods:

- ``forward(params, x) -> (y, saved)``: the output and whatever the reverse pass needs (FOP: the
  sensitivities carried forward, paper 000 Eq. 17; BPTT: the trajectory; a diagram: its signals);
- ``backward(params, x, saved, grad_y) -> (grads, grad_x)``: the vector–Jacobian product
  dE/dθ = (dy/dθ)ᵀ dE/dy as a dict keyed like ``named_parameters()`` of the owning module, and
  dE/dx (or None when ``provides_input_grad`` is False).

:func:`apply` is the one ``torch.autograd.Function`` bridge that makes any such function part of
an ordinary ``loss.backward()``; :func:`value_and_grad` calls it directly with one of the losses of
:mod:`meshprop.losses` (no autograd graph at all).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any, Protocol, runtime_checkable

import torch

from .losses import LossFn, loss_and_grad

__all__ = ["Params", "VJPFunction", "apply", "value_and_grad"]

Params = Mapping[str, torch.Tensor]


@runtime_checkable
class VJPFunction(Protocol):
    """y = f(θ, x) with its own reverse pass (see the module docstring)."""

    @property
    def provides_input_grad(self) -> bool:
        """True when ``backward`` also returns dE/dx."""
        ...

    def forward(self, params: Params, x: torch.Tensor) -> tuple[torch.Tensor, Any]:
        """y and what ``backward`` needs."""
        ...

    def backward(
        self, params: Params, x: torch.Tensor, saved: Any, grad_y: torch.Tensor
    ) -> tuple[dict[str, torch.Tensor], torch.Tensor | None]:
        """(dE/dθ by parameter name, dE/dx or None) from dE/dy."""
        ...


class _Bridge(torch.autograd.Function):
    """y = fn(θ, x) whose backward is ``fn.backward``: the only autograd Function of meshprop."""

    @staticmethod
    def forward(ctx: Any, fn: VJPFunction, names: tuple[str, ...], x: torch.Tensor, *values):
        params = dict(zip(names, values, strict=True))
        y, saved = fn.forward(params, x)
        ctx.fn, ctx.names, ctx.saved = fn, names, saved
        ctx.save_for_backward(x, *values)
        return y

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx: Any, grad_y: torch.Tensor):
        x, *values = ctx.saved_tensors
        params = dict(zip(ctx.names, values, strict=True))
        grads, grad_x = ctx.fn.backward(params, x, ctx.saved, grad_y.contiguous())
        wanted = ctx.needs_input_grad
        return (
            None,
            None,
            grad_x if wanted[2] else None,
            *(grads.get(name) if wanted[3 + k] else None for k, name in enumerate(ctx.names)),
        )


def apply(fn: VJPFunction, params: Params, x: torch.Tensor) -> torch.Tensor:
    """y = fn(θ, x) as a differentiable function of θ (and of x where ``fn`` provides it)."""
    if x.requires_grad and not fn.provides_input_grad:
        raise ValueError(
            f"{fn!r} computes parameter gradients only, but x requires grad; pass x.detach() or "
            "use a method that provides input gradients (bptt, autograd)"
        )
    return _Bridge.apply(fn, tuple(params), x, *params.values())


def value_and_grad(
    fn: VJPFunction,
    params: Params,
    x: torch.Tensor,
    target: torch.Tensor,
    loss: str | LossFn,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """The loss E(fn(θ, x), target) and dE/dθ, by ``fn``'s own reverse pass (no autograd graph).

    Raises FloatingPointError when the loss is not finite (the network diverged).
    """
    detached = {name: value.detach() for name, value in params.items()}
    y, saved = fn.forward(detached, x)
    value, grad_y = loss_and_grad(loss, y, target)
    grads, _ = fn.backward(detached, x, saved, grad_y)
    if not math.isfinite(float(value)):
        raise FloatingPointError(f"the loss is {float(value)}: the network diverged")
    return value, grads
