"""Gradient engines, one module each, behind one interface and one registry.

Adding an engine means adding one module with a :class:`GradientEngine` subclass and one line
in ``_BUILTIN`` below (or one ``register_engine`` call from user code).  An engine differentiates
one weight storage (its ``layout``: the N×N matrix A, or the vector of one weight per edge); the
registry serves it on the other through a bridge unless a second implementation is registered
under the same name (``sparse_layout.EDGE_ENGINES`` for the built-ins).
``bind(engine, dynamics)`` turns an engine into a :class:`meshprop.protocol.VJPFunction`.
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
from .registry import ENGINES, engine_layouts, get_engine, register_engine, registered_names
from .sparse_layout import EDGE_ENGINES

__all__ = [
    "ENGINES",
    "GRADIENT_METHODS",
    "BoundEngine",
    "GradientEngine",
    "GuardedEngine",
    "bind",
    "bind_guarded",
    "check_memory",
    "engine_layouts",
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
for _engine in (*_BUILTIN, *EDGE_ENGINES):
    register_engine(_engine)

#: names of every built-in gradient engine (each serves both layouts).
GRADIENT_METHODS: tuple[str, ...] = registered_names()
