"""The hook that makes a benchmark sweep resumable: ``memo(key, compute)`` returns the record
of the unit of work ``key`` (a JSON-able dict), from ``compute()`` or from an earlier,
interrupted sweep (``meshprop bench --out DIR --resume`` passes the run folder's
``RunFolder.unit``, which saves every unit as soon as it is measured)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

__all__ = ["Memo", "no_memo"]

#: ``memo(key, compute)``: the record of the unit ``key``
Memo = Callable[[str, Callable[[], dict[str, Any]]], dict[str, Any]]


def no_memo(key: str, compute: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    """Measure every unit (no saved state)."""
    return compute()
