"""The sweep ``meshprop bench`` runs, made of units of work so that an interrupted sweep can be
continued (:mod:`~meshprop.bench.memo`).

:func:`run_sweep`: the machine's matmul rate before the workloads (unit ``matmul-rate``), every
engine workload (unit ``workload/NAME``: all its points), and for ``online`` the online FOP
throughput (``online/throughput``), every cell of the online grid
(``online-grid/TOPOLOGY/H=HIDDEN/LAYOUT/METHOD``) and with ``memory="all"`` the streams' peak
memory (``online/stream-peak``); the rate is measured again after the workloads (not a unit:
it is the machine's state at the end) and the better of the two is reported, so FOP's fraction
of it is not flattered by load.  :func:`run_scale_sweep`: ``--workload scale``
(:func:`meshprop.bench.scale.run_scale`, a unit per size).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

from .memo import Memo, no_memo
from .report import machine_record
from .suite import run_workload
from .timing import Row, matmul_rate
from .workloads import STREAM_WORKLOADS

__all__ = ["MEMORY_WORKLOADS", "ScaleSweep", "Sweep", "run_scale_sweep", "run_sweep"]

#: the workloads whose peak memory ``memory="auto"`` measures
MEMORY_WORKLOADS = ("paper", "published", "ticks")


@dataclass
class Sweep:
    """What :func:`run_sweep` measured: ``records`` (the JSON rows: the machine record, the
    engine rows, the stream rows), the engine rows as :class:`Row` and the matmul rates
    before and after the workloads."""

    records: list[dict[str, Any]]
    rows: list[Row]
    streams: list[dict[str, Any]]
    rates: tuple[float, float]

    @property
    def rate(self) -> float:
        return max(self.rates)


def run_sweep(
    workloads: Sequence[str],
    engines: Sequence[str] | None = None,
    *,
    memory: str = "auto",
    budget_s: float = 1.0,
    max_predicted_s: float = 2.0,
    threads: int = 1,
    quick: bool = False,
    sizes: Sequence[int] | None = None,
    memo: Memo | None = None,
    progress: Callable[[str], None] | None = None,
) -> Sweep:
    """Every workload of ``workloads`` (module docstring); ``memory``: ``auto`` (the peak
    memory of :data:`MEMORY_WORKLOADS`), ``all`` or ``none``."""
    memo = memo or no_memo
    before = float(memo("matmul-rate", lambda: {"flop_s": matmul_rate()})["flop_s"])
    rows: list[Row] = []
    streams: list[dict[str, Any]] = []
    for name in workloads:
        if name in STREAM_WORKLOADS:
            streams += _online(memory, threads, quick, sizes, memo, progress)
            continue
        measure = memory == "all" or (memory == "auto" and name in MEMORY_WORKLOADS)

        def unit(name: str = name, measure: bool = measure) -> dict[str, Any]:
            found = run_workload(
                name,
                engines,
                memory=measure,
                budget_s=budget_s,
                max_predicted_s=max_predicted_s,
                threads=threads,
                progress=progress,
            )
            return {"rows": [asdict(row) for row in found]}

        rows += [Row(**row) for row in memo(f"workload/{name}", unit)["rows"]]
    rates = (before, matmul_rate())
    wait_policy = os.environ.get("OMP_WAIT_POLICY", "unset")
    records = [machine_record(max(rates), threads, wait_policy)]
    records += [asdict(row) for row in rows] + streams
    return Sweep(records, rows, streams, rates)


def _online(
    memory: str,
    threads: int,
    quick: bool,
    sizes: Sequence[int] | None,
    memo: Memo,
    progress: Callable[[str], None] | None,
) -> list[dict[str, Any]]:
    """``--workload online``: online FOP ticks/s against H, the grid of every online method
    (ticks/s beside inference, peak memory, cosine to the exact gradient; one fresh process
    per cell) and, with ``memory="all"``, peak memory against the stream's length."""
    from . import online, online_grid

    def throughput() -> dict[str, Any]:
        if quick:
            return {"rows": online.throughput(hidden=[32], ticks=1000, rounds=3, threads=threads)}
        return {"rows": online.throughput(threads=threads)}

    streams = list(memo("online/throughput", throughput)["rows"])
    default = online_grid.QUICK_HIDDEN if quick else online_grid.GRID_HIDDEN
    streams += online_grid.grid(
        hidden=sizes or default,
        budget_s=1.0 if quick else 3.0,
        cosine_length=50 if quick else 100,
        progress=progress,
        memo=memo,
    )
    if memory == "all":
        streams += memo("online/stream-peak", lambda: {"rows": online.stream_peak()})["rows"]
    return streams


@dataclass
class ScaleSweep:
    """What :func:`run_scale_sweep` measured: ``records`` (a head record with the bandwidth,
    the slopes and the cost model's checks, then one per row), the rows, the bandwidth, the
    checks and the seconds this call took (units kept from an interrupted sweep cost none)."""

    records: list[dict[str, Any]]
    rows: list[Any]
    rate: float
    checks: list[Any]
    seconds: float


def run_scale_sweep(
    sizes: Sequence[int] | None,
    *,
    topology: str = "wired",
    device: str = "cpu",
    threads: int = 1,
    memo: Memo | None = None,
    progress: Callable[[str], None] | None = None,
) -> ScaleSweep:
    """``--workload scale`` (:mod:`meshprop.bench.scale`): step time and peak memory against
    N, sizes :data:`~meshprop.bench.scale.SIZES` unless given."""
    from . import scale

    started = time.perf_counter()
    rows, rate = scale.run_scale(
        sizes=scale.SIZES if sizes is None else tuple(sizes),
        progress=progress,
        topology=topology,
        device=device,
        memo=memo,
    )
    checks = scale.model_checks(rows, topology)
    head = {
        "bandwidth_bytes_s": rate,
        "threads": threads,
        "device": device,
        "topology": topology,
        "slopes": scale.slopes(rows),
        "slopes_n_ge_1e4": scale.slopes(rows, min_neurons=10_000),
        "model_checks": [asdict(c) for c in checks],
    }
    seconds = time.perf_counter() - started
    return ScaleSweep([head, *scale.as_dicts(rows)], rows, rate, checks, seconds)
