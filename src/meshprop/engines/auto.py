"""``method="auto"``: the cheapest exact forward-only engine for the workload, by a cost model.

Both forward-only engines compute the same exact gradient; their costs scale differently:

- ``fop`` (Eq. 17): per tick O(B·P·F²) operations, memory O(B·P·F), flat in the ticks T;
- ``fop_factored`` (Eq. 13 unrolled): tick n costs O(B·n·F³), memory O(B·T·F²).

With P edges and F free neurons ``fop_factored`` wins while T is small compared with P/F and
``fop`` wins for long runs.  The model predicts a step's time as

    seconds ≈ flops / FLOP_RATE + bytes / BANDWIDTH

from each engine's ``estimate_flops`` and ``estimate_bytes`` (the allocated bytes are written at
least once), drops every candidate whose bytes exceed the memory limit (``meshprop.memory``), and
takes the fastest.  The two constants only weigh flops against bytes, so their ratio matters, not
the machine's absolute speed; ``meshprop bench`` prints the choice next to the measured times.

The candidates are the dense engines ``fop_factored`` and ``fop`` and the sparse FOP
``fop_sparse`` (Eq. 13 over the reachable (edge, neuron) pairs: it wins on large sparse meshes).
The choice is computed once per (topology, ticks, batch, dtype, memory-limit setting) and cached
(:func:`choice_key`): a step costs what the chosen engine costs, with no model evaluation and no
read of /proc/meminfo.  It is logged on the ``meshprop.engines.auto`` logger (INFO when first
made) and kept in :attr:`AutoEngine.last_choice`; :meth:`AutoEngine.choose` answers without
running anything.
``AutoEngine(candidates=(...))`` builds a selector over other engines (e.g. adding ``"bptt"``).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import torch

from ..dynamics import Dynamics
from ..memory import get_memory_limit, limit_setting
from .base import GradientEngine
from .fop_sparse import FOP_SPARSE
from .guard import refuse
from .registry import get_engine

__all__ = ["AutoEngine", "Choice", "choice_key", "predict_seconds"]

log = logging.getLogger(__name__)

#: float operations per second and bytes per second the model assumes (2-core AVX-512 CPU).
FLOP_RATE = 1.0e11
BANDWIDTH = 5.0e9


def predict_seconds(flops: float, nbytes: float) -> float:
    """The model's time of one step: flops / FLOP_RATE + bytes / BANDWIDTH."""
    return flops / FLOP_RATE + nbytes / BANDWIDTH


def choice_key(dyn: Dynamics, batch: int, itemsize: int) -> tuple:
    """What ``auto``'s choice depends on: (topology, ticks, batch, dtype size, limit setting)."""
    return (dyn.topology, dyn.ticks, batch, itemsize, limit_setting())


def _candidate(name: str) -> GradientEngine:
    """A registered engine, or ``fop_sparse`` (the sparse FOP on the dense layout: a candidate
    of ``auto``, not a registered method — on dense meshes its pair plan would be huge)."""
    return FOP_SPARSE if name == FOP_SPARSE.name else get_engine(name)


@dataclass(frozen=True)
class Choice:
    """The engine ``auto`` picked and the predicted (seconds, bytes) of every candidate."""

    engine: str
    costs: dict[str, tuple[float, int]]
    limit: int | None

    def __str__(self) -> str:
        parts = ", ".join(
            f"{name}: {seconds * 1e3:.3g} ms, {nbytes / 2**20:.3g} MiB"
            + ("" if self.limit is None or nbytes <= self.limit else " (over the memory limit)")
            for name, (seconds, nbytes) in self.costs.items()
        )
        return f"auto chose {self.engine!r} ({parts})"


class AutoEngine(GradientEngine):
    name = "auto"

    def __init__(self, candidates: tuple[str, ...] = ("fop_factored", "fop", "fop_sparse")) -> None:
        if not candidates or "auto" in candidates:
            raise ValueError(f"candidates must name other engines, got {candidates!r}")
        self.candidates = tuple(candidates)
        self.last_choice: Choice | None = None
        self._cache: dict[tuple, Choice] = {}

    def predict(self, engine: GradientEngine, dyn: Dynamics, batch: int, itemsize: int):
        """(seconds, bytes) the cost model predicts for one step of ``engine``."""
        nbytes = int(engine.estimate_bytes(dyn, batch, itemsize))
        return predict_seconds(engine.estimate_flops(dyn, batch), nbytes), nbytes

    def choose(self, dyn: Dynamics, batch: int, itemsize: int) -> Choice:
        """The fastest candidate whose memory fits the limit (raises MemoryLimitError if none),
        cached per :func:`choice_key`."""
        key = choice_key(dyn, batch, itemsize)
        cached = self._cache.get(key)
        if cached is None:
            cached = self._choose(dyn, batch, itemsize)
            if len(self._cache) > 256:
                self._cache.clear()
            self._cache[key] = cached
            log.info("%s", cached)
        return cached

    def _choose(self, dyn: Dynamics, batch: int, itemsize: int) -> Choice:
        limit = get_memory_limit()
        costs = {
            name: self.predict(_candidate(name), dyn, batch, itemsize) for name in self.candidates
        }
        fitting = [n for n, (_, b) in costs.items() if limit is None or b <= limit]
        if not fitting:
            smallest = min(costs, key=lambda n: costs[n][1])
            raise refuse(smallest, dyn, batch, itemsize, costs[smallest][1], limit)  # type: ignore[arg-type]
        best = min(fitting, key=lambda n: costs[n][0])
        return Choice(best, costs, limit)

    def estimate_bytes(self, dyn, batch, itemsize):
        choice = self.choose(dyn, batch, itemsize)
        return choice.costs[choice.engine][1]

    def estimate_flops(self, dyn, batch):
        return min(_candidate(name).estimate_flops(dyn, batch) for name in self.candidates)

    def forward(self, dyn: Dynamics, A: torch.Tensor, x: torch.Tensor):
        choice = self.choose(dyn, dyn.batch_size(x), A.element_size())
        self.last_choice = choice
        engine = _candidate(choice.engine)
        y, saved = engine.forward(dyn, A, x)
        return y, (engine, saved)

    def backward(self, dyn, A, x, saved, grad_y):
        engine, inner = saved
        dA, _ = engine.backward(dyn, A, x, inner, grad_y)
        return dA, None
