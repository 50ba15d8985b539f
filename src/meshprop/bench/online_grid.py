"""The online methods against size and topology: what learning costs beside inference.

:func:`grid` runs, for every method of :data:`GRID_METHODS` (exact "fop", SnAp-1, UORO,
tbptt with a 4-element window), hidden size, topology of :data:`GRID_TOPOLOGIES` and layout,
one *cell* in a fresh process (``python -m meshprop.bench.online_grid CELL``, the cell as
JSON): a float32 tanh mesh (1 input, bias, H hidden, 1 output, 1 tick per element) learns a
random stream with ``mp.OnlineLearner`` and an Adam step after every element
(:func:`~meshprop.sequence.fast_adam`, denormals flushed, one thread), in rounds interleaved with
plain inference of the same network (one element at a time from the carried state: per tick
the clamped input, Eq. 3's product through the layout's ``Transition`` — built once per round,
the weights being fixed while inferring — and φ), so that both share the machine's load.  A
cell reports:

- ``ticks_per_second`` (learning, best round) and ``inference_ticks_per_second`` (best round),
  and their ratio ``slowdown`` — the cost of learning, what the targets are stated in;
- ``peak_bytes``: the resident set's high-water mark while learning minus the resident set
  before the learner was built (glibc told to mmap every block above 128 KiB, as in
  :mod:`meshprop.bench.peak`), and ``peak_growth_bytes``: how much that mark rose after the
  first round (a memory that stays flat over the stream shows 0, up to allocator noise);
- ``cosine``: the cosine similarity of the method's gradient of a ``cosine_length``-element
  stream's mean loss (weights frozen, float64) to the exact one (full BPTT over the same
  elements, ``sequence_gradient(method="bptt")``); 1 for exact methods up to rounding;
- ``representation``: for "fop", "dense" or "pattern" (:func:`meshprop.streams.fop_cost`).

A cell that cannot run says so instead of a number — "refused: would need X > limit Y" (the
memory guard's estimate above the limit) or "too slow: est. X s/tick" (exact fop's modelled
time per tick above ``max_tick_s``) — and is never dropped silently.
``meshprop bench --workload online`` prints the grid as a table and writes its rows with
``--output`` or into its run folder ``--out`` (one unit of work per cell).
"""

from __future__ import annotations

import gc
import json
import math
import subprocess
import sys
import time
from collections.abc import Callable, Sequence

import torch

from ..layout import Transition
from ..memory import MemoryLimitError, format_bytes
from ..mesh import MeshNet
from ..sequence import OnlineLearner, fast_adam, flush_denormals, sequence_gradient
from ..streams import check_stream_memory, fop_cost, get_stream_method
from ..streams.pattern import PatternCarry
from ..threads import thread_policy
from ..topology import Topology
from .memo import Memo, no_memo
from .online_methods import METHODS, _stream
from .peak import probe_environment, status_bytes

__all__ = [
    "GRID_HIDDEN",
    "GRID_METHODS",
    "GRID_TOPOLOGIES",
    "QUICK_HIDDEN",
    "grid",
    "grid_table",
    "grid_topology",
    "run_cell",
]

#: the rows of :data:`meshprop.bench.online_methods.METHODS` the grid runs
GRID_METHODS = ("fop", "snap-1", "uoro", "tbptt-4")
#: self-loops: every hidden neuron's only recurrent edge is its own (``Topology.self_loops``);
#: sparse-16: 16 random hidden → hidden edges per hidden neuron on average
#: (``Topology.sparse_random``, the degree set so that 16·H of its edges are recurrent)
GRID_TOPOLOGIES = ("self-loops", "sparse-16")
GRID_HIDDEN = (32, 256, 1024)
QUICK_HIDDEN = (32, 256)
RECURRENT_PER_NEURON = 16
_OPTIONS = {name: (method, options) for name, method, options in METHODS}


def grid_topology(kind: str, hidden: int, seed: int = 0) -> Topology:
    """The mesh of a grid cell: 1 input, bias, ``hidden`` hidden neurons, 1 output."""
    if kind == "self-loops":
        return Topology.self_loops(1, hidden, 1)
    if kind == "sparse-16":
        neurons = 1 + 1 + hidden + 1
        wired = hidden + (hidden + 1) + hidden  # input, bias and output edges of sparse_random
        degree = (wired + RECURRENT_PER_NEURON * hidden) / neurons
        return Topology.sparse_random(1, hidden, 1, degree=degree, seed=seed)
    raise ValueError(f"unknown grid topology {kind!r}; expected one of {GRID_TOPOLOGIES}")


def _learner(net: MeshNet, name: str, optimizer: torch.optim.Optimizer, **extra) -> OnlineLearner:
    method, options = _OPTIONS[name]
    return OnlineLearner(
        net,
        optimizer,
        method=method,
        truncation=options.get("truncation"),
        order=options.get("order"),
        seed=options.get("seed"),
        **extra,
    )


def _refusal(net: MeshNet, name: str, max_tick_s: float) -> str | None:
    """Why a cell cannot run (before its carry is built), or None."""
    method, options = _OPTIONS[name]
    if method == "fop":
        cost = fop_cost(net.topology, 1, torch.float32)
        if cost.seconds_per_tick > max_tick_s:
            return f"too slow: est. {cost.seconds_per_tick:.2g} s/tick ({cost.representation})"
    stream = get_stream_method(method, online=True, **options)
    try:
        check_stream_memory(stream, net.dynamics, net.storage, 1, 4)
    except MemoryLimitError as error:
        need, limit = format_bytes(error.estimate), format_bytes(error.limit)
        return f"refused: would need {need} > limit {limit}"
    return None


def _cosine(a: torch.Tensor, b: torch.Tensor) -> float:
    return float(torch.dot(a, b) / (a.norm() * b.norm()).clamp_min(1e-300))


def _timed(fn: Callable[[int], None], budget_s: float, first: int) -> tuple[float, int]:
    """Run fn(t) for t = first, first + 1, … until ``budget_s`` seconds pass: (rate, next t)."""
    t, start = first, time.perf_counter()
    while True:
        fn(t)
        t += 1
        elapsed = time.perf_counter() - start
        if elapsed >= budget_s and t - first >= 5:
            return (t - first) / elapsed, t


class _Inference:
    """Plain inference one element at a time from the carried state: per tick the clamped
    input, Eq. 3's product through the layout's ``Transition`` (built once per round: the
    weights are fixed while inferring) and φ."""

    def __init__(self, net: MeshNet) -> None:
        self.net, self.h = net, net.initial_state(1)
        self.transition: Transition | None = None

    def tick(self, x: torch.Tensor) -> None:
        net, dyn = self.net, self.net.dynamics
        if self.transition is None:
            self.transition = net.storage.transition(dyn, net.parameter.detach())
        drive = self.transition.drive(dyn.clamped_state(x, 1))
        self.h = dyn.activations.value(self.transition.pre_activation(drive, self.h))


def run_cell(cell: dict) -> dict:
    """One cell (module docstring), in this process: {ticks_per_second,
    inference_ticks_per_second, slowdown, peak_bytes, peak_growth_bytes, cosine,
    representation}."""
    topo = grid_topology(cell["topology"], cell["hidden"])
    name, layout, budget = cell["method"], cell["layout"], float(cell["budget_s"])
    rounds, length = int(cell["rounds"]), int(cell["cosine_length"])
    net = MeshNet(topo, ticks=1, activation="tanh", dtype=torch.float32, seed=0, layout=layout)
    x, target = (t.float() for t in _stream(1, 200_000, 2, seed=0))
    result: dict = {}
    with thread_policy(1), flush_denormals():
        gc.collect()
        with open("/proc/self/clear_refs", "w") as handle:
            handle.write("5")
        before = status_bytes("VmRSS")
        learner = _learner(net, name, fast_adam(net.parameters(), lr=1e-3))
        inference = _Inference(net)

        def infer(t: int) -> None:
            inference.tick(x[t])

        def learn(t: int) -> None:
            learner.step(x[t], target[t])

        for t in range(20):
            learn(t)
            infer(t)
        learn_rates, infer_rates, t_learn, t_infer, first_mark = [], [], 20, 20, 0
        for r in range(rounds):
            inference.transition = None  # the weights the learner left
            rate, t_infer = _timed(infer, budget / (2 * rounds), t_infer)
            infer_rates.append(rate)
            rate, t_learn = _timed(learn, budget / (2 * rounds), t_learn)
            learn_rates.append(rate)
            if r == 0:
                first_mark = status_bytes("VmHWM")
        peak = status_bytes("VmHWM")
        carry = learner._carry
        pattern = isinstance(carry, PatternCarry)
        result["representation"] = ("pattern" if pattern else "dense") if name == "fop" else None
        result["ticks_learned"] = t_learn
        result["peak_bytes"] = max(0, peak - before)
        result["peak_growth_bytes"] = max(0, peak - first_mark)
    result["ticks_per_second"] = max(learn_rates)
    result["inference_ticks_per_second"] = max(infer_rates)
    result["slowdown"] = result["inference_ticks_per_second"] / result["ticks_per_second"]
    # the gradient of a short stream, weights frozen, float64, against full BPTT
    with thread_policy(1):
        net64 = MeshNet(topo, ticks=1, activation="tanh", dtype=torch.float64, layout=layout)
        with torch.no_grad():
            net64.parameter.copy_(net.parameter.detach().double())
        xs, ts = _stream(1, length, 2, seed=1)
        _, exact = sequence_gradient(net64, xs, ts, method="bptt")
        sgd = torch.optim.SGD(net64.parameters(), lr=0.0)
        frozen = _learner(net64, name, sgd, update_every=length)
        for t in range(length):
            frozen.step(xs[t], ts[t])
        assert frozen.last_gradient is not None
        edges = net64.storage.edge_values
        result["cosine"] = _cosine(edges(frozen.last_gradient), edges(exact))
    return result


def grid(
    hidden: Sequence[int] = GRID_HIDDEN,
    topologies: Sequence[str] = GRID_TOPOLOGIES,
    layouts: Sequence[str] = ("dense", "sparse"),
    methods: Sequence[str] = GRID_METHODS,
    budget_s: float = 3.0,
    rounds: int = 3,
    cosine_length: int = 100,
    max_tick_s: float = 0.005,
    timeout: float = 900,
    progress: Callable[[str], None] | None = None,
    memo: Memo | None = None,
) -> list[dict]:
    """Rows {workload "online-grid", topology, hidden, neurons, edges, layout, method, note,
    and the cell's results (:func:`run_cell`; absent where ``note`` says why)}, one fresh
    process per cell (module docstring).  Each cell is a unit of work of ``memo``
    (``online-grid/TOPOLOGY/H=HIDDEN/LAYOUT/METHOD``): a cell it holds is not measured again."""
    for name in methods:
        if name not in _OPTIONS:
            raise ValueError(f"unknown grid method {name!r}; expected one of {tuple(_OPTIONS)}")
    memo = memo or no_memo
    env = probe_environment()
    settings = {"budget_s": budget_s, "rounds": rounds, "cosine_length": cosine_length}
    rows = []
    for kind in topologies:
        for H in hidden:
            topo = grid_topology(kind, H)
            for layout in layouts:
                try:
                    net: MeshNet | None = MeshNet(topo, ticks=1, dtype=torch.float32, layout=layout)
                    unbuilt = ""
                except MemoryLimitError as error:
                    net = None
                    unbuilt = (
                        f"refused: would need {format_bytes(error.estimate)} > limit "
                        f"{format_bytes(error.limit)} ({layout} layout)"
                    )
                for name in methods:
                    row = {
                        "workload": "online-grid",
                        "topology": kind,
                        "hidden": H,
                        "neurons": topo.n_neurons,
                        "edges": topo.n_edges,
                        "layout": layout,
                        "method": name,
                        "note": unbuilt if net is None else _refusal(net, name, max_tick_s) or "",
                    }

                    def measure(row: dict = row) -> dict:
                        if progress is not None:
                            progress(
                                f"online grid: {row['topology']} H={row['hidden']} "
                                f"{row['layout']} {row['method']} {row['note']}"
                            )
                        if row["note"]:
                            return row
                        return {**row, **_run_cell_process(row, env, timeout, settings)}

                    rows.append(memo(f"online-grid/{kind}/H={H}/{layout}/{name}", measure))
    return rows


def _run_cell_process(row: dict, env: dict, timeout: float, settings: dict) -> dict:
    """The results of the cell ``row`` (its topology, hidden size, layout and method),
    measured by ``python -m meshprop.bench.online_grid CELL`` (``{"note": "failed: ..."}`` when
    the process fails)."""
    cell = {key: row[key] for key in ("topology", "hidden", "layout", "method")} | settings
    command = [sys.executable, "-m", "meshprop.bench.online_grid"]
    done = subprocess.run(
        [*command, json.dumps(cell)],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        env=env,
    )
    if done.returncode != 0:
        return {"note": "failed: " + done.stderr.strip()[-300:]}
    return json.loads(done.stdout.strip().splitlines()[-1])


def _format(value: object, kind: str) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "-"
    if kind == "rate":
        return f"{value:,.0f}"
    if kind == "ratio":
        return f"{value:.2f}×"
    if kind == "bytes":
        return format_bytes(float(value))  # type: ignore[arg-type]
    if kind == "cosine":
        return f"{value:.3f}"
    return str(value)


def grid_table(rows: Sequence[dict]) -> str:
    """The grid as a Markdown table (a refused or too slow cell shows its note)."""
    lines = [
        "| topology | hidden | edges | layout | method | ticks/s (Adam every tick) | "
        "inference ticks/s | learning ÷ inference | peak memory | growth | cosine to exact |",
        "| --- | ---: | ---: | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for r in rows:
        method = r["method"]
        if r.get("representation"):
            method += f" ({r['representation']})"
        head = f"| {r['topology']} | {r['hidden']} | {r['edges']:,} | {r['layout']} | {method} |"
        if r["note"]:
            lines.append(f"{head} {r['note']} | | | | | |")
            continue
        cells = [
            _format(r.get("ticks_per_second"), "rate"),
            _format(r.get("inference_ticks_per_second"), "rate"),
            _format(r.get("slowdown"), "ratio"),
            _format(r.get("peak_bytes"), "bytes"),
            _format(r.get("peak_growth_bytes"), "bytes"),
            _format(r.get("cosine"), "cosine"),
        ]
        lines.append(f"{head} {' | '.join(cells)} |")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if len(args) != 1:
        print("usage: python -m meshprop.bench.online_grid CELL_JSON", file=sys.stderr)
        return 2
    print(json.dumps(run_cell(json.loads(args[0]))))
    return 0


if __name__ == "__main__":
    sys.exit(main())
