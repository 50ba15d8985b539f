"""Rule 3 — univariate functions become their derivatives (paper 004 §2).

A function a_j(k) = f(a_i(k)) applied per channel becomes the linear, time-varying gain
δ_i(k) = f′(a_i(k)) δ_j(k).  The forward run computes φ(a(k)) and φ′(a(k)) together (the
hand-written pairs of :mod:`meshprop.activations`) and keeps φ′(a(k)) for the reciprocal pass.
(Rule 3's special case, the synaptic weight, is in :mod:`meshprop.diagram.gains`.)
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from ..activations import ACTIVATIONS, NeuronActivations
from .block import Block, ReciprocalBlock, Slots, Tape

__all__ = ["DerivativeGain", "Function"]


class Function(Block):
    """A univariate function applied per channel: y(k) = φ(a(k)) (an activation).

    ``activation`` is one name of ``meshprop.ACTIVATIONS`` for every channel or one name per
    channel.  Rule 3: its reciprocal is the time-varying gain φ′(a(k)).
    """

    kind = "function"
    rule = "3"

    def __init__(self, activation: str | Sequence[str], width: int) -> None:
        super().__init__([width], [width])
        names = [activation] * width if isinstance(activation, str) else list(activation)
        if len(names) != width:
            raise ValueError(f"need one activation per channel ({width}), got {len(names)}")
        for n in names:
            if n not in ACTIVATIONS:
                raise ValueError(f"unknown activation {n!r}; expected one of {sorted(ACTIVATIONS)}")
        self.activations = NeuronActivations(tuple(names))

    def outputs(self, p, inputs, state, k):
        return [self.activations.value(inputs[0])]

    def derivative(self, a: torch.Tensor) -> torch.Tensor:
        """φ′(a), written by hand in ``meshprop.activations``."""
        return self.activations(a)[1]

    def record(self, p, inputs, state, k):
        value, derivative = self.activations(inputs[0])
        return [value], derivative

    def tangent_outputs(self, p, inputs, tangents, state, tstate, k, slots: Slots):
        value, derivative = self.activations(inputs[0])
        return [value], [tangents[0] * derivative[..., None]]

    def reciprocal(self) -> Block:
        return DerivativeGain(self)

    @property
    def label(self) -> str:
        return self.activations.uniform or "φ̂"


class DerivativeGain(ReciprocalBlock):
    """Rule 3: δ_in(k) = φ′(a(k)) ⊙ δ_out(k), with φ′(a(k)) saved by the forward run."""

    kind = "derivative"
    rule = "3"

    def outputs(self, p: Tape, inputs, state, k):
        return [p.at(k) * inputs[0]]

    @property
    def label(self) -> str:
        return f"{self.forward_block.label}′(k)"
