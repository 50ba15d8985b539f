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
from dataclasses import asdict

import torch

__all__ = ["register", "run"]

DEFAULT_WORKLOADS = ("paper", "ticks", "neurons", "density", "batch", "rate")
MEMORY_WORKLOADS = ("paper", "ticks")


def register(subparsers: argparse._SubParsersAction) -> None:
    from ..bench import ALL_ENGINES, WORKLOADS

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
        help=f"workloads to run, from {', '.join(WORKLOADS)} (default: "
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
        "paper and ticks workloads (auto), every workload (all) or none",
    )
    p.add_argument(
        "--budget",
        type=float,
        default=1.0,
        metavar="SECONDS",
        help="time spent per engine and point, at least 3 rounds (default 1.0)",
    )
    p.add_argument(
        "--max-predicted",
        type=float,
        default=2.0,
        metavar="SECONDS",
        help="skip an engine whose predicted step time exceeds this (default 2)",
    )
    p.add_argument("--threads", type=int, default=2, help="torch threads (default 2)")
    p.add_argument("--json", action="store_true", help="print JSON rows instead of a table")
    p.add_argument("--output", default=None, metavar="PATH", help="also write the JSON rows here")
    p.set_defaults(handler=run)


def _ms(value: float | None) -> str:
    return "—" if value is None else f"{value * 1e3:.3f}"


def _mib(value: int | None) -> str:
    return "—" if value is None else f"{value / 2**20:.2f}"


def format_table(rows) -> str:
    header = (
        "workload",
        "engine",
        "ticks",
        "neurons",
        "edges",
        "batch",
        "median ms",
        "min ms",
        "max ms",
        "peak MiB",
        "note",
    )
    lines = [header]
    for r in rows:
        lines.append(
            (
                r.workload,
                r.engine,
                str(r.ticks),
                str(r.neurons),
                str(r.edges),
                str(r.batch),
                _ms(r.median_s),
                _ms(r.min_s),
                _ms(r.max_s),
                _mib(r.peak_bytes),
                r.note[:70],
            )
        )
    widths = [max(len(line[k]) for line in lines) for k in range(len(header))]
    out = [
        "  ".join(cell.ljust(w) for cell, w in zip(line, widths, strict=True)).rstrip()
        for line in lines
    ]
    out.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(out)


def summary(rows, machine_flops: float | None) -> list[str]:
    """The issue's target figures, computed from the rows (nothing hard-coded)."""
    from ..bench import interleaved_matmul_rate, update_rate

    lines = []

    def get(workload, engine, **match):
        for r in rows:
            if (
                r.workload == workload
                and r.engine == engine
                and r.median_s is not None
                and all(getattr(r, k) == v for k, v in match.items())
            ):
                return r
        return None

    ref, fop = get("paper", "reference"), get("paper", "fop")
    fact, auto = get("paper", "fop_factored"), get("paper", "autograd")
    if ref and fop:
        lines.append(
            f"paper: reference / fop = {ref.median_s / fop.median_s:.1f}x median, "
            f"{ref.min_s / fop.min_s:.1f}x min (target >= 30x)"
        )
    forward_only = [r for r in (fop, fact) if r]
    if ref and forward_only:
        best = min(forward_only, key=lambda r: r.median_s)
        lines.append(
            f"paper: reference / best forward-only ({best.engine}) = "
            f"{ref.median_s / best.median_s:.0f}x median, {ref.min_s / best.min_s:.0f}x "
            "min (target >= 300x)"
        )
        if auto:
            lines.append(
                f"paper: best forward-only / autograd = "
                f"{best.median_s / auto.median_s:.2f}x median, "
                f"{best.min_s / auto.min_s:.2f}x min (target <= 3x)"
            )
    for engine in ("fop", "fop_factored", "bptt", "autograd"):
        a, b = get("ticks", engine, ticks=10), get("ticks", engine, ticks=1000)
        if a and b and a.peak_bytes and b.peak_bytes is not None:
            lines.append(
                f"ticks: {engine} peak memory 1000 ticks / 10 ticks = "
                f"{b.peak_bytes / a.peak_bytes:.2f}x"
                + (" (target <= 1.1x)" if engine == "fop" else "")
            )
    rates = update_rate(rows)
    machine_flops = interleaved_matmul_rate(rows) or machine_flops
    if rates and machine_flops:
        step, update = rates
        lines.append(
            f"rate: fop sensitivity update (ticks 3..10) {update / 1e9:.1f} GFLOP/s = "
            f"{100 * update / machine_flops:.0f}% of the float32 matmul rate "
            f"{machine_flops / 1e9:.1f} GFLOP/s (target >= 50%); whole step "
            f"{step / 1e9:.1f} GFLOP/s = {100 * step / machine_flops:.0f}%"
        )
    return lines


def run(args: argparse.Namespace) -> int:
    from ..bench import WORKLOADS, matmul_rate, run_workload
    from ..engines import ENGINES

    for name in args.workload:
        if name not in WORKLOADS:
            raise ValueError(f"unknown workload {name!r}; expected one of {tuple(WORKLOADS)}")
    for name in args.engines or ():
        if name not in ENGINES:
            raise ValueError(f"unknown engine {name!r}; expected one of {tuple(ENGINES)}")
    if args.threads < 1:
        raise ValueError(f"--threads must be >= 1, got {args.threads}")
    if not args.budget > 0:
        raise ValueError(f"--budget must be > 0 seconds, got {args.budget}")
    torch.set_num_threads(args.threads)
    rates = [matmul_rate()]

    def progress(text: str) -> None:
        print(f"[bench] {text}", file=sys.stderr, flush=True)

    rows = []
    for name in args.workload:
        memory = args.memory == "all" or (args.memory == "auto" and name in MEMORY_WORKLOADS)
        rows += run_workload(
            name,
            args.engines,
            memory=memory,
            budget_s=args.budget,
            max_predicted_s=args.max_predicted,
            threads=args.threads,
            progress=progress,
        )
    rates.append(matmul_rate())
    rate = max(rates)  # the better of before/after: FOP's fraction is not flattered by load
    wait_policy = os.environ.get("OMP_WAIT_POLICY", "unset")
    machine = {
        "engine": "matmul",
        "workload": "machine",
        "ticks": 0,
        "neurons": 1024,
        "batch": 1,
        "median_s": 2 * 1024**3 / rate,
        "min_s": None,
        "max_s": None,
        "peak_bytes": None,
        "gflop_s": rate / 1e9,
        "threads": args.threads,
        "omp_wait_policy": wait_policy,
    }
    records = [machine] + [asdict(r) for r in rows]
    if args.output:
        with open(args.output, "w") as f:
            json.dump(records, f, indent=1)
    if args.json:
        json.dump(records, sys.stdout, indent=1)
        print()
        return 0
    print(
        f"float32 matmul rate (1024x1024, {args.threads} threads): {rate / 1e9:.1f} GFLOP/s "
        f"(best of {rates[0] / 1e9:.1f} before and {rates[1] / 1e9:.1f} after the workloads); "
        f"OMP_WAIT_POLICY={wait_policy}"
    )
    print(format_table(rows))
    for line in summary(rows, rate if math.isfinite(rate) else None):
        print(line)
    return 0
