"""What ``meshprop bench`` reports from its rows: the table, the machine's matmul rate record,
and the summary lines computed from the rows (ratios, memory growth, FOP's achieved rate)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, NamedTuple

from ..reporting import format_table
from .timing import Row

__all__ = ["interleaved_matmul_rate", "machine_record", "summary", "table", "update_rate"]

_HEADER = (
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


def _ms(value: float | None) -> str:
    return "—" if value is None else f"{value * 1e3:.3f}"


def _mib(value: int | None) -> str:
    return "—" if value is None else f"{value / 2**20:.2f}"


def table(rows: Sequence[Row]) -> str:
    """One line per row: times in milliseconds, peak memory in MiB."""
    cells = [
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
        for r in rows
    ]
    return format_table(cells, header=_HEADER)


def machine_record(rate: float, threads: int, wait_policy: str) -> dict[str, Any]:
    """The first JSON row: the machine's float32 1024×1024 matmul rate (FLOP/s)."""
    return {
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
        "threads": threads,
        "omp_wait_policy": wait_policy,
    }


class _Timed(NamedTuple):
    """A row that was timed: its median and min seconds, its peak bytes and FLOP/s if known."""

    engine: str
    median: float
    min: float
    peak: int | None
    flop_s: float | None


def _timed(rows: Sequence[Row], workload: str, engine: str, **match: Any) -> _Timed | None:
    """The first timed row of ``engine`` on ``workload`` whose fields equal ``match``."""
    for r in rows:
        if (
            r.workload == workload
            and r.engine == engine
            and r.median_s is not None
            and r.min_s is not None
            and all(getattr(r, k) == v for k, v in match.items())
        ):
            flop_s = None if r.gflop_s is None else r.gflop_s * 1e9
            return _Timed(r.engine, r.median_s, r.min_s, r.peak_bytes, flop_s)
    return None


def update_rate(rows: Sequence[Row]) -> tuple[float, float] | None:
    """FOP's FLOP/s on the ``rate`` workload: (whole step at 10 ticks, sensitivity update).

    The update rate is the marginal one, (flops(10 ticks) − flops(2 ticks)) / (t(10) − t(2)):
    ticks 3..10 are nothing but the Eq. 17 update (batched GEMM + scatter), so the states, the
    closed-form first ticks and the final contraction cancel out.
    """
    short, long = _timed(rows, "rate", "fop", ticks=2), _timed(rows, "rate", "fop", ticks=10)
    if short is None or long is None or short.flop_s is None or long.flop_s is None:
        return None
    extra = long.median - short.median
    if extra <= 0:
        return None
    flops = long.flop_s * long.median - short.flop_s * short.median
    return long.flop_s, flops / extra


def interleaved_matmul_rate(rows: Sequence[Row]) -> float | None:
    """The matmul rate (FLOP/s) timed in the same rounds as the ``rate`` workload (the better
    of its points), or None."""
    rates = [r.gflop_s * 1e9 for r in rows if r.engine == "matmul" and r.gflop_s]
    return max(rates) if rates else None


#: the two configurations of paper 000's MNIST experiment that ``meshprop bench`` times
PAPER_WORKLOADS = {
    "paper": "85 % of the allowed edges kept, 3 ticks: the reference's NumPy file",
    "published": "15 % of the allowed edges kept, 2 ticks: the published configuration",
}
#: the exact forward-only engines (``fop_sparse`` is reached through ``auto`` only)
FORWARD_ONLY = ("fop", "fop_factored", "fop_sparse")


def _ratio(a: _Timed, b: _Timed) -> str:
    return f"{a.median / b.median:.2f}x median, {a.min / b.min:.2f}x min"


def _against_autograd(rows: Sequence[Row], workload: str) -> list[str]:
    """fop_factored / autograd, best forward-only / autograd and auto / the engine it picked."""
    autograd = _timed(rows, workload, "autograd")
    lines = []
    fact = _timed(rows, workload, "fop_factored")
    if fact and autograd:
        lines.append(
            f"{workload} ({PAPER_WORKLOADS[workload]}): fop_factored / autograd = "
            f"{_ratio(fact, autograd)} (target <= 0.8x)"
        )
    timed = [t for t in (_timed(rows, workload, e) for e in FORWARD_ONLY) if t]
    if timed and autograd:
        best = min(timed, key=lambda t: t.median)
        lines.append(
            f"{workload}: best forward-only / autograd = {_ratio(best, autograd)} "
            f"({best.engine}; target <= 0.8x)"
        )
    auto = _timed(rows, workload, "auto")
    chose = next(
        (r.extra.get("chose") for r in rows if r.workload == workload and r.engine == "auto"),
        None,
    )
    picked = _timed(rows, workload, chose) if chose else None
    if auto and picked:
        lines.append(
            f"{workload}: auto / the engine it picked ({chose}) = {_ratio(auto, picked)} "
            "(target <= 1.1x)"
        )
    return lines


def summary(rows: Sequence[Row], machine_flops: float | None) -> list[str]:
    """The performance targets' figures, computed from the rows (nothing hard-coded)."""
    lines = []
    ref, fop = _timed(rows, "paper", "reference"), _timed(rows, "paper", "fop")
    fact = _timed(rows, "paper", "fop_factored")
    if ref and fop:
        lines.append(
            f"paper: reference / fop = {ref.median / fop.median:.1f}x median, "
            f"{ref.min / fop.min:.1f}x min (target >= 30x)"
        )
    forward_only = [r for r in (fop, fact) if r]
    if ref and forward_only:
        best = min(forward_only, key=lambda r: r.median)
        lines.append(
            f"paper: reference / best forward-only ({best.engine}) = "
            f"{ref.median / best.median:.0f}x median, {ref.min / best.min:.0f}x "
            "min (target >= 300x)"
        )
    for workload in PAPER_WORKLOADS:
        lines += _against_autograd(rows, workload)
    for engine in ("fop", "fop_factored", "bptt", "autograd"):
        a, b = _timed(rows, "ticks", engine, ticks=10), _timed(rows, "ticks", engine, ticks=1000)
        if a and b and a.peak and b.peak is not None:
            lines.append(
                f"ticks: {engine} peak memory 1000 ticks / 10 ticks = "
                f"{b.peak / a.peak:.2f}x" + (" (target <= 1.1x)" if engine == "fop" else "")
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
