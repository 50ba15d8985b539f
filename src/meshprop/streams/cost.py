r"""What exact ``fop`` (RTRL, paper 000 Eq. 13 / 17) costs per tick, and which representation of
its sensitivities it uses.

Exact RTRL carries Z[p, o] = ∂h_o/∂w_p for every edge p and free neuron o.  Two representations
compute the same numbers (tested to 1e-10 in float64):

- **dense** (:class:`~meshprop.streams.rtrl.RTRLStepper`): all P·F entries, one (F×F)·(F×P)
  product per tick — B·F²·P multiply-adds, at the speed of a dense matrix product;
- **pattern** (:class:`~meshprop.streams.pattern.PatternCarry` on the saturated pattern): only the
  K pairs (p, o) with o reachable from the edge's target j_p by free edges (the output rows kept
  in full), advanced through the M transitions between them — B·(K + M + 2P) gathered,
  multiplied and scattered entries per tick, at the speed of ``index_select``/``index_add_``.
  Entries off the pattern are structurally zero forever, so nothing is approximated.

The model of one tick, in seconds (per-operation overhead plus per-entry work)::

    dense   = 6 · OP + B·F²·P · DENSE_S[itemsize]
    pattern = 8 · OP + B·(K + M + 2P) · PATTERN_S[itemsize]

with the constants below, measured on one CPU thread (MKL ``torch.mm`` on (F×F)·(F×P) shapes,
F = 33…257; the pattern tick on random sparse meshes of 64…1,024 neurons) on a loaded machine:
their ratio, about 80–100 multiply-adds per pattern entry, is what decides; the seconds are
rough.  ``fop`` takes the cheaper one.  A full mesh has K = P·F and M = P·F² (the pattern costs
~80× the dense product): dense, exactly as before.  A recurrence of self-loops only has
K ≈ P·(1 + O) and M ≈ P·(1 + O): O(P) per tick instead of O(F²·P).  Feed-forward paths inside a
mesh and modular meshes (blocks that do not reach each other) keep K at P times the size of
what each edge reaches.

The pattern's K and M are counted from the edge list before anything of edge size is built
(:func:`~meshprop.streams.pattern.pattern_size`); the count stops once the pattern could no
longer win (its modelled time above the dense one) or fit the memory limit, so a dense-like
pattern is never enumerated.  :func:`fop_cost` reports the choice; the memory guard uses its
``bytes``; :func:`fop_representation` forces one representation (tests, benchmarks).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import torch

from ..memory import format_bytes
from ..topology import Topology
from .pattern import PatternSize, pattern_budget, pattern_bytes, pattern_size

__all__ = [
    "DENSE_S",
    "OP_S",
    "PATTERN_S",
    "REPRESENTATIONS",
    "FOPCost",
    "cost_for",
    "dense_bytes",
    "fop_cost",
    "fop_representation",
]

#: the representations of exact fop's sensitivities
REPRESENTATIONS = ("dense", "pattern")
#: seconds per torch operation (dispatch; both representations pay it per operation)
OP_S = 2e-6
#: seconds per multiply-add of the dense (F×F)·(F×P) product, by item size (float32, float64)
DENSE_S = {4: 0.06e-9, 8: 0.13e-9}
#: seconds per gathered-multiplied-scattered entry of the pattern tick, by item size
PATTERN_S = {4: 5e-9, 8: 10e-9}
_DENSE_OPS, _PATTERN_OPS = 6, 8

_forced: str | None = None


@contextmanager
def fop_representation(name: str | None) -> Iterator[None]:
    """Inside the block exact ``fop`` uses the representation ``name`` ("dense" or "pattern";
    None: the cheaper one, the default) for every carry it starts."""
    global _forced
    if name is not None and name not in REPRESENTATIONS:
        raise ValueError(f"unknown fop representation {name!r}; expected one of {REPRESENTATIONS}")
    previous, _forced = _forced, name
    try:
        yield
    finally:
        _forced = previous


@dataclass(frozen=True)
class FOPCost:
    """What one tick of exact ``fop`` costs for ``batch`` streams (module docstring).

    ``representation``: "dense" or "pattern", the one ``fop`` uses; ``pairs``: sensitivities
    carried per stream (P·F dense, K pattern); ``transitions``: M (0 for dense); ``bytes``: what
    the carry allocates; ``work_per_tick``: B·F²·P multiply-adds (dense) or B·(K + M + 2P)
    entries (pattern); ``seconds_per_tick``: the model's estimate for the chosen one, beside
    ``dense_seconds`` and ``pattern_seconds`` (None: the pattern was not counted to the end —
    it could not win or not fit)."""

    representation: str
    batch: int
    pairs: int
    transitions: int
    bytes: int
    work_per_tick: int
    seconds_per_tick: float
    dense_seconds: float
    pattern_seconds: float | None

    def describe(self) -> str:
        """One line: the representation, its size and its modelled cost per tick."""
        unit = "multiply-adds" if self.representation == "dense" else "entries"
        what = (
            f"{self.pairs:,} sensitivities per stream"
            if self.representation == "dense"
            else f"{self.pairs:,} kept pairs and {self.transitions:,} transitions per stream"
        )
        other = (
            f"dense would be ~{self.dense_seconds * 1e6:,.0f} µs"
            if self.representation == "pattern"
            else "pattern not cheaper"
            if self.pattern_seconds is None
            else f"pattern would be ~{self.pattern_seconds * 1e6:,.0f} µs"
        )
        return (
            f"exact fop: {self.representation} sensitivities, {what}, "
            f"{format_bytes(self.bytes)}, {self.work_per_tick:,} {unit} per tick "
            f"(~{self.seconds_per_tick * 1e6:,.0f} µs per tick modelled; {other})"
        )


def dense_bytes(topology: Topology, batch: int, itemsize: int) -> int:
    """Bytes the dense RTRL stepper allocates for ``batch`` streams."""
    N, F, O, P = topology.n_neurons, topology.n_free, topology.n_outputs, topology.n_edges
    floats = 2 * batch * F * P + batch * F * F + 2 * N * N + P + 6 * batch * N + 4 * batch * O
    return itemsize * floats + 3 * 8 * P  # + the int64 edge indices


def _pattern_seconds(size: PatternSize, topology: Topology, batch: int, itemsize: int) -> float:
    entries = size.pairs + size.transitions + 2 * topology.n_edges
    return _PATTERN_OPS * OP_S + batch * entries * PATTERN_S.get(itemsize, PATTERN_S[8])


def fop_cost(topology: Topology, batch: int = 1, dtype: torch.dtype = torch.float32) -> FOPCost:
    """What exact ``fop`` will cost per tick on ``topology`` for ``batch`` streams of ``dtype``,
    and which representation it uses (module docstring) — before anything is built."""
    if not isinstance(topology, Topology):
        raise TypeError(f"topology must be a meshprop.Topology, got {type(topology).__name__}")
    if isinstance(batch, bool) or not isinstance(batch, int) or batch < 1:
        raise ValueError(f"batch must be an integer >= 1, got {batch!r}")
    return cost_for(topology, batch, torch.empty((), dtype=dtype).element_size())


def cost_for(topology: Topology, batch: int, itemsize: int) -> FOPCost:
    """:func:`fop_cost` for numbers of ``itemsize`` bytes (arguments checked)."""
    F, P = topology.n_free, topology.n_edges
    multiply_adds = batch * F * F * P
    dense_s = _DENSE_OPS * OP_S + multiply_adds * DENSE_S.get(itemsize, DENSE_S[8])
    per_entry = batch * PATTERN_S.get(itemsize, PATTERN_S[8])
    # pairs + transitions beyond which the pattern loses on time (unless forced) or on memory
    budgets = [pattern_budget()]
    if _forced != "pattern":
        budgets.append(int(max(0.0, dense_s - _PATTERN_OPS * OP_S) / per_entry) + 1)
    budget = min((b for b in budgets if b is not None), default=None)
    size = None if _forced == "dense" else pattern_size(topology, None, budget)
    pattern_s = None if size is None else _pattern_seconds(size, topology, batch, itemsize)
    use_pattern = pattern_s is not None and (_forced == "pattern" or pattern_s < dense_s)
    if use_pattern:
        assert size is not None and pattern_s is not None
        return FOPCost(
            "pattern",
            batch,
            size.pairs,
            size.transitions,
            pattern_bytes(size, topology, batch, itemsize),
            batch * (size.pairs + size.transitions + 2 * P),
            pattern_s,
            dense_s,
            pattern_s,
        )
    if _forced == "pattern":
        raise ValueError(
            "fop_representation('pattern'): the saturated pattern of this topology could not be "
            "counted within the memory limit"
        )
    return FOPCost(
        "dense",
        batch,
        P * F,
        0,
        dense_bytes(topology, batch, itemsize),
        multiply_adds,
        dense_s,
        dense_s,
        pattern_s,
    )
