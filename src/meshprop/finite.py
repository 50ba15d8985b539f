"""The "no NaN, no inf" check of an input, written so that torch.func transforms can pass through.

Whether x is finite is a data-dependent Python decision.  On a plain tensor (and under
``torch.func.grad``) it is an ordinary ``bool``; under ``torch.func.vmap`` x is a batched tensor
whose values cannot steer Python control flow.  :func:`require_finite` therefore runs the check
inside an identity ``torch.autograd.Function`` whose ``vmap`` rule peels the vmapped dimension
off and calls the Function again: when the call reaches the bottom of the transform stack the
forward sees the plain tensor holding every slice, and checks it.  So the check is never skipped
under a transform and costs one pass over x, as before.

Under ``torch.compile`` (``torch.compiler.is_compiling()``) the check is left out: it is a
data-dependent branch that would split the compiled graph.
"""

from __future__ import annotations

from typing import Any

import torch

__all__ = ["require_finite"]


def _check(x: torch.Tensor) -> None:
    """Raise ValueError naming the first NaN or inf of the plain tensor ``x``."""
    if not torch.isfinite(x).all():
        bad = (~torch.isfinite(x)).nonzero()[0].tolist()
        raise ValueError(f"x contains NaN or inf (first at index {tuple(bad)})")


class _RequireFinite(torch.autograd.Function):
    """y = x (a view), after checking x on the plain tensor below every torch.func transform."""

    @staticmethod
    def forward(x: torch.Tensor) -> torch.Tensor:
        _check(x)
        return x.view_as(x)

    @staticmethod
    def setup_context(ctx: Any, inputs: tuple[Any, ...], output: Any) -> None:
        pass

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> torch.Tensor:
        return grad

    @staticmethod
    def jvp(ctx: Any, tangent: torch.Tensor) -> torch.Tensor:
        return tangent

    @staticmethod
    def vmap(info: Any, in_dims: tuple[int | None], x: torch.Tensor) -> tuple[torch.Tensor, Any]:
        return _RequireFinite.apply(x), in_dims[0]


def require_finite(x: torch.Tensor) -> torch.Tensor:
    """x itself (a view) after checking that it holds no NaN or inf; raises ValueError naming the
    first bad index.  Works on plain tensors and under torch.func transforms (the check runs on
    the unbatched data); skipped while ``torch.compile`` traces."""
    if torch.compiler.is_compiling():
        return x
    return _RequireFinite.apply(x)
