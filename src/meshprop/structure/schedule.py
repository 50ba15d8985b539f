"""When the topology changes and by how much: the update schedule of dynamic sparse training.

SET (Mocanu et al. 2018) and RigL (Evci et al. 2020) change the edges every ``update_every``
optimiser steps.  RigL decays the fraction of edges exchanged with a cosine (its Eq. 1):

    f(t) = α/2 · (1 + cos(π t / T_end)),   and no update after T_end,

with α = ``drop_fraction``.  Gradual magnitude pruning (Zhu & Gupta 2017, Eq. 1) lowers the
density from d_0 to the target d_f on the same update steps, cubically:

    d(t) = d_f + (d_0 − d_f) · (1 − t / T_end)³,   d(t) = d_f from T_end on.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

__all__ = ["UpdateSchedule", "pruning_density"]


@dataclass(frozen=True)
class UpdateSchedule:
    """Update every ``update_every`` optimiser steps (steps count from 1) up to ``end_step``
    (``None``: for ever, with no decay), exchanging ``fraction(step)`` of the edges."""

    update_every: int = 100
    drop_fraction: float = 0.3
    end_step: int | None = None

    def __post_init__(self) -> None:
        if isinstance(self.update_every, bool) or not isinstance(self.update_every, int):
            raise TypeError(f"update_every must be an integer, got {self.update_every!r}")
        if self.update_every < 1:
            raise ValueError(f"update_every must be >= 1, got {self.update_every}")
        if not (isinstance(self.drop_fraction, int | float) and 0 < self.drop_fraction < 1):
            raise ValueError(f"drop_fraction must be in (0, 1), got {self.drop_fraction!r}")
        if self.end_step is not None and (
            isinstance(self.end_step, bool) or not isinstance(self.end_step, int)
        ):
            raise TypeError(f"end_step must be an integer or None, got {self.end_step!r}")
        if self.end_step is not None and self.end_step < 1:
            raise ValueError(f"end_step must be >= 1, got {self.end_step}")

    def is_update(self, step: int) -> bool:
        """Whether the topology changes after optimiser step ``step``."""
        if self.end_step is not None and step > self.end_step:
            return False
        return step % self.update_every == 0

    def fraction(self, step: int) -> float:
        """α/2 · (1 + cos(π t / T_end)) (RigL, Eq. 1); α itself without an ``end_step``."""
        if self.end_step is None:
            return float(self.drop_fraction)
        t = min(step, self.end_step) / self.end_step
        return 0.5 * float(self.drop_fraction) * (1.0 + math.cos(math.pi * t))


def pruning_density(step: int, initial: float, final: float, end_step: int | None) -> float:
    """d_f + (d_0 − d_f)(1 − t/T_end)³ (Zhu & Gupta 2017, Eq. 1); ``final`` from ``end_step`` on
    (or at once, without an ``end_step``)."""
    if end_step is None or step >= end_step:
        return float(final)
    return float(final) + (float(initial) - float(final)) * (1.0 - step / end_step) ** 3
