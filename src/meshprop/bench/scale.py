"""``meshprop bench --workload scale``: time and peak memory of a training step against the size
of a sparse mesh.

Meshes of N = 10³ … 10⁵ neurons at mean degree 10 (:data:`TOPOLOGIES`: ``Topology.sparse_random``
or ``Topology.random`` with density 10/F; 64 inputs, 10 outputs), T = 2 and 3 ticks, batch 32,
float32.  Every engine that fits the memory limit runs: the sparse layout's ``bptt``, ``fop``
(sparse FOP) and ``autograd``, and the dense layout's ``bptt`` (up to ``DENSE_BPTT_MAX``) and
``fop_factored`` (up to ``DENSE_MAX``).  One
step is forward + dE/dw (``meshprop.gradient``) + an SGD update.  Per row: the median time of
``repeats`` steps, the peak of live torch tensor bytes during one step (the CPU allocator's events
in the torch profiler), and the *physical limit*: the bytes a step must move at least (reading
and writing the weights, the edge structure and the states once per tick and per pass), divided
by the memory bandwidth measured in the same process (a large tensor copy).  :func:`slopes` fits
log(time) against log(edges) per engine and ticks; :func:`plot` draws the log-log figure.
"""

from __future__ import annotations

import math
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from typing import Any

import torch
from torch.profiler import ProfilerActivity, profile

from ..allocator import keep_freed_memory
from ..engines.sparse_layout import SparseAuto
from ..memory import MemoryLimitError
from ..mesh import MeshNet, gradient
from ..topology import Topology
from .memo import Memo, no_memo

__all__ = [
    "DENSE_BPTT_MAX",
    "DENSE_MAX",
    "SIZES",
    "TOPOLOGIES",
    "ModelCheck",
    "ScaleRow",
    "bandwidth",
    "model_checks",
    "plot",
    "probe_buffers",
    "run_scale",
    "slopes",
]

SIZES = (1_000, 3_000, 10_000, 30_000, 100_000)
#: the largest N the dense layout's ``fop_factored`` is timed at (O(T·F²) memory, O(T²·F³) time)
DENSE_MAX = 3_000
#: the largest N the dense layout's ``bptt`` is timed at (N×N matrices of 4·N² bytes, O(B·N²)
#: time per product: 0.4 GB and about a second per step at 10⁴)
DENSE_BPTT_MAX = 10_000
SPARSE_ENGINES = ("bptt", "fop", "autograd")
DENSE_ENGINES = ("bptt", "fop_factored")


@dataclass
class ScaleRow:
    layout: str
    engine: str
    neurons: int
    edges: int
    ticks: int
    batch: int
    median_s: float | None
    peak_bytes: int | None
    min_bytes_moved: int
    limit_s: float
    note: str = ""


def probe_buffers(
    nbytes: int, device: torch.device | str = "cpu"
) -> tuple[torch.Tensor, torch.Tensor]:
    """The source and destination of the bandwidth probe, ``nbytes`` each, both written: the
    source filled with 1.0 (a never-written ``torch.empty`` maps the kernel's shared zero page,
    which reads from cache, faster than real memory), the destination by a first copy."""
    source = torch.empty(nbytes // 4, device=device).fill_(1.0)
    destination = torch.empty_like(source)
    destination.copy_(source)
    return source, destination


def _synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def bandwidth(nbytes: int = 2**28, repeats: int = 5, device: torch.device | str = "cpu") -> float:
    """Measured memory bandwidth in bytes/s on ``device``: a copy of written memory reads and
    writes ``nbytes``; the best of ``repeats`` copies."""
    device = torch.device(device)
    source, destination = probe_buffers(nbytes, device)
    times = []
    for _ in range(repeats):
        _synchronize(device)
        t0 = time.perf_counter()
        destination.copy_(source)
        _synchronize(device)
        times.append(time.perf_counter() - t0)
    return 2 * nbytes / min(times)


#: what the profiler's C++ side (kineto) writes to stderr at every start and stop, whatever
#: its log level: "USDT:... profiler_start", "STAGE:... Completed Stage: Warm Up"
_PROFILER_LOG_PREFIXES = ("USDT:", "STAGE:")


@contextmanager
def _without_profiler_log_lines() -> Iterator[None]:
    """Inside the block, file descriptor 2 goes to a temporary file; afterwards every line
    written there is passed on to stderr except the profiler's own log lines."""
    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except (OSError, ValueError):  # no real stderr (e.g. a closed one): nothing to filter
        yield
        return
    with tempfile.TemporaryFile() as capture:
        os.dup2(capture.fileno(), 2)
        try:
            yield
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            capture.seek(0)
            for line in capture.read().decode(errors="replace").splitlines(keepends=True):
                if not line.startswith(_PROFILER_LOG_PREFIXES):
                    sys.stderr.write(line)
            sys.stderr.flush()


def peak_tensor_bytes(step, device: torch.device | str = "cpu") -> int:
    """Peak live bytes of torch tensors during ``step()``: the CPU allocator's events, or on a
    CUDA device the caching allocator's peak (above what was allocated before the step)."""
    device = torch.device(device)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        before = torch.cuda.memory_allocated(device)
        torch.cuda.reset_peak_memory_stats(device)
        step()
        torch.cuda.synchronize(device)
        return torch.cuda.max_memory_allocated(device) - before
    with (
        _without_profiler_log_lines(),
        profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof,
    ):
        step()
    events = sorted(
        (e.start_ns(), e.nbytes())
        for e in prof.profiler.kineto_results.events()
        if e.name() == "[memory]"
    )
    live = peak = 0
    for _, n in events:
        live += n
        peak = max(peak, live)
    return peak


def min_bytes_moved(topology: Topology, ticks: int, batch: int, itemsize: int = 4) -> int:
    """A lower bound of the memory traffic of one step: per tick and pass, the weights, the
    edge indices (8-byte source and target) and the B×N state read once and the B×F result
    written once; forward and one reverse pass (3 sparse products per tick in all)."""
    P, N, F = topology.n_edges, topology.n_neurons, topology.n_free
    per_product = P * (itemsize + 16) + batch * (N + F) * itemsize
    return 3 * ticks * per_product


#: the topologies of the sweep: ``wired`` (:meth:`Topology.sparse_random`: every hidden neuron
#: reads 3 inputs and feeds one output, so every edge's gradient is non-zero at T = 2) and
#: ``random`` (:meth:`Topology.random` at density 10/F: most edges are more than T hops from an
#: output, their gradient is structurally zero and the sparse FOP prunes them)
TOPOLOGIES = ("wired", "random")


def _topology(neurons: int, seed: int = 0, kind: str = "wired") -> Topology:
    inputs, outputs = 64, 10
    hidden = neurons - inputs - 1 - outputs
    if kind == "wired":
        return Topology.sparse_random(inputs, hidden, outputs, degree=10, seed=seed)
    if kind != "random":
        raise ValueError(f"unknown scale topology {kind!r}; expected one of {TOPOLOGIES}")
    free = hidden + outputs
    return Topology.random(inputs, hidden, outputs, density=10 / free, seed=seed)


def run_scale(
    sizes: tuple[int, ...] = SIZES,
    ticks: tuple[int, ...] = (2, 3),
    batch: int = 32,
    repeats: int = 3,
    dense_max: int = DENSE_MAX,
    progress=None,
    dense_bptt_max: int = DENSE_BPTT_MAX,
    topology: str = "wired",
    slow_s: float = 2.0,
    device: torch.device | str = "cpu",
    memo: Memo | None = None,
) -> tuple[list[ScaleRow], float]:
    """Rows for every (size, ticks, layout, engine) that fits, and the measured bandwidth: the
    dense ``fop_factored`` up to ``dense_max`` neurons, the dense ``bptt`` up to
    ``dense_bptt_max``; meshes of the kind ``topology`` (:data:`TOPOLOGIES`).  Each row is the
    median of ``repeats`` steps after a warm-up, or one step when the warm-up took more than
    ``slow_s`` seconds (the sparse FOP at 10⁵ neurons and 3 ticks: keeps the sweep short).
    Everything (weights, batch, bandwidth probe) lives on ``device``; on a CUDA device every
    timed step ends with a synchronisation.  The bandwidth (``scale/bandwidth``) and each size
    (``scale/N=SIZE``: its rows) are units of work of ``memo``: one it holds is not measured
    again."""
    if topology not in TOPOLOGIES:
        raise ValueError(f"unknown scale topology {topology!r}; expected one of {TOPOLOGIES}")
    memo = memo or no_memo
    device = torch.device(device)
    keep_freed_memory()  # a step's large tensors reused, not faulted in afresh (allocator.py)
    rate = float(memo("scale/bandwidth", lambda: {"bytes_s": bandwidth(device=device)})["bytes_s"])
    rows = []
    for n in sizes:

        def measure(n: int = n) -> dict[str, Any]:
            limits = {"bptt": dense_bptt_max, "fop_factored": dense_max}
            measured = _size_rows(
                n, ticks, batch, repeats, limits, topology, slow_s, device, rate, progress
            )
            return {"rows": as_dicts(measured)}

        rows += [ScaleRow(**row) for row in memo(f"scale/N={n}", measure)["rows"]]
    return rows, rate


def _size_rows(
    n: int,
    ticks: tuple[int, ...],
    batch: int,
    repeats: int,
    limits: dict[str, int],
    topology: str,
    slow_s: float,
    device: torch.device,
    rate: float,
    progress,
) -> list[ScaleRow]:
    """The rows of one size ``n`` (see :func:`run_scale`; ``limits``: the largest N each dense
    engine is timed at)."""
    rows = []
    topo = _topology(n, kind=topology)
    for T in ticks:
        g = torch.Generator().manual_seed(0)
        x = torch.randn(batch, 64, generator=g).to(device)
        labels = torch.randint(0, 10, (batch,), generator=g).to(device)
        moved = min_bytes_moved(topo, T, batch)
        plans = [("sparse", e) for e in SPARSE_ENGINES]
        plans += [("dense", e) for e in DENSE_ENGINES if n <= limits[e]]
        for layout, engine in plans:
            row = ScaleRow(
                layout, engine, n, topo.n_edges, T, batch, None, None, moved, moved / rate
            )
            try:
                net = MeshNet(topo, ticks=T, layout=layout, seed=0, device=device)
                weights = net.parameter

                def step(net=net, weights=weights, engine=engine, x=x, labels=labels) -> None:
                    _, grad = gradient(net, x, labels, method=engine)
                    with torch.no_grad():
                        weights.sub_(0.01 * grad)
                    _synchronize(device)

                t0 = time.perf_counter()
                step()  # warm-up: plans and caches
                slow = time.perf_counter() - t0 > slow_s
                times = []
                for _ in range(1 if slow else repeats):  # a slow step: timed once
                    t0 = time.perf_counter()
                    step()
                    times.append(time.perf_counter() - t0)
                row.median_s = statistics.median(times)
                row.note = "one timed step (slow)" if slow else ""
                row.peak_bytes = peak_tensor_bytes(step, device)
            except MemoryLimitError as error:
                row.note = f"does not fit: {error}"[:200]
            rows.append(row)
            if progress:
                progress(f"scale N={n} T={T} {layout}/{engine}: {row.median_s} s")
    return rows


@dataclass
class ModelCheck:
    """The cost model's pick between the sparse ``fop`` and ``bptt`` against their measured
    times at one (neurons, ticks): ``chosen_over_best`` ≤ 1.1 is the target."""

    neurons: int
    ticks: int
    chosen: str
    fop_over_bptt: float
    chosen_over_best: float


def model_checks(rows: list[ScaleRow], kind: str = "wired") -> list[ModelCheck]:
    """For every (N, T) where both sparse ``fop`` and ``bptt`` were timed: the engine the cost
    model of ``auto`` picks among the two (``SparseAuto(("fop", "bptt"))``) and how its
    measured time compares with the faster one's."""
    timed = {(r.neurons, r.ticks, r.engine): r for r in rows if r.layout == "sparse"}
    out = []
    for (n, T, engine), row in sorted(timed.items()):
        other = timed.get((n, T, "bptt"))
        if engine != "fop" or other is None or not row.median_s or not other.median_s:
            continue
        dyn = MeshNet(_topology(n, kind=kind), ticks=T, layout="sparse").dynamics
        chosen = SparseAuto(("fop", "bptt")).choose(dyn, row.batch, 4)
        times = {"fop": row.median_s, "bptt": other.median_s}
        best = min(times.values())
        out.append(ModelCheck(n, T, chosen, times["fop"] / times["bptt"], times[chosen] / best))
    return out


def slopes(rows: list[ScaleRow], min_neurons: int = 0) -> dict[str, float]:
    """The least-squares slope of log(time) against log(edges), per layout/engine/ticks, over
    the rows of at least ``min_neurons`` neurons (a slope of 1 is time linear in the edges; small
    meshes pay a fixed per-step overhead that flattens the fit over every size)."""
    groups: dict[str, list[tuple[float, float]]] = {}
    for r in rows:
        if r.median_s and r.neurons >= min_neurons:
            key = f"{r.layout}/{r.engine} T={r.ticks}"
            groups.setdefault(key, []).append((math.log(r.edges), math.log(r.median_s)))
    out = {}
    for key, pts in groups.items():
        if len(pts) >= 2:
            mx = sum(p[0] for p in pts) / len(pts)
            my = sum(p[1] for p in pts) / len(pts)
            sxx = sum((p[0] - mx) ** 2 for p in pts)
            out[key] = sum((p[0] - mx) * (p[1] - my) for p in pts) / sxx
    return out


def plot(rows: list[ScaleRow], path: str) -> None:
    """Log-log step time against edges, one line per layout/engine/ticks, and the limit."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    keys = sorted({(r.layout, r.engine, r.ticks) for r in rows if r.median_s})
    for layout, engine, T in keys:
        pts = sorted(
            (r.edges, r.median_s)
            for r in rows
            if (r.layout, r.engine, r.ticks) == (layout, engine, T) and r.median_s
        )
        ax.plot(*zip(*pts, strict=True), marker="o", label=f"{layout}/{engine} T={T}")
    limit = sorted({(r.edges, r.limit_s) for r in rows if r.ticks == max(x.ticks for x in rows)})
    ax.plot(*zip(*limit, strict=True), "k--", label="bytes moved / bandwidth")
    ax.set(xscale="log", yscale="log", xlabel="edges P", ylabel="seconds per step")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def as_dicts(rows: list[ScaleRow]) -> list[dict[str, Any]]:
    return [asdict(r) for r in rows]
