"""The engine-aware half of the memory guard: check a step's estimate against the limit of
:mod:`meshprop.memory` before anything is allocated, and suggest an engine that fits.

:func:`bind_guarded` binds an engine whose forward checks first: the bridge of
:mod:`meshprop.protocol` calls it on plain tensors, below every torch.func transform, so the
estimate's cached plans (built from the topology with torch operations) are never built from
inside a transform, where every new tensor would be a transform's wrapper.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, NoReturn

import torch

from ..dynamics import Dynamics
from ..memory import MEMORY_LIMIT_ENV, MemoryLimitError, format_bytes, get_memory_limit
from .base import BoundEngine, GradientEngine
from .registry import get_engine, registered_names

__all__ = ["GuardedEngine", "bind_guarded", "check_memory", "refuse", "refuse_below_transforms"]


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
    return its estimate in bytes.  Called before any sensitivity is allocated.

    While ``torch.compile`` traces a model the limit is read once, when the graph is built
    (``torch.compiler.assume_constant_result``): reading the clock and /proc/meminfo cannot be
    part of a graph, so a compiled forward is checked for the shapes it is compiled for, at
    compile time, and has no graph break here (:mod:`meshprop.compiling`).  A limit set after
    the graph was built is seen at the next compilation (a new shape, or ``torch.compile``
    called again), not before.
    """
    estimate = int(engine.estimate_bytes(dyn, batch, itemsize))
    if torch.compiler.is_compiling():  # (meshprop.compiling: loaded only by torch.compile)
        from ..compiling import call_eagerly, limit_while_compiling

        limit = limit_while_compiling()
        if limit is not None and estimate > limit:
            call_eagerly(
                refuse_below_transforms, engine.name, dyn, batch, itemsize, estimate, limit,
                engine.layout,
            )  # fmt: skip
        return estimate
    limit = get_memory_limit()
    if limit is not None and estimate > limit:
        refuse_below_transforms(engine.name, dyn, batch, itemsize, estimate, limit, engine.layout)
    return estimate


def refuse_below_transforms(
    engine: str, dyn: Dynamics, batch: int, itemsize: int, estimate: int, limit: int, layout: str
) -> NoReturn:
    """Raise :func:`refuse`'s error.  Its suggestion runs every engine's estimate, with the
    plans they cache: so it runs below every torch.func transform (see
    :class:`_BelowTransforms`), and under ``torch.compile`` it is never traced
    (:func:`meshprop.compiling.call_eagerly`)."""
    box = _Call(lambda: refuse(engine, dyn, batch, itemsize, estimate, limit, layout))
    _BelowTransforms.apply(box)
    assert isinstance(box.result, MemoryLimitError)
    raise box.result


class _Call:
    """A call to make and, once made, its result."""

    def __init__(self, call: Callable[[], Any]) -> None:
        self.call, self.result = call, None


class _BelowTransforms(torch.autograd.Function):
    """Makes ``box.call()`` below every torch.func transform.

    Inside ``torch.func.grad`` every tensor an operation creates is a wrapper of that level (no
    ``.numpy()``, and a dead object once the transform returns), so plans built from the
    topology and cached must not be built there.  A Function with no tensor input passes every
    transform level (each one hands it to the level below) and its forward runs on the plain
    tensors of the bottom level.
    """

    @staticmethod
    def forward(box: _Call) -> None:
        box.result = box.call()

    @staticmethod
    def setup_context(ctx: Any, inputs: tuple[Any, ...], output: Any) -> None:
        pass

    @staticmethod
    def backward(ctx: Any) -> None:
        return None

    @staticmethod
    def vmap(info: Any, in_dims: tuple[Any, ...], box: _Call) -> tuple[None, None]:
        return _BelowTransforms.apply(box), None


@dataclass(frozen=True)
class GuardedEngine(BoundEngine):
    """A :class:`BoundEngine` whose forward runs :func:`check_memory` before the engine
    allocates anything."""

    def forward(
        self, params: Mapping[str, torch.Tensor], x: torch.Tensor
    ) -> tuple[torch.Tensor, Any]:
        engine, dyn = self.engine, self.dynamics
        check_memory(engine, dyn, dyn.batch_size(x), params[self.parameter].element_size())
        return super().forward(params, x)


def bind_guarded(engine: GradientEngine, dynamics: Dynamics, parameter: str = "A") -> GuardedEngine:
    """``engine`` as a VJP function of ``{parameter: θ}`` over ``dynamics`` that checks the
    memory limit in its forward (see the module docstring)."""
    return GuardedEngine(engine, dynamics, parameter)
