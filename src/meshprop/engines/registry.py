"""The registry of gradient engines: one name, every layout.

An engine differentiates one storage of the weights, its ``layout``: ``"dense"`` engines take
the N×N matrix A, ``"sparse"`` engines the vector w of one weight per edge (``topo.edges``
order).  ``register_engine(engine)`` adds it under ``engine.name`` for its layout, and
:func:`get_engine` serves the name on *both* layouts: where no implementation for the other
layout is registered, a bridge of :mod:`.bridges` converts the weights (w = A at the edges, or
A = w scattered into an N×N matrix) and the gradient, so an engine registered once serves every
``MeshNet``.  Registering a second implementation under the same name for the other layout
replaces the bridge (the built-in ``fop``, ``bptt``, ``autograd`` and ``auto`` have one of each).
"""

from __future__ import annotations

from .base import LAYOUT_NAMES, GradientEngine
from .bridges import DenseOnSparse, SparseOnDense

__all__ = [
    "ENGINES",
    "engine_layouts",
    "get_engine",
    "register_engine",
    "registered_names",
    "unregister_engine",
]

#: name → the engine as registered for the dense layout (or its bridge when it was registered
#: for the sparse layout only): the engines ``mp.gradient`` takes on a dense MeshNet.
ENGINES: dict[str, GradientEngine] = {}
_NATIVE: dict[tuple[str, str], GradientEngine] = {}  # (name, layout) → registered engine
_BRIDGED: dict[tuple[str, str], GradientEngine] = {}  # (name, layout) → bridge, built once


def register_engine(engine: GradientEngine) -> GradientEngine:
    """Add an engine instance under ``engine.name`` for ``engine.layout``; the other layout is
    served through a bridge until an implementation for it is registered under the same name."""
    if not isinstance(engine, GradientEngine):
        raise TypeError(f"expected a GradientEngine instance, got {type(engine).__name__}")
    if engine.layout not in LAYOUT_NAMES:
        raise ValueError(
            f"engine {engine.name!r} declares layout {engine.layout!r}; expected one of "
            f"{LAYOUT_NAMES}"
        )
    _NATIVE[(engine.name, engine.layout)] = engine
    for layout in LAYOUT_NAMES:
        _BRIDGED.pop((engine.name, layout), None)
    ENGINES[engine.name] = get_engine(engine.name, "dense")
    return engine


def unregister_engine(method: str) -> None:
    """Remove every implementation registered as ``method`` (and its bridges)."""
    get_engine(method)  # validates the name
    for layout in LAYOUT_NAMES:
        _NATIVE.pop((method, layout), None)
        _BRIDGED.pop((method, layout), None)
    ENGINES.pop(method, None)


def registered_names() -> tuple[str, ...]:
    """Every registered engine name, in registration order."""
    return tuple(dict.fromkeys(name for name, _ in _NATIVE))


def engine_layouts(method: str) -> dict[str, str]:
    """For each layout, ``"native"`` or ``"bridge"``: how ``method`` serves it."""
    get_engine(method)  # validates the name
    return {
        layout: "native" if (method, layout) in _NATIVE else "bridge" for layout in LAYOUT_NAMES
    }


def get_engine(method: str | GradientEngine, layout: str = "dense") -> GradientEngine:
    """The engine registered as ``method`` for ``layout`` (natively or through a bridge); an
    engine instance passes through when it is of that layout."""
    if isinstance(method, GradientEngine):
        if method.layout == layout:
            return method
        return _bridge(method, layout)
    if not isinstance(method, str) or not any(name == method for name, _ in _NATIVE):
        raise ValueError(
            f"unknown gradient method {method!r}; expected one of {registered_names()}"
        )
    native = _NATIVE.get((method, layout))
    if native is not None:
        return native
    bridged = _BRIDGED.get((method, layout))
    if bridged is None:
        other = next(e for (name, lay), e in _NATIVE.items() if name == method and lay != layout)
        bridged = _BRIDGED[(method, layout)] = _bridge(other, layout)
    return bridged


def _bridge(engine: GradientEngine, layout: str) -> GradientEngine:
    if layout == "sparse":
        return DenseOnSparse(engine)
    return SparseOnDense(engine)
