"""``meshprop bench``: the gradient engines side by side (time per step, peak memory).

    meshprop bench                                   # every workload, a table
    meshprop bench --workload paper ticks --json     # JSON rows on stdout
    meshprop bench --workload tiny --memory none --output rows.json
    meshprop bench --out runs/bench                  # a run folder; --resume continues it

Rows: {engine, workload, ticks, neurons, batch, median_s, min_s, max_s, peak_bytes, ...}; see
``meshprop.bench`` for how time and memory are measured.  The settings are
:class:`BenchConfig` (its fields are the options; ``--config FILE`` gives them from a file).

With ``--out DIR`` the sweep is a run (:class:`~meshprop.runs.folder.RunFolder`): the folder is
checked before anything is measured (one holding another run is refused unless ``--resume``
or ``--overwrite``), every unit of work (a workload, a cell of the online grid, a size of
``--workload scale``; :mod:`meshprop.bench.sweep`) is saved in ``DIR/units.json`` as soon as it
is measured, and ``--resume`` after an interruption (even SIGKILL) measures only the units not
saved.  DIR holds ``config.json``, ``bench.json`` (the JSON rows), ``scale.png`` (``--workload
scale``) and ``run.json`` listing them; SIGINT/SIGTERM stop with one line and status 130/143.
``--output PATH`` writes the JSON rows (and scale's plot beside them) atomically, with or
without ``--out``.
"""

from __future__ import annotations

import argparse
import functools
import json
import math
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..atomic import atomic_write_text, atomic_write_with
from ..bench import WORKLOADS, summary, table
from ..bench.memo import Memo, no_memo
from ..bench.sweep import ScaleSweep, Sweep, run_scale_sweep, run_sweep
from ..bench.workloads import STREAM_WORKLOADS
from ..devices import DEVICES, require_device
from ..engines import ENGINES
from ..runs.config import setting
from ..runs.folder import UNITS_FILE, RunFolder
from ..runs.settings import ConfigError, check_fields, positive
from ..threads import thread_policy
from .checks import declare_outputs
from .interrupts import StopRequest
from .options import SHARED_OPTIONS, add_run_options, add_settings_options, resolve_settings
from .runner import run_command

__all__ = ["BenchConfig", "register"]

DEFAULT_WORKLOADS = ("paper", "published", "ticks", "neurons", "density", "batch", "rate")
#: the thread count of the published benchmarks (docs/performance.md)
BENCH_THREADS = 2
#: the run folder's files
ROWS_FILE = "bench.json"
SCALE_PLOT = "scale.png"


def _workload_names() -> tuple[str, ...]:
    return (*WORKLOADS, *STREAM_WORKLOADS, "scale")


@dataclass
class BenchConfig:
    """The settings of ``meshprop bench`` (saved as its run folder's ``config.json``)."""

    workload: list[str] = setting(  # noqa: RUF009 (setting is dataclasses.field)
        list(DEFAULT_WORKLOADS),
        "workloads to run; scale (step time and memory against N = 10^3..10^5 sparse neurons, "
        "see meshprop.bench.scale) runs alone",
        group="workloads",
        metavar="NAME",
        choices=_workload_names,
        nargs="+",
    )
    engines: list[str] | None = setting(  # noqa: RUF009
        None,
        "restrict to these engines",
        group="workloads",
        metavar="NAME",
        choices=lambda: tuple(ENGINES),
        nargs="+",
        shown="each workload's own",
    )
    memory: str = setting(
        "auto",
        "measure peak memory (a fresh process per engine and point): for the paper, published "
        "and ticks workloads (auto), every workload (all) or none",
        group="measurement",
        choices=lambda: ("auto", "all", "none"),
    )
    budget: float = setting(
        1.0,
        "time spent per engine and point, at least 3 rounds",
        group="measurement",
        metavar="SECONDS",
        check=("> 0", positive),
    )
    max_predicted: float = setting(
        2.0,
        "skip an engine whose predicted step time exceeds this",
        group="measurement",
        metavar="SECONDS",
        check=("> 0", positive),
    )
    threads: int = setting(
        BENCH_THREADS,
        SHARED_OPTIONS["--threads"] + ", the count the engines are timed at",
        group="measurement",
        metavar="N",
        check=(">= 0", lambda v: v >= 0),
    )
    sizes: list[int] | None = setting(  # noqa: RUF009
        None,
        "neuron counts of --workload scale, or the hidden sizes of --workload online's grid",
        group="workloads",
        metavar="N",
        nargs="+",
        check=(">= 1 each", lambda v: bool(v) and min(v) >= 1),
        shown="1000 3000 10000 30000 100000 for scale, 32 256 1024 for online",
    )
    scale_topology: str = setting(
        "wired",
        "meshes of --workload scale: wired (Topology.sparse_random) or random (Topology.random)",
        group="workloads",
        choices=lambda: ("wired", "random"),
    )
    device: str = setting(
        "cpu",
        "where --workload scale runs (the other workloads run on the CPU)",
        group="measurement",
        choices=lambda: DEVICES,
    )
    quick: bool = setting(
        False,
        "--workload online: a shorter run (online FOP at H = 32 only; the grid at 32 and 256 "
        "hidden neurons, 1 s per cell)",
        group="workloads",
    )

    def __post_init__(self) -> None:
        check_fields(self)
        if self.device != "cpu" and self.workload != ["scale"]:
            raise ConfigError(
                f"{{0}} {self.device}: only --workload scale runs on a GPU; give --workload "
                "scale, or --device cpu",
                "device",
            )


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "bench",
        help="time and memory of the gradient engines, side by side",
        description="Run the gradient engines side by side on benchmark workloads and print "
        "time per step (median, min, max over interleaved rounds) and peak memory. With --out "
        "the sweep is a run folder: every workload (every cell of the online grid, every size "
        "of scale) is saved as it is measured, and --resume measures only the rest.",
    )
    add_settings_options(p, BenchConfig)
    group = p.add_argument_group("output")
    group.add_argument("--json", action="store_true", help="print JSON rows instead of a table")
    group.add_argument(
        "--output",
        default=None,
        metavar="PATH",
        help="also write the JSON rows here (atomically; --workload scale: its plot beside, "
        "as PATH with .png)",
    )
    add_run_options(
        p,
        out=None,
        threads=None,
        title="run folder",
        optional_out=f"({ROWS_FILE}, units.json; default: none, the results are printed only)",
        progress_note=" (the lines on standard error)",
    )
    p.set_defaults(handler=handle)
    declare_outputs(p, output="file", out="dir")


def handle(args: argparse.Namespace) -> int:
    def progress(text: str) -> None:
        if not args.no_progress:
            print(f"[bench] {text}", file=sys.stderr, flush=True)

    if args.out is None:
        if args.resume or args.overwrite:
            raise ValueError("--resume and --overwrite need --out DIR (the run folder)")
        config = resolve_settings(BenchConfig, args)
        require_device(config.device)  # before any work
        with thread_policy(config.threads, "--threads") as threads:
            result = _measure(config, threads, no_memo, progress)
        _write_output(args.output, result)
        return _report(args, config, threads, result)

    def work(config: BenchConfig, folder: RunFolder, stop: StopRequest) -> int:
        import torch

        threads = torch.get_num_threads()  # run_command applies config.threads
        result = _measure(config, threads, folder.unit, progress)
        folder.write_json(ROWS_FILE, result.records)
        if "scale" in config.workload:
            folder.write_with(SCALE_PLOT, functools.partial(_plot_scale, result.rows))
        folder.finish(folder.path(UNITS_FILE))
        _write_output(args.output, result)
        return _report(args, config, threads, result)

    return run_command(
        args,
        "bench",
        BenchConfig,
        work,
        prepare=lambda config: require_device(config.device),
        state=UNITS_FILE,
    )


def _measure(
    config: BenchConfig, threads: int, memo: Memo, progress: Callable[[str], None]
) -> Sweep | ScaleSweep:
    """The sweep of ``config`` (:mod:`meshprop.bench.sweep`), keeping the units ``memo``
    holds: a :class:`ScaleSweep` for ``--workload scale``, else a :class:`Sweep`."""
    if "scale" in config.workload:
        return run_scale_sweep(
            config.sizes,
            topology=config.scale_topology,
            device=config.device,
            threads=threads,
            memo=memo,
            progress=progress,
        )
    return run_sweep(
        config.workload,
        config.engines,
        memory=config.memory,
        budget_s=config.budget,
        max_predicted_s=config.max_predicted,
        threads=threads,
        quick=config.quick,
        sizes=config.sizes,
        memo=memo,
        progress=progress,
    )


def _plot_scale(rows: list[Any], path: Path) -> None:
    from ..bench import scale

    scale.plot(rows, str(path))


def _write_output(output: str | None, result: Sweep | ScaleSweep) -> None:
    """``--output PATH``: the JSON rows, and for scale its plot as PATH with .png (atomic)."""
    if not output:
        return
    atomic_write_text(output, json.dumps(result.records, indent=1))
    if isinstance(result, ScaleSweep):
        plot = os.path.splitext(output)[0] + ".png"
        atomic_write_with(plot, functools.partial(_plot_scale, result.rows))


def _report(
    args: argparse.Namespace, config: BenchConfig, threads: int, result: Sweep | ScaleSweep
) -> int:
    """The rows on standard output: JSON with ``--json``, else the tables and summary."""
    if args.json:
        json.dump(result.records, sys.stdout, indent=1)
        print()
        return 0
    if isinstance(result, ScaleSweep):
        return _report_scale(config, threads, result)
    wait_policy = os.environ.get("OMP_WAIT_POLICY", "unset")
    before, after = result.rates
    print(
        f"float32 matmul rate (1024x1024, {threads} threads): {result.rate / 1e9:.1f} GFLOP/s "
        f"(best of {before / 1e9:.1f} before and {after / 1e9:.1f} after the workloads); "
        f"OMP_WAIT_POLICY={wait_policy}"
    )
    if result.rows:
        print(table(result.rows))
    grid_rows = [r for r in result.streams if r.get("workload") == "online-grid"]
    for record in result.streams:
        if record.get("workload") != "online-grid":
            print(json.dumps(record))
    if grid_rows:
        from ..bench.online_grid import grid_table

        print(grid_table(grid_rows))
    for line in summary(result.rows, result.rate if math.isfinite(result.rate) else None):
        print(line)
    return 0


def _report_scale(config: BenchConfig, threads: int, result: ScaleSweep) -> int:
    head = result.records[0]
    print(
        f"measured bandwidth: {result.rate / 1e9:.1f} GB/s ({config.device}, {threads} threads); "
        f"sweep took {result.seconds:.0f} s"
    )
    for r in result.rows:
        time_s = "-" if r.median_s is None else f"{r.median_s * 1e3:.2f} ms"
        peak = "-" if r.peak_bytes is None else f"{r.peak_bytes / 2**20:.1f} MiB"
        print(
            f"{r.layout:6} {r.engine:12} N={r.neurons:<7} P={r.edges:<8} T={r.ticks} "
            f"{time_s:>12} peak {peak:>10}  limit {r.limit_s * 1e3:.2f} ms {r.note[:60]}"
        )
    large = head["slopes_n_ge_1e4"]
    for key, slope in head["slopes"].items():
        tail = f", N >= 10^4: {large[key]:.2f}" if key in large else ""
        print(f"slope of log(time) vs log(edges), {key}: {slope:.2f} (all N){tail}")
    for c in result.checks:
        print(
            f"sparse fop/bptt N={c.neurons} T={c.ticks}: {c.fop_over_bptt:.2f}x; the auto model "
            f"picks {c.chosen}, measured {c.chosen_over_best:.2f}x the faster (target <= 1.10)"
        )
    return 0
