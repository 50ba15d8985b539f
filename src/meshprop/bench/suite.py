"""A whole workload: every point timed (:mod:`~meshprop.bench.timing`) and, on request, its
peak memory measured (:mod:`~meshprop.bench.peak`)."""

from __future__ import annotations

from collections.abc import Callable, Iterable

import torch

from .peak import measure_peak_bytes
from .timing import Row, time_engines
from .workloads import WORKLOADS

__all__ = ["run_workload"]


def run_workload(
    name: str,
    engines: Iterable[str] | None = None,
    *,
    memory: bool = False,
    budget_s: float = 1.0,
    max_predicted_s: float = 10.0,
    threads: int | None = None,
    progress: Callable[[str], None] | None = None,
) -> list[Row]:
    """Every point of workload ``name``: timings, and peak memory when ``memory``.

    The timings run with the caller's torch threads; the memory probes with ``threads``
    (``None``: the same count)."""
    if name not in WORKLOADS:
        raise ValueError(f"unknown workload {name!r}; expected one of {tuple(WORKLOADS)}")
    wanted = None if engines is None else tuple(engines)
    probe_threads = torch.get_num_threads() if threads is None else threads
    rows: list[Row] = []
    for point in WORKLOADS[name]():
        names = [e for e in point.engines if wanted is None or e in wanted]
        if progress:
            progress(
                f"{name}: ticks={point.ticks} neurons={point.neurons} batch={point.batch} "
                f"density={point.density} ({', '.join(names)})"
            )
        point_rows = time_engines(point, names, budget_s=budget_s, max_predicted_s=max_predicted_s)
        if memory:
            for row in point_rows:
                if row.median_s is not None and row.engine != "matmul":
                    row.peak_bytes = measure_peak_bytes(point, row.engine, threads=probe_threads)
        rows.extend(point_rows)
    return rows
