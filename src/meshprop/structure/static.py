"""Static sparsity: the topology chosen at the start (``Topology.random``) never changes."""

from __future__ import annotations

from .edges import EdgeChange
from .rule import UpdateContext

__all__ = ["Static"]


class Static:
    """No structural update (the baseline of SET and RigL)."""

    name = "static"

    def propose(self, context: UpdateContext) -> EdgeChange:
        return EdgeChange.none()
