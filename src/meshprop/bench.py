"""The benchmark suite: gradient engines side by side, time and peak memory per step.

One *step* is forward + dE/dA through :func:`meshprop.gradient` (cross-entropy, float32 unless a
workload says otherwise).  Times are measured in one process with the engines interleaved round by
round, so a change of machine load hits every engine alike; each row reports the median, min and
max over the rounds.  Peak memory is measured in a fresh subprocess per (engine, workload point):
the subprocess runs a warm-up step on the same network and batch with at most 3 ticks (loads the
kernels, starts the thread pool), frees cached work buffers, resets the kernel's resident-set
high-water mark (``echo 5 > /proc/self/clear_refs``), runs one step and reports
``VmHWM − VmRSS(before)``: the extra resident memory of that step, torch's allocations included
(``tracemalloc`` cannot see them).  glibc is told to mmap every block above 128 KiB, so large
tensors always show; small blocks that fit into heap space the warm-up freed do not (on 3-tick
points the small-footprint engines read close to 0).  Linux only.

Workloads (``WORKLOADS``): ``paper`` (paper 000's MNIST configuration), ``ticks`` (1 … 1000),
``neurons`` (32 … 512), ``density``, ``batch``, ``rate`` (FOP's achieved FLOP/s on a dense
128-neuron mesh) and ``tiny`` (for the tests).  :func:`matmul_rate` measures the machine's float32
matrix-product rate so FOP's rate can be read as a fraction of it.
"""

from __future__ import annotations

import functools
import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field

import torch

from .engines import get_engine
from .memory import MemoryLimitError, get_memory_limit
from .mesh import MeshNet, gradient
from .topology import Topology

__all__ = [
    "WORKLOADS",
    "Point",
    "Row",
    "matmul_rate",
    "measure_peak_bytes",
    "run_workload",
    "time_engines",
]

ALL_ENGINES = ("reference", "fop", "fop_factored", "auto", "bptt", "autograd")


@dataclass(frozen=True)
class Point:
    """One network + batch to time: a point of a workload's sweep."""

    workload: str
    inputs: int
    hidden: int
    outputs: int
    density: float
    ticks: int
    batch: int
    activation: str = "relu"
    output_feedback: bool = False
    mesh: bool = False
    engines: tuple[str, ...] = ALL_ENGINES
    seed: int = 0
    #: also time a 1024×1024 float32 product in the same rounds (engine "matmul")
    matmul: bool = False

    @property
    def neurons(self) -> int:
        return self.inputs + 1 + self.hidden + self.outputs

    def topology(self) -> Topology:
        if self.mesh:
            return Topology.mesh(self.inputs, self.hidden, self.outputs, bias=True)
        return Topology.random(
            inputs=self.inputs,
            hidden=self.hidden,
            outputs=self.outputs,
            density=self.density,
            bias=True,
            seed=self.seed,
            output_feedback=self.output_feedback,
        )

    def build(self, dtype: torch.dtype = torch.float32):
        """(net, x, labels) for this point, deterministic."""
        net = MeshNet(
            self.topology(),
            ticks=self.ticks,
            activation=self.activation,
            dtype=dtype,
            seed=self.seed,
        )
        g = torch.Generator().manual_seed(self.seed)
        x = torch.randn(self.batch, self.inputs, generator=g).to(dtype)
        labels = torch.randint(0, self.outputs, (self.batch,), generator=g)
        return net, x, labels


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
    extra: dict = field(default_factory=dict)


def _paper(**change) -> Point:
    base = dict(workload="paper", inputs=32, hidden=50, outputs=10, density=0.85, ticks=3, batch=32)
    base.update(change)
    return Point(**base)


def _ticks_sweep() -> list[Point]:
    engines = ("fop", "fop_factored", "auto", "bptt", "autograd")
    return [
        Point(
            "ticks",
            inputs=8,
            hidden=24,
            outputs=4,
            density=0.5,
            ticks=t,
            batch=16,
            activation="tanh",
            output_feedback=True,
            engines=engines,
        )
        for t in (1, 3, 10, 100, 1000)
    ]


def _neurons_sweep() -> list[Point]:
    points = []
    for n in (32, 64, 128, 256, 512):
        inputs, outputs = n // 4, max(2, n // 16)
        engines = ("fop", "fop_factored", "auto", "bptt", "autograd")
        if n <= 64:
            engines = ("reference", *engines)
        points.append(
            Point(
                "neurons",
                inputs=inputs,
                hidden=n - inputs - 1 - outputs,
                outputs=outputs,
                density=0.25,
                ticks=3,
                batch=4,
                engines=engines,
            )
        )
    return points


def _fast() -> tuple[str, ...]:
    return ("fop", "fop_factored", "auto", "bptt", "autograd")


WORKLOADS: dict[str, Callable[[], list[Point]]] = {
    "paper": lambda: [_paper()],
    "ticks": _ticks_sweep,
    "neurons": _neurons_sweep,
    "density": lambda: [
        _paper(workload="density", density=d, engines=_fast()) for d in (0.1, 0.25, 0.5, 0.85, 1.0)
    ],
    "batch": lambda: [_paper(workload="batch", batch=b, engines=_fast()) for b in (1, 8, 32, 128)],
    "rate": lambda: [  # ticks 2 and 10: their difference is ticks 3..10, the pure GEMM update
        Point(
            "rate",
            inputs=16,
            hidden=103,
            outputs=8,
            density=1.0,
            ticks=t,
            batch=8,
            mesh=True,
            output_feedback=True,
            engines=("fop",),
            matmul=True,
        )
        for t in (2, 10)
    ],
    "tiny": lambda: [
        Point(
            "tiny",
            inputs=3,
            hidden=4,
            outputs=2,
            density=0.7,
            ticks=t,
            batch=2,
            output_feedback=True,
            engines=("fop", "fop_factored", "auto", "bptt", "autograd"),
        )
        for t in (1, 3)
    ],
}


# ----------------------------------------------------------------------------- timing
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


def _step(method: str, net: MeshNet, x: torch.Tensor, labels: torch.Tensor) -> None:
    gradient(net, x, labels, loss="cross_entropy", method=method)


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
    dyn, itemsize = net.dynamics, net.A.element_size()
    rows: dict[str, Row] = {}
    repeats: dict[str, int] = {}
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
        predicted = get_engine("auto").predict(engine, dyn, point.batch, itemsize)[0]
        if limit is not None and row.estimate_bytes > limit:
            row.note = "skipped: estimate above the memory limit"
            continue
        if predicted > max_predicted_s:
            row.note = f"skipped: predicted {predicted:.0f} s per step"
            continue
        t0 = time.perf_counter()
        _step(name, net, x, labels)  # warm-up (allocations, kernel selection)
        first = time.perf_counter() - t0
        repeats[name] = max(min_repeats, min(max_repeats, int(budget_s / max(first, 1e-6))))
        if name == "auto":
            row.note = f"chose {get_engine('auto').last_choice.engine}"
    calls: dict[str, Callable[[], object]] = {
        name: functools.partial(_step, name, net, x, labels) for name in repeats
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
    for k in range(max(repeats.values(), default=0)):
        for name, count in repeats.items():
            if k < count:
                t0 = time.perf_counter()
                calls[name]()
                times[name].append(time.perf_counter() - t0)
    for name, samples in times.items():
        row = rows[name]
        row.median_s = statistics.median(samples)
        row.min_s, row.max_s, row.repeats = min(samples), max(samples), len(samples)
        row.gflop_s = flops[name] / row.median_s / 1e9
    return [rows[name] for name in (*engines, *(["matmul"] if point.matmul else []))]


# ----------------------------------------------------------------------------- memory
_CHILD = """
import dataclasses, gc, json, sys, torch
from meshprop.bench import Point, _step
from meshprop.engines import ENGINES
torch.set_num_threads({threads})
point = Point(**json.loads(sys.argv[1]))
name = sys.argv[2]
# warm-up on the same network and batch with at most 3 ticks: loads the kernels, starts the thread
# pool, fills lazy caches, while allocating next to nothing the measured step could reuse
small = dataclasses.replace(point, ticks=min(point.ticks, 3))
_step(name, *small.build())
net, x, labels = point.build()
for engine in ENGINES.values():
    getattr(engine, 'release', lambda: None)()  # drop cached work buffers: they must count
gc.collect()
def status(key):
    with open('/proc/self/status') as f:
        for line in f:
            if line.startswith(key + ':'):
                return int(line.split()[1]) * 1024
with open('/proc/self/clear_refs', 'w') as f:
    f.write('5')
before = status('VmRSS')
_step(name, net, x, labels)
print(json.dumps({{'peak_bytes': max(0, status('VmHWM') - before)}}))  # HWM may lag by a page
"""


def measure_peak_bytes(point: Point, engine: str, threads: int = 2, timeout: float = 600) -> int:
    """Extra resident memory (bytes) of one step, measured in a fresh Python process."""
    if not os.path.exists("/proc/self/clear_refs"):
        raise OSError("peak memory needs Linux /proc/self/clear_refs")
    spec = json.dumps({k: v for k, v in asdict(point).items()})
    # fixed glibc thresholds: every block above 64 KiB is mmapped and returned on free, so a
    # freed warm-up tensor cannot hide the measured step's allocations inside the heap
    env = {**os.environ, "MALLOC_MMAP_THRESHOLD_": "131072"}
    result = subprocess.run(
        [sys.executable, "-c", _CHILD.format(threads=threads), spec, engine],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        env=env,
    )
    if result.returncode != 0:
        raise RuntimeError(f"memory probe of {engine} failed: {result.stderr.strip()[-500:]}")
    return int(json.loads(result.stdout.strip().splitlines()[-1])["peak_bytes"])


def run_workload(
    name: str,
    engines: Iterable[str] | None = None,
    *,
    memory: bool = False,
    budget_s: float = 1.0,
    max_predicted_s: float = 10.0,
    threads: int = 2,
    progress: Callable[[str], None] | None = None,
) -> list[Row]:
    """Every point of workload ``name``: timings, and peak memory when ``memory``."""
    if name not in WORKLOADS:
        raise ValueError(f"unknown workload {name!r}; expected one of {tuple(WORKLOADS)}")
    wanted = None if engines is None else tuple(engines)
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
                    row.peak_bytes = measure_peak_bytes(point, row.engine, threads=threads)
        rows.extend(point_rows)
    return rows


def update_rate(rows: Sequence[Row]) -> tuple[float, float] | None:
    """FOP's FLOP/s on the ``rate`` workload: (whole step at 10 ticks, sensitivity update).

    The update rate is the marginal one, (flops(10 ticks) − flops(2 ticks)) / (t(10) − t(2)):
    ticks 3..10 are nothing but the Eq. 17 update (batched GEMM + scatter), so the states, the
    closed-form first ticks and the final contraction cancel out.
    """
    found = {
        r.ticks: r
        for r in rows
        if r.workload == "rate" and r.engine == "fop" and r.median_s is not None
    }
    if 2 not in found or 10 not in found:
        return None
    flops = {t: r.gflop_s * 1e9 * r.median_s for t, r in found.items()}
    extra = found[10].median_s - found[2].median_s
    if extra <= 0:
        return None
    return found[10].gflop_s * 1e9, (flops[10] - flops[2]) / extra


def interleaved_matmul_rate(rows: Sequence[Row]) -> float | None:
    """The matmul rate (FLOP/s) timed in the same rounds as the ``rate`` workload (the better
    of its points), or None."""
    rates = [r.gflop_s * 1e9 for r in rows if r.engine == "matmul" and r.gflop_s]
    return max(rates) if rates else None
