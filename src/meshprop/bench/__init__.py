"""The benchmark suite: gradient engines side by side, time and peak memory per step.

- :mod:`~meshprop.bench.workloads`: :class:`Point`, :data:`WORKLOADS`, :func:`step`;
- :mod:`~meshprop.bench.timing`: :func:`time_engines` (interleaved rounds, median/min/max),
  :func:`matmul_rate`;
- :mod:`~meshprop.bench.peak`: :func:`measure_peak_bytes`, which runs the probe
  :mod:`meshprop.bench.probe` in a fresh process;
- :mod:`~meshprop.bench.suite`: :func:`run_workload` (a whole workload);
- :mod:`~meshprop.bench.report`: the table and summary of ``meshprop bench``;
- :mod:`~meshprop.bench.sweep`: the sweep ``meshprop bench`` runs, in units of work that an
  interrupted sweep keeps (:mod:`~meshprop.bench.memo`).
"""

from __future__ import annotations

from .peak import measure_peak_bytes
from .report import interleaved_matmul_rate, summary, table, update_rate
from .suite import run_workload
from .timing import Row, matmul_rate, time_engines
from .workloads import ALL_ENGINES, WORKLOADS, Point, step

__all__ = [
    "ALL_ENGINES",
    "WORKLOADS",
    "Point",
    "Row",
    "interleaved_matmul_rate",
    "matmul_rate",
    "measure_peak_bytes",
    "run_workload",
    "step",
    "summary",
    "table",
    "time_engines",
    "update_rate",
]
