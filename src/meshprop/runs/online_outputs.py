"""The files of a finished ``meshprop online`` run: ``metrics.json``, ``curve.json`` (the
learning curve), ``learning_curve.png`` and ``checkpoint/`` (the trained network), each written
atomically through the run folder, whose manifest then lists them with the saved state."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ..mesh import MeshNet
from .artefacts import save_checkpoint_atomically
from .folder import RunFolder
from .online import OnlineResult
from .online_config import OnlineConfig
from .online_state import STATE_FILE

__all__ = ["OUTPUT_FILES", "plot_run", "summary_line", "write_online_run"]

#: the files a finished ``meshprop online`` run writes (besides checkpoint/ and the manifest)
OUTPUT_FILES = ("metrics.json", "curve.json", "learning_curve.png")


def write_online_run(
    folder: RunFolder, config: OnlineConfig, result: OnlineResult, net: MeshNet
) -> None:
    """Write the outputs of ``result`` into ``folder`` and complete its manifest (the outputs,
    ``checkpoint/``, ``config.json`` and the saved state)."""
    folder.write_json("metrics.json", result.metrics)
    folder.write_text("curve.json", json.dumps(result.curve) + "\n")
    title = f"{result.metrics['task']} · {config.method}"
    folder.write_with("learning_curve.png", lambda path: plot_run(result, path, title))
    checkpoint = save_checkpoint_atomically(
        folder.path("checkpoint"), net, {"online": config.to_dict()}
    ).parent
    folder.finish(folder.path(STATE_FILE), *sorted(checkpoint.iterdir()))


def plot_run(result: OnlineResult, path: Path, title: str) -> None:
    """The learning curve (window-mean training loss, and accuracy for ±1 tasks) beside the
    network's output against the target on the first scored test elements, with the metric
    and the baselines in the legend."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    curve, trace, metrics = result.curve, result.test_trace, result.metrics
    fig, (ax, right) = plt.subplots(1, 2, figsize=(11, 3.8))
    ticks = [p["tick"] for p in curve]
    ax.plot(ticks, [p["loss"] for p in curve], color="C0", label="loss")
    ax.set_xlabel("ticks (stream elements)")
    ax.set_ylabel("training loss (window mean)")
    if curve and "accuracy" in curve[0]:
        twin = ax.twinx()
        twin.plot(ticks, [p["accuracy"] for p in curve], color="C1", label="accuracy")
        twin.set_ylabel("training accuracy")
        twin.set_ylim(0, 1.02)
    ax.set_title(title)
    metric = metrics.get("metric", "")
    score = metrics.get(f"test_{metric}")
    if trace.get("element"):
        marker = "." if metric != "nmse" else None
        right.plot(trace["element"], trace["target"], color="k", lw=1, marker=marker,
                   label="target")  # fmt: skip
        right.plot(trace["element"], trace["output"], color="C3", lw=1, marker=marker,
                   label=f"network ({metric} {score:.3g})")  # fmt: skip
        for name, value in metrics.get("baselines", {}).items():
            right.plot([], [], " ", label=f"{name}: {value:.3g}")
        right.legend(fontsize=7, loc="upper right")
    right.set_xlabel("test element")
    right.set_title("held-out stream: output against target")
    fig.tight_layout()
    fig.savefig(path, dpi=100, format="png")
    plt.close(fig)


def summary_line(metrics: dict[str, Any]) -> str:
    """``test nmse 0.00098 · baselines: persistence 0.022, ridge_ar5 2.2e-05``."""
    metric = metrics["metric"]
    baselines = ", ".join(f"{k} {v:.3g}" for k, v in metrics["baselines"].items())
    return f"test {metric} {metrics[f'test_{metric}']:.3g} · baselines: {baselines}"
