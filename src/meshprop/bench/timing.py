"""Time per step of each engine on a workload point, measured in this process.

The engines are interleaved round by round, so a change of machine load hits every engine
alike; each :class:`Row` reports the median, min and max over the timed steps.  In each round an
engine runs a short block of consecutive steps (up to :data:`BLOCK_STEPS`, about
:data:`BLOCK_S` seconds) after one untimed step: a training loop repeats one engine, and a step
that directly follows another engine's step pays for the caches that engine evicted (measured on
the paper workload under load: ``fop_factored`` 358 µs per step back to back, 414–551 µs right
after an ``autograd`` step), which would bias a ratio by the order of the engines.  Engines whose
step takes longer than :data:`BLOCK_S` run one timed step per round.  :func:`matmul_rate`
measures the machine's float32 matrix-product rate so FOP's rate can be read as a fraction of
it.  Torch's thread count is the caller's (:func:`meshprop.threads.thread_policy`).
"""

from __future__ import annotations

import functools
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from ..engines import AutoEngine, get_engine
from ..memory import MemoryLimitError, get_memory_limit
from .workloads import Point, step

__all__ = ["BLOCK_S", "BLOCK_STEPS", "Row", "matmul_rate", "time_engines"]

#: most consecutive steps of one engine per round, and the time a block aims at
BLOCK_STEPS = 5
BLOCK_S = 0.005


@dataclass
class Row:
    """One (engine, workload point) result; the JSON row of ``meshprop bench --json``."""

    engine: str
    workload: str
    ticks: int
    neurons: int
    batch: int
    median_s: float | None
    min_s: float | None
    max_s: float | None
    peak_bytes: int | None
    edges: int = 0
    density: float = 0.0
    repeats: int = 0
    estimate_bytes: int | None = None
    gflop_s: float | None = None
    note: str = ""
    extra: dict[str, Any] = field(default_factory=dict)


def matmul_rate(n: int = 1024, repeats: int = 10) -> float:
    """The machine's float32 matrix-product rate in FLOP/s (median of ``repeats`` n×n products,
    with the current torch thread setting)."""
    a, b = torch.randn(n, n), torch.randn(n, n)
    c = torch.empty(n, n)
    for _ in range(2):
        torch.mm(a, b, out=c)
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        torch.mm(a, b, out=c)
        times.append(time.perf_counter() - t0)
    return 2 * n**3 / statistics.median(times)


def time_engines(
    point: Point,
    engines: Sequence[str],
    *,
    budget_s: float = 1.0,
    max_repeats: int = 30,
    min_repeats: int = 3,
    max_predicted_s: float = 10.0,
) -> list[Row]:
    """Time each engine on ``point``, interleaved round by round, in this process."""
    net, x, labels = point.build()
    dyn, itemsize = net.dynamics, net.parameter.element_size()
    auto = get_engine("auto")
    assert isinstance(auto, AutoEngine)  # the registry's cost model predicts the step times
    rows: dict[str, Row] = {}
    repeats: dict[str, int] = {}
    firsts: dict[str, float] = {}  # the warm-up step's seconds
    for name in engines:
        engine = get_engine(name)
        row = Row(
            name,
            point.workload,
            point.ticks,
            point.neurons,
            point.batch,
            None,
            None,
            None,
            None,
            edges=net.topology.n_edges,
            density=point.density,
        )
        rows[name] = row
        try:
            row.estimate_bytes = int(engine.estimate_bytes(dyn, point.batch, itemsize))
        except MemoryLimitError as error:
            row.note = f"skipped: {error}"
            continue
        limit = get_memory_limit()
        predicted = auto.predict(engine, dyn, point.batch, itemsize)[0]
        if limit is not None and row.estimate_bytes > limit:
            row.note = "skipped: estimate above the memory limit"
            continue
        if predicted > max_predicted_s:
            row.note = f"skipped: predicted {predicted:.0f} s per step"
            continue
        t0 = time.perf_counter()
        step(name, net, x, labels)  # warm-up (allocations, kernel selection)
        first = firsts[name] = time.perf_counter() - t0
        repeats[name] = max(min_repeats, min(max_repeats, int(budget_s / max(first, 1e-6))))
        if name == "auto" and auto.last_choice:
            row.note = f"chose {auto.last_choice.engine}"
            row.extra["chose"] = auto.last_choice.engine
    calls: dict[str, Callable[[], object]] = {
        name: functools.partial(step, name, net, x, labels) for name in repeats
    }
    flops = {name: get_engine(name).estimate_flops(dyn, point.batch) for name in repeats}
    if point.matmul:  # the machine's rate, measured in the same rounds as the engines
        a, b, c = torch.randn(1024, 1024), torch.randn(1024, 1024), torch.empty(1024, 1024)
        calls["matmul"] = functools.partial(torch.mm, a, b, out=c)
        calls["matmul"]()
        flops["matmul"] = 2 * 1024**3
        repeats["matmul"] = max(repeats.values(), default=min_repeats)
        rows["matmul"] = Row(
            "matmul",
            point.workload,
            point.ticks,
            1024,
            1,
            None,
            None,
            None,
            None,
            note="1024x1024 float32 product",
        )
    times: dict[str, list[float]] = {name: [] for name in repeats}
    block = {
        n: max(1, min(BLOCK_STEPS, int(BLOCK_S / max(firsts.get(n, 0.0), 1e-6)))) for n in repeats
    }
    rounds = max((-(-repeats[n] // block[n]) for n in repeats), default=0)
    for k in range(rounds):
        for name, count in repeats.items():
            steps = min(block[name], count - k * block[name])
            if block[name] > 1 and steps > 0:
                calls[name]()  # untimed: it pays for what the previous engine evicted
            for _ in range(steps):
                t0 = time.perf_counter()
                calls[name]()
                times[name].append(time.perf_counter() - t0)
    for name, samples in times.items():
        row = rows[name]
        row.median_s = statistics.median(samples)
        row.min_s, row.max_s, row.repeats = min(samples), max(samples), len(samples)
        row.gflop_s = flops[name] / row.median_s / 1e9
    return [rows[name] for name in (*engines, *(["matmul"] if point.matmul else []))]
