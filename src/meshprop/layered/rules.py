"""The registry of layered gradient rules: each one a forward and a backward function.

A rule's ``forward(weights, x, activations, bias)`` returns ``(y, cache)`` and its
``backward(weights, cache, grad_y, bias)`` returns ``([dE/dW_1, …, dE/dW_L], dE/dx)``; the
model (``meshprop.layered.MLP``) never knows which rule runs, as MeshNet never knows its engine.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from . import tensor_batch, two_step

__all__ = ["RULES", "LayeredRule", "get_rule"]


@dataclass(frozen=True)
class LayeredRule:
    """One way of computing a layered network's gradient."""

    name: str
    forward: Callable[..., tuple[Any, Any]]
    backward: Callable[..., tuple[list, Any]]
    paper: str


RULES: dict[str, LayeredRule] = {
    "two_step": LayeredRule("two_step", two_step.forward, two_step.backward, "002 Eq. (25)"),
    "tensor_batch": LayeredRule(
        "tensor_batch", tensor_batch.forward, tensor_batch.backward, "003 §2"
    ),
}


def get_rule(name: str) -> LayeredRule:
    """The rule registered as ``name``."""
    if not isinstance(name, str) or name not in RULES:
        raise ValueError(f"unknown layered rule {name!r}; expected one of {tuple(RULES)}")
    return RULES[name]
