"""What an update rule sees (:class:`UpdateContext`) and what it is (:class:`StructureRule`)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import torch

from ..losses import LossFn
from ..mesh import MeshNet
from .edges import EdgeChange
from .schedule import UpdateSchedule

__all__ = ["StructureRule", "UpdateContext"]


@dataclass(frozen=True)
class UpdateContext:
    """One structural update: after optimiser step ``step``, on the batch ``(x, target)`` just
    used, under ``schedule``; ``generator`` seeds the random choices of the rule."""

    net: MeshNet
    step: int
    schedule: UpdateSchedule
    x: torch.Tensor
    target: torch.Tensor
    loss: str | LossFn
    generator: torch.Generator


class StructureRule(Protocol):
    """An update rule: which edges to add and remove at an update step."""

    name: str

    def propose(self, context: UpdateContext) -> EdgeChange: ...
