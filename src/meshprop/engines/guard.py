"""The engine-aware half of the memory guard: check a step's estimate against the limit of
:mod:`meshprop.memory` before anything is allocated, and suggest an engine that fits."""

from __future__ import annotations

from ..dynamics import Dynamics
from ..memory import MEMORY_LIMIT_ENV, MemoryLimitError, format_bytes, get_memory_limit
from .base import GradientEngine
from .registry import get_engine, registered_names

__all__ = ["check_memory", "refuse"]


def _alternatives(
    dyn: Dynamics, batch: int, itemsize: int, limit: int, exclude: set[str], layout: str
):
    """Registered engines (best estimated time first) whose estimate fits under ``limit``."""
    fits = []
    for name in registered_names():
        if name in exclude or name == "auto":
            continue
        engine = get_engine(name, layout)
        need = engine.estimate_bytes(dyn, batch, itemsize)
        if need <= limit:
            fits.append((engine.estimate_flops(dyn, batch), need, name))
    return [name for _, _, name in sorted(fits)]


def refuse(
    engine: str,
    dyn: Dynamics,
    batch: int,
    itemsize: int,
    estimate: int,
    limit: int,
    layout: str = "dense",
) -> MemoryLimitError:
    """The error for a step of ``engine`` that needs ``estimate`` bytes above ``limit``."""
    better = _alternatives(dyn, batch, itemsize, limit, {engine}, layout)
    suggestion = better[0] if better else None
    topo = dyn.topology
    advice = (
        f"use method={suggestion!r} instead (it fits), or a smaller batch"
        if suggestion
        else "no registered engine fits: use a smaller batch or fewer ticks"
    )
    message = (
        f"the {engine!r} engine would need about {format_bytes(estimate)} for one step "
        f"(batch {batch}, {dyn.ticks} ticks, {topo.n_neurons} neurons, {topo.n_edges} edges) "
        f"but the memory limit is {format_bytes(limit)}; {advice}. The limit defaults to half "
        f"of the available RAM; change it with meshprop.set_memory_limit(...) or "
        f"${MEMORY_LIMIT_ENV}"
    )
    return MemoryLimitError(message, engine, estimate, limit, suggestion)


def check_memory(engine: GradientEngine, dyn: Dynamics, batch: int, itemsize: int) -> int:
    """Raise :class:`MemoryLimitError` when ``engine``'s step would exceed the limit; else
    return its estimate in bytes.  Called before any sensitivity is allocated."""
    estimate = int(engine.estimate_bytes(dyn, batch, itemsize))
    limit = get_memory_limit()
    if limit is not None and estimate > limit:
        raise refuse(engine.name, dyn, batch, itemsize, estimate, limit, engine.layout)
    return estimate
