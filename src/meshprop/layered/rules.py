"""The registry of layered gradient rules: each one a forward and a backward function.

A rule's ``forward(weights, x, activations, bias)`` returns ``(y, cache)`` and its
``backward(weights, cache, grad_y, bias)`` returns ``([dE/dW_1, …, dE/dW_L], dE/dx)``; the
model (``meshprop.layered.MLP``) never knows which rule runs, as MeshNet never knows its engine.
:func:`bind` fixes the activations and bias and turns a rule into a
:class:`meshprop.protocol.VJPFunction` of the parameters ``weights.0 … weights.{L-1}`` (the names
``MLP.named_parameters()`` gives them).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import torch

from . import tensor_batch, two_step

__all__ = ["RULES", "BoundRule", "LayeredRule", "bind", "get_rule", "weight_names"]


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


def weight_names(depth: int) -> tuple[str, ...]:
    """The parameter names of W_1..W_L, as ``MLP.named_parameters()`` spells them."""
    return tuple(f"weights.{h}" for h in range(depth))


@dataclass(frozen=True)
class BoundRule:
    """A layered rule with activations and bias fixed: y = MLP(W_1..W_L, x) as a VJP function."""

    rule: LayeredRule
    activations: tuple[str, ...]
    bias: bool
    provides_input_grad: bool = True

    def _weights(self, params: Mapping[str, torch.Tensor]) -> tuple[torch.Tensor, ...]:
        return tuple(params[name] for name in weight_names(len(self.activations)))

    def forward(self, params: Mapping[str, torch.Tensor], x: torch.Tensor) -> tuple[Any, Any]:
        return self.rule.forward(self._weights(params), x, self.activations, self.bias)

    def backward(
        self, params: Mapping[str, torch.Tensor], x: torch.Tensor, saved: Any, grad_y: torch.Tensor
    ) -> tuple[dict[str, torch.Tensor], torch.Tensor | None]:
        grads, dx = self.rule.backward(self._weights(params), saved, grad_y, self.bias)
        return dict(zip(weight_names(len(grads)), grads, strict=True)), dx

    def __repr__(self) -> str:
        return f"<layered rule {self.rule.name!r}>"


def bind(rule: str, activations: tuple[str, ...], bias: bool) -> BoundRule:
    """The rule named ``rule`` as a VJP function of ``weights.0 …``."""
    return BoundRule(get_rule(rule), tuple(activations), bias)
