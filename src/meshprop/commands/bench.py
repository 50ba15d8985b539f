"""``meshprop bench``: the gradient engines side by side (time per step, peak memory).

    meshprop bench                                   # every workload, a table
    meshprop bench --workload paper ticks --json     # JSON rows on stdout
    meshprop bench --workload tiny --memory none --output rows.json

Rows: {engine, workload, ticks, neurons, batch, median_s, min_s, max_s, peak_bytes, ...}; see
``meshprop.bench`` for how time and memory are measured.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from dataclasses import asdict

from ..bench import (
    ALL_ENGINES,
    WORKLOADS,
    matmul_rate,
    run_workload,
    summary,
    table,
)
from ..bench.report import machine_record
from ..bench.workloads import STREAM_WORKLOADS
from ..devices import DEVICES, require_device
from ..engines import ENGINES
from ..threads import thread_policy
from .checks import declare_outputs
from .options import add_threads_option

__all__ = ["register", "run"]

DEFAULT_WORKLOADS = ("paper", "published", "ticks", "neurons", "density", "batch", "rate")
MEMORY_WORKLOADS = ("paper", "published", "ticks")
#: the thread count of the published benchmarks (docs/performance.md)
BENCH_THREADS = 2


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "bench",
        help="time and memory of the gradient engines, side by side",
        description="Run the gradient engines side by side on benchmark workloads and print "
        "time per step (median, min, max over interleaved rounds) and peak memory.",
    )
    p.add_argument(
        "--workload",
        nargs="+",
        default=list(DEFAULT_WORKLOADS),
        metavar="NAME",
        help=f"workloads to run, from {', '.join([*WORKLOADS, *STREAM_WORKLOADS])}, or scale "
        "(step time and memory against N = 10^3..10^5 sparse neurons, run alone; see "
        "meshprop.bench.scale) (default: "
        f"{' '.join(DEFAULT_WORKLOADS)})",
    )
    p.add_argument(
        "--engines",
        nargs="+",
        default=None,
        metavar="NAME",
        help=f"restrict to these engines (default: each workload's own, from "
        f"{', '.join(ALL_ENGINES)})",
    )
    p.add_argument(
        "--memory",
        choices=("auto", "all", "none"),
        default="auto",
        help="measure peak memory (a fresh process per engine and point): for the "
        "paper and ticks workloads (auto), every workload (all) or none (default: auto)",
    )
    p.add_argument(
        "--budget",
        type=float,
        default=1.0,
        metavar="SECONDS",
        help="time spent per engine and point, at least 3 rounds (default: 1.0)",
    )
    p.add_argument(
        "--max-predicted",
        type=float,
        default=2.0,
        metavar="SECONDS",
        help="skip an engine whose predicted step time exceeds this (default: 2)",
    )
    add_threads_option(p, BENCH_THREADS)
    p.add_argument(
        "--sizes",
        type=int,
        nargs="+",
        default=None,
        metavar="N",
        help="neuron counts of --workload scale, or the hidden sizes of --workload online's grid "
        "(default: 1000 3000 10000 30000 100000 for scale, 32 256 1024 for online)",
    )
    p.add_argument(
        "--scale-topology",
        choices=("wired", "random"),
        default="wired",
        help="meshes of --workload scale: wired (Topology.sparse_random) or random "
        "(Topology.random) (default: wired)",
    )
    p.add_argument(
        "--device",
        choices=DEVICES,
        default="cpu",
        help="where --workload scale runs: cpu, or cuda (the other workloads run on the CPU) "
        "(default: cpu)",
    )
    p.add_argument(
        "--quick",
        action="store_true",
        help="--workload online: a shorter run (online FOP at H = 32 only; the grid at 32 and "
        "256 hidden neurons, 1 s per cell)",
    )
    p.add_argument("--json", action="store_true", help="print JSON rows instead of a table")
    p.add_argument("--output", default=None, metavar="PATH", help="also write the JSON rows here")
    p.set_defaults(handler=run)
    declare_outputs(p, output="file")


def run(args: argparse.Namespace) -> int:
    require_device(args.device)  # before any work
    if args.device != "cpu" and args.workload != ["scale"]:
        raise ValueError(
            f"--device {args.device}: only --workload scale runs on a GPU; give "
            f"--workload scale, or --device cpu"
        )
    for name in args.workload:
        if name not in WORKLOADS and name not in STREAM_WORKLOADS and name != "scale":
            known = (*WORKLOADS, *STREAM_WORKLOADS, "scale")
            raise ValueError(f"unknown workload {name!r}; expected one of {known}")
    for name in args.engines or ():
        if name not in ENGINES:
            raise ValueError(f"unknown engine {name!r}; expected one of {tuple(ENGINES)}")
    if not args.budget > 0:
        raise ValueError(f"--budget must be > 0 seconds, got {args.budget}")
    if not args.max_predicted > 0:
        raise ValueError(f"--max-predicted must be > 0 seconds, got {args.max_predicted}")
    if args.sizes is not None and min(args.sizes) < 1:
        raise ValueError(f"--sizes must be >= 1 neurons each, got {min(args.sizes)}")
    with thread_policy(args.threads, "--threads") as threads:
        return _run(args, threads)


def _run(args: argparse.Namespace, threads: int) -> int:
    rates = [matmul_rate()]

    def progress(text: str) -> None:
        print(f"[bench] {text}", file=sys.stderr, flush=True)

    if "scale" in args.workload:
        return _run_scale(args, threads, progress)
    rows = []
    streams: list[dict] = []
    for name in args.workload:
        if name in STREAM_WORKLOADS:  # online FOP: ticks/s against H; memory against length
            from ..bench import online, online_grid

            if args.quick:
                streams += online.throughput(hidden=[32], ticks=1000, rounds=3, threads=threads)
            else:
                streams += online.throughput(threads=threads)
            # every online method against size, topology and layout: ticks/s beside inference,
            # peak memory, cosine to the exact gradient (one fresh process per cell)
            hidden = args.sizes or (
                online_grid.QUICK_HIDDEN if args.quick else online_grid.GRID_HIDDEN
            )
            streams += online_grid.grid(
                hidden=hidden,
                budget_s=1.0 if args.quick else 3.0,
                cosine_length=50 if args.quick else 100,
                progress=progress,
            )
            if args.memory == "all":
                streams += online.stream_peak()
            continue
        memory = args.memory == "all" or (args.memory == "auto" and name in MEMORY_WORKLOADS)
        rows += run_workload(
            name,
            args.engines,
            memory=memory,
            budget_s=args.budget,
            max_predicted_s=args.max_predicted,
            threads=threads,
            progress=progress,
        )
    rates.append(matmul_rate())
    rate = max(rates)  # the better of before/after: FOP's fraction is not flattered by load
    wait_policy = os.environ.get("OMP_WAIT_POLICY", "unset")
    records = [machine_record(rate, threads, wait_policy)] + [asdict(r) for r in rows] + streams
    if args.output:
        with open(args.output, "w") as f:
            json.dump(records, f, indent=1)
    if args.json:
        json.dump(records, sys.stdout, indent=1)
        print()
        return 0
    print(
        f"float32 matmul rate (1024x1024, {threads} threads): {rate / 1e9:.1f} GFLOP/s "
        f"(best of {rates[0] / 1e9:.1f} before and {rates[1] / 1e9:.1f} after the workloads); "
        f"OMP_WAIT_POLICY={wait_policy}"
    )
    if rows:
        print(table(rows))
    grid_rows = [r for r in streams if r.get("workload") == "online-grid"]
    for record in streams:
        if record.get("workload") != "online-grid":
            print(json.dumps(record))
    if grid_rows:
        from ..bench.online_grid import grid_table

        print(grid_table(grid_rows))
    for line in summary(rows, rate if math.isfinite(rate) else None):
        print(line)
    return 0


def _run_scale(args: argparse.Namespace, threads: int, progress) -> int:
    """``--workload scale``: step time and peak memory against N (meshprop.bench.scale)."""
    from ..bench import scale

    sizes = scale.SIZES if args.sizes is None else tuple(args.sizes)
    started = time.perf_counter()
    rows, rate = scale.run_scale(
        sizes=sizes, progress=progress, topology=args.scale_topology, device=args.device
    )
    elapsed = time.perf_counter() - started
    fits = scale.slopes(rows)
    checks = scale.model_checks(rows, args.scale_topology)
    records = [
        {
            "bandwidth_bytes_s": rate,
            "threads": threads,
            "device": args.device,
            "topology": args.scale_topology,
            "slopes": fits,
            "slopes_n_ge_1e4": scale.slopes(rows, min_neurons=10_000),
            "model_checks": [asdict(c) for c in checks],
        }
    ]
    records += scale.as_dicts(rows)
    if args.output:
        with open(args.output, "w") as f:
            json.dump(records, f, indent=1)
        scale.plot(rows, os.path.splitext(args.output)[0] + ".png")
    if args.json:
        json.dump(records, sys.stdout, indent=1)
        print()
        return 0
    print(
        f"measured bandwidth: {rate / 1e9:.1f} GB/s ({args.device}, {threads} threads); "
        f"sweep took {elapsed:.0f} s"
    )
    for r in rows:
        time_s = "-" if r.median_s is None else f"{r.median_s * 1e3:.2f} ms"
        peak = "-" if r.peak_bytes is None else f"{r.peak_bytes / 2**20:.1f} MiB"
        print(
            f"{r.layout:6} {r.engine:12} N={r.neurons:<7} P={r.edges:<8} T={r.ticks} "
            f"{time_s:>12} peak {peak:>10}  limit {r.limit_s * 1e3:.2f} ms {r.note[:60]}"
        )
    large = scale.slopes(rows, min_neurons=10_000)
    for key, slope in fits.items():
        tail = f", N >= 10^4: {large[key]:.2f}" if key in large else ""
        print(f"slope of log(time) vs log(edges), {key}: {slope:.2f} (all N){tail}")
    for c in checks:
        print(
            f"sparse fop/bptt N={c.neurons} T={c.ticks}: {c.fop_over_bptt:.2f}x; the auto model "
            f"picks {c.chosen}, measured {c.chosen_over_best:.2f}x the faster (target <= 1.10)"
        )
    return 0
