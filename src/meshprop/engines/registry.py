"""The registry of gradient engines: name → engine instance.

The built-in engines register themselves in ``meshprop.engines``; adding an engine means adding
one module with a :class:`~meshprop.engines.base.GradientEngine` subclass and one registry entry.
"""

from __future__ import annotations

from .base import GradientEngine

__all__ = ["ENGINES", "get_engine", "register_engine"]

ENGINES: dict[str, GradientEngine] = {}


def register_engine(engine: GradientEngine) -> GradientEngine:
    """Add an engine instance to the registry under ``engine.name``."""
    if not isinstance(engine, GradientEngine):
        raise TypeError(f"expected a GradientEngine instance, got {type(engine).__name__}")
    ENGINES[engine.name] = engine
    return engine


def get_engine(method: str | GradientEngine) -> GradientEngine:
    """The engine registered as ``method`` (an engine instance passes through)."""
    if isinstance(method, GradientEngine):
        return method
    if not isinstance(method, str) or method not in ENGINES:
        raise ValueError(f"unknown gradient method {method!r}; expected one of {tuple(ENGINES)}")
    return ENGINES[method]
