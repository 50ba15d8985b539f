"""Plots for docs/performance.md from the JSON rows of ``meshprop bench --output``.

    python benchmarks/plot.py bench.json docs/img

Writes time_vs_ticks.png, memory_vs_ticks.png and time_vs_neurons.png (matplotlib, Agg).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import matplotlib
import matplotlib.ticker

matplotlib.use("Agg")
import matplotlib.pyplot as plt

STYLE = {
    "reference": ("tab:gray", "x"),
    "fop": ("tab:blue", "o"),
    "fop_factored": ("tab:green", "s"),
    "bptt": ("tab:orange", "^"),
    "autograd": ("tab:red", "v"),
}


def _series(rows, workload, x_key, y_key):
    out = {}
    for r in rows:
        if r["workload"] == workload and r.get(y_key) is not None and r["engine"] in STYLE:
            out.setdefault(r["engine"], []).append((r[x_key], r[y_key]))
    return {k: sorted(v) for k, v in out.items()}


def _plot(rows, workload, x_key, y_key, scale, xlabel, ylabel, title, path, logy=True):
    fig, ax = plt.subplots(figsize=(4.6, 3.2), dpi=110)
    series = _series(rows, workload, x_key, y_key)
    for engine, points in series.items():
        color, marker = STYLE[engine]
        xs, ys = zip(*points, strict=True)
        ax.plot(xs, [y * scale for y in ys], marker=marker, color=color, label=engine)
    ax.set_xscale("log")
    ticks = sorted({x for points in series.values() for x, _ in points})
    ax.set_xticks(ticks, [str(t) for t in ticks])
    ax.xaxis.set_minor_locator(matplotlib.ticker.NullLocator())
    if logy:
        ax.set_yscale("log")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=9)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def main(source: str, folder: str) -> None:
    rows = json.loads(Path(source).read_text())
    out = Path(folder)
    out.mkdir(parents=True, exist_ok=True)
    _plot(
        rows,
        "ticks",
        "ticks",
        "median_s",
        1e3,
        "ticks T",
        "time per step (ms)",
        "time vs ticks (N=37, batch 16)",
        out / "time_vs_ticks.png",
    )
    _plot(
        rows,
        "ticks",
        "ticks",
        "peak_bytes",
        1 / 2**20,
        "ticks T",
        "peak extra RSS (MiB)",
        "memory vs ticks (N=37, batch 16)",
        out / "memory_vs_ticks.png",
        logy=False,
    )
    _plot(
        rows,
        "neurons",
        "neurons",
        "median_s",
        1e3,
        "neurons N",
        "time per step (ms)",
        "time vs neurons (3 ticks, batch 4, density 0.25)",
        out / "time_vs_neurons.png",
    )


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit("usage: python benchmarks/plot.py ROWS.json OUTPUT_FOLDER")
    main(sys.argv[1], sys.argv[2])
