"""One vector–Jacobian protocol for every differentiable piece of meshprop.

A mesh engine bound to its dynamics, a layered rule bound to its layer activations and a block
diagram all compute a function y = f(θ, x) of named parameters θ and an input x, together with
its own reverse pass.  They implement the same two stateless methods:

- ``forward(params, x) -> (y, saved)``: the output and whatever the reverse pass needs (FOP: the
  sensitivities carried forward, paper 000 Eq. 17; BPTT: the trajectory; a diagram: its signals);
- ``backward(params, x, saved, grad_y) -> (grads, grad_x)``: the vector–Jacobian product
  dE/dθ = (dy/dθ)ᵀ dE/dy as a dict keyed like ``named_parameters()`` of the owning module, and
  dE/dx (or None when ``provides_input_grad`` is False).

:func:`apply` is the one bridge that makes any such function part of an ordinary
``loss.backward()`` and of the torch.func transforms (``grad``, ``vmap``, ``jacrev``): a pair of
``torch.autograd.Function`` classes, the forward and the reverse pass, each with its own vmap
rule.  :func:`value_and_grad` calls ``fn`` directly with one of the losses of
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


class _Saved:
    """What one call of the bridge keeps for its reverse pass.

    ``value`` is ``fn.forward``'s ``saved`` when the call ran on plain tensors; when the call was
    vmapped, ``slices`` holds one :class:`_Saved` per slice of the vmapped dimension (nested
    vmaps nest them), filled by :meth:`_Bridge.vmap`.
    """

    __slots__ = ("slices", "value")

    def __init__(self) -> None:
        self.value: Any = None
        self.slices: list[_Saved] | None = None


def _select(tensor: torch.Tensor, dim: int | None, index: int) -> torch.Tensor:
    """Slice ``index`` of the vmapped dimension ``dim`` (the tensor itself when not batched)."""
    return tensor if dim is None else tensor.select(dim, index)


def _is_sliced(in_dims: tuple[Any, ...]) -> bool:
    return any(dim is not None for dim in in_dims)


class _Bridge(torch.autograd.Function):
    """y = fn(θ, x) whose backward is ``fn.backward``, in the torch.func-compatible form.

    Inputs: (fn, names, holder, x, *values) — ``holder`` is a fresh :class:`_Saved` that the
    forward fills.  The forward runs only on plain tensors: ``torch.func.grad`` unwraps its own
    level before calling it, and :meth:`vmap` loops over the vmapped dimension, calling the
    Function again on every slice, so ``fn`` never sees a batched tensor (engines use ``.item()``,
    NumPy and data-dependent control flow).  The backward calls :class:`_Reverse`, a second
    Function whose forward is ``fn.backward``: it has its own vmap rule, which is what
    ``vmap(grad(f))`` (per-sample gradients) and ``jacrev`` (a vmap over grad_y) need.
    """

    @staticmethod
    def forward(fn: VJPFunction, names: tuple[str, ...], holder: _Saved, x: torch.Tensor, *values):
        y, holder.value = fn.forward(dict(zip(names, values, strict=True)), x)
        return y

    @staticmethod
    def setup_context(ctx: Any, inputs: tuple[Any, ...], output: Any) -> None:
        fn, names, holder, x, *values = inputs
        ctx.fn, ctx.names, ctx.holder = fn, names, holder
        ctx.save_for_backward(x, *values)

    @staticmethod
    def backward(ctx: Any, grad_y: torch.Tensor):
        x, *values = ctx.saved_tensors
        wanted = ctx.needs_input_grad
        want_x = bool(wanted[3]) and ctx.fn.provides_input_grad
        grads = _Reverse.apply(ctx.fn, ctx.names, ctx.holder, want_x, x, grad_y, *values)
        grad_x = grads[0] if want_x else None
        by_name = grads[1:] if want_x else grads
        return (
            None,
            None,
            None,
            grad_x,
            *(grad if wanted[4 + k] else None for k, grad in enumerate(by_name)),
        )

    @staticmethod
    def vmap(info: Any, in_dims: tuple[Any, ...], fn, names, holder, x, *values):
        """One call per slice of the vmapped dimension; the slices' saved kept in ``holder``."""
        x_dim, value_dims = in_dims[3], in_dims[4:]
        holder.slices, outputs = [], []
        for k in range(info.batch_size):
            part = _Saved()
            x_k = _select(x, x_dim, k)
            values_k = (_select(v, d, k) for v, d in zip(values, value_dims, strict=True))
            outputs.append(_Bridge.apply(fn, names, part, x_k, *values_k))
            holder.slices.append(part)
        return torch.stack(outputs), 0


class _Reverse(torch.autograd.Function):
    """(dE/dx if ``want_x``, dE/dθ by name in ``names`` order) = ``fn.backward`` on the saved
    forward of ``holder``: the backward of :class:`_Bridge`, as a Function of its own.

    Its vmap rule tells the two cases apart by the inputs the forward also had: when x or a
    parameter is batched at this level, the forward was vmapped at the same level and slice k
    uses the saved of slice k; when only grad_y is batched (``jacrev``, one vector–Jacobian
    product per output) every slice uses the same saved.  It is first-order only: its own
    backward raises.
    """

    @staticmethod
    def forward(
        fn: VJPFunction,
        names: tuple[str, ...],
        holder: _Saved,
        want_x: bool,
        x: torch.Tensor,
        grad_y: torch.Tensor,
        *values,
    ):
        if holder.slices is not None:
            raise RuntimeError("meshprop bridge: a vmapped forward reached an unbatched backward")
        params = dict(zip(names, values, strict=True))
        grads, grad_x = fn.backward(params, x, holder.value, grad_y.contiguous())
        by_name = tuple(
            grads[name] if grads.get(name) is not None else torch.zeros_like(value)
            for name, value in params.items()
        )
        if not want_x:
            return by_name
        if grad_x is None:
            raise RuntimeError(f"{fn!r} promised dE/dx (provides_input_grad) but returned None")
        return (grad_x, *by_name)

    @staticmethod
    def setup_context(ctx: Any, inputs: tuple[Any, ...], output: Any) -> None:
        pass

    @staticmethod
    def backward(ctx: Any, *grads: torch.Tensor):
        raise RuntimeError(
            "meshprop's gradient engines compute first derivatives only; for second derivatives "
            "use grad='autograd'"
        )

    @staticmethod
    def vmap(info: Any, in_dims: tuple[Any, ...], fn, names, holder, want_x, x, grad_y, *values):
        """One reverse pass per slice: of that slice's forward, or of the one shared forward."""
        x_dim, grad_dim, value_dims = in_dims[4], in_dims[5], in_dims[6:]
        per_slice = _is_sliced((x_dim, *value_dims))
        if per_slice and (holder.slices is None or len(holder.slices) != info.batch_size):
            raise RuntimeError("meshprop bridge: the backward is vmapped unlike its forward")
        results = []
        for k in range(info.batch_size):
            part = holder.slices[k] if per_slice else holder
            values_k = (_select(v, d, k) for v, d in zip(values, value_dims, strict=True))
            results.append(
                _Reverse.apply(
                    fn,
                    names,
                    part,
                    want_x,
                    _select(x, x_dim, k),
                    _select(grad_y, grad_dim, k),
                    *values_k,
                )
            )
        stacked = tuple(torch.stack(column) for column in zip(*results, strict=True))
        return stacked, (0,) * len(stacked)


def apply(fn: VJPFunction, params: Params, x: torch.Tensor) -> torch.Tensor:
    """y = fn(θ, x) as a differentiable function of θ (and of x where ``fn`` provides it).

    Works with ``loss.backward()`` and with the torch.func transforms ``grad``, ``vjp``,
    ``vmap`` (over x, θ or both, nested too) and ``jacrev``; ``jvp``/``jacfwd`` are not
    supported (the engines provide reverse-mode products only), nor derivatives of order two.
    Under ``torch.compile`` the call is left to eager mode (``torch.compiler.disable``): the
    engines use NumPy, caches and data-dependent control flow, so the compiled graph breaks here
    and the output equals eager.
    """
    if x.requires_grad and not fn.provides_input_grad:
        raise ValueError(
            f"{fn!r} computes parameter gradients only, but x requires grad; pass x.detach() or "
            "use a method that provides input gradients (bptt, autograd)"
        )
    if torch.compiler.is_compiling():  # (meshprop.compiling: loaded only by torch.compile)
        from .compiling import call_eagerly

        return call_eagerly(bridge_apply, fn, tuple(params), x, *params.values())
    return bridge_apply(fn, tuple(params), x, *params.values())


def bridge_apply(
    fn: VJPFunction, names: tuple[str, ...], x: torch.Tensor, *values: torch.Tensor
) -> torch.Tensor:
    """y = fn(θ, x) through the autograd bridge, θ given as ``names`` and ``values``."""
    return _Bridge.apply(fn, names, _Saved(), x, *values)


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
