"""Rules 1 and 2 — summing junctions ↔ branching points (paper 004 §2).

Rule 1: a summing junction y = x_1 + … + x_n becomes a branching point, δ_i(k) = δ(k) for every
i.  Rule 2: a branching point y_1 = … = y_n = x becomes a summing junction, δ_x(k) = Σ_j δ_j(k).
(An output port wired to several input ports is an implicit branching point; the reciprocal
construction in :mod:`meshprop.diagram.graph` puts the summing junction of rule 2 there.)
"""

from __future__ import annotations

from .block import Block, Slots, check_width

__all__ = ["Branch", "Sum"]


class Sum(Block):
    """Summing junction: y = x_1 + … + x_n (rule 1: becomes a branching point)."""

    kind = "sum"
    rule = "1"

    def __init__(self, n: int, width: int) -> None:
        super().__init__([width] * check_width(n, "n"), [width])

    def outputs(self, p, inputs, state, k):
        total = inputs[0]
        for x in inputs[1:]:
            total = total + x
        return [total]

    def tangents(self, p, inputs, tangents, state, tstate, slots: Slots):
        return self.outputs(p, tangents, None, 0)

    def reciprocal(self) -> Block:
        return Branch(len(self.in_widths), self.out_widths[0])

    @property
    def label(self) -> str:
        return "Σ"


class Branch(Block):
    """Branching point: y_1 = … = y_n = x (rule 2: becomes a summing junction)."""

    kind = "branch"
    rule = "2"

    def __init__(self, n: int, width: int) -> None:
        super().__init__([width], [width] * check_width(n, "n"))

    def outputs(self, p, inputs, state, k):
        return [inputs[0]] * len(self.out_widths)

    def tangents(self, p, inputs, tangents, state, tstate, slots: Slots):
        return [tangents[0]] * len(self.out_widths)

    def reciprocal(self) -> Block:
        return Sum(len(self.out_widths), self.in_widths[0])

    @property
    def label(self) -> str:
        return "•"
