"""Gradient engines, one module each, behind one interface and one registry.

Adding an engine means adding one module with a :class:`GradientEngine` subclass and one line
in ``_BUILTIN`` below.
"""

from __future__ import annotations

from .auto import AutoEngine
from .autograd import AutogradEngine
from .base import GradientEngine
from .bptt import BPTTEngine
from .fop import FOPEngine
from .fop_factored import FactoredFOPEngine
from .reference import ReferenceEngine

__all__ = ["ENGINES", "GRADIENT_METHODS", "GradientEngine", "get_engine", "register_engine"]

ENGINES: dict[str, GradientEngine] = {}


def register_engine(engine: GradientEngine) -> GradientEngine:
    """Add an engine instance to the registry under ``engine.name``."""
    if not isinstance(engine, GradientEngine):
        raise TypeError(f"expected a GradientEngine instance, got {type(engine).__name__}")
    ENGINES[engine.name] = engine
    return engine


_BUILTIN = (
    FOPEngine(),
    BPTTEngine(),
    AutogradEngine(),
    ReferenceEngine(),
    FactoredFOPEngine(),
    AutoEngine(),
)
for _engine in _BUILTIN:
    register_engine(_engine)

#: names of every built-in gradient engine.
GRADIENT_METHODS: tuple[str, ...] = tuple(ENGINES)


def get_engine(method: str | GradientEngine) -> GradientEngine:
    """The engine registered as ``method`` (an engine instance passes through)."""
    if isinstance(method, GradientEngine):
        return method
    if not isinstance(method, str) or method not in ENGINES:
        raise ValueError(f"unknown gradient method {method!r}; expected one of {tuple(ENGINES)}")
    return ENGINES[method]
