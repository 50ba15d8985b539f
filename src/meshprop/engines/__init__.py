"""Gradient engines, one module each, behind one interface and one registry.

Adding an engine means adding one module with a :class:`GradientEngine` subclass and one line
in ``_BUILTIN`` below.  ``bind(engine, dynamics)`` turns an engine into a
:class:`meshprop.protocol.VJPFunction` of the parameter ``A``.
"""

from __future__ import annotations

from .auto import AutoEngine
from .autograd import AutogradEngine
from .base import BoundEngine, GradientEngine, bind
from .bptt import BPTTEngine
from .fop import FOPEngine
from .fop_factored import FactoredFOPEngine
from .guard import GuardedEngine, bind_guarded, check_memory
from .reference import ReferenceEngine
from .registry import ENGINES, get_engine, register_engine

__all__ = [
    "ENGINES",
    "GRADIENT_METHODS",
    "BoundEngine",
    "GradientEngine",
    "GuardedEngine",
    "bind",
    "bind_guarded",
    "check_memory",
    "get_engine",
    "register_engine",
]

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
