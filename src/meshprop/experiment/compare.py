"""Several model configurations trained over several seeds on one feature set, summarised as
the reproductions' ``results.json`` (``{"configs": [{"name", "params", "accuracies", "mean",
"std"}, ...]}``), a Markdown table and a plot of the accuracy distributions.

Each run trains through the one training loop (``meshprop.training.fit``) with Adam; run k of
every configuration uses seed k for its topology, initial weights and mini-batch order.  One
run per configuration can be trained again with a second engine (autograd) from the same seed:
the largest difference between the two trained weight matrices is reported.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..reporting import Reporter, format_table
from ..structure import StructuralLearning, UpdateSchedule
from ..training import evaluate, fit
from .models import ModelSpec, build_model

__all__ = [
    "ConfigResult",
    "Features",
    "Protocol",
    "compare",
    "console_table",
    "details_json",
    "results_json",
    "results_table",
]


@dataclass
class Features:
    """Standardised features and labels of a train and a test split."""

    X_train: np.ndarray
    y_train: np.ndarray
    X_test: np.ndarray
    y_test: np.ndarray

    @property
    def n_features(self) -> int:
        return int(self.X_train.shape[1])

    @property
    def n_classes(self) -> int:
        return int(max(self.y_train.max(), self.y_test.max())) + 1


@dataclass(frozen=True)
class Protocol:
    """How every configuration is trained: Adam(``lr``), ``epochs`` passes over mini-batches of
    ``batch_size``, cross-entropy on the logits, in ``dtype``, gradient engine ``grad``."""

    epochs: int = 10
    batch_size: int = 64
    lr: float = 3e-3
    grad: str = "auto"
    compare_grad: str | None = "autograd"
    dtype: torch.dtype = torch.float64
    #: a structure rule's update period and initial drop fraction (RigL's ΔT and α; updates
    #: stop after three quarters of the steps, the drop fraction decays by a cosine)
    update_every: int = 100
    drop_fraction: float = 0.3


@dataclass
class ConfigResult:
    """The runs of one configuration."""

    name: str
    params: int
    accuracies: list[float] = field(default_factory=list)
    seconds: list[float] = field(default_factory=list)
    #: largest |ΔA| between the run trained with ``grad`` and with ``compare_grad`` (run 0).
    max_weight_difference: float | None = None
    compare_accuracy: float | None = None

    @property
    def mean(self) -> float:
        return statistics.mean(self.accuracies)

    @property
    def std(self) -> float:
        return statistics.stdev(self.accuracies) if len(self.accuracies) > 1 else 0.0


def _train(
    spec: ModelSpec,
    data: Features,
    seed: int,
    grad: str,
    protocol: Protocol,
    reporter: Reporter,
    threads: int | None,
) -> tuple[float, torch.Tensor, float, int]:
    net = build_model(spec, data.n_features, data.n_classes, seed, grad, protocol.dtype)
    structure = None
    if spec.structure != "static":
        steps = protocol.epochs * -(-len(data.y_train) // protocol.batch_size)
        schedule = UpdateSchedule(
            protocol.update_every, protocol.drop_fraction, end_step=max(1, int(0.75 * steps))
        )
        structure = StructuralLearning(spec.structure, schedule, "cross_entropy", seed=seed)
    start = time.perf_counter()
    fit(
        net,
        (data.X_train, data.y_train),
        loss="cross_entropy",
        optimizer="adam",
        lr=protocol.lr,
        epochs=protocol.epochs,
        batch_size=protocol.batch_size,
        seed=seed,
        reporter=reporter,
        threads=threads,
        evaluate_train=False,
        after_step=structure,
    )
    seconds = time.perf_counter() - start
    accuracy = evaluate(net, data.X_test, data.y_test)["accuracy"]
    return accuracy, net.parameter.detach().clone(), seconds, net.n_parameters


def compare(
    specs: Sequence[ModelSpec],
    data: Features,
    runs: int,
    protocol: Protocol,
    reporter: Reporter | None = None,
    threads: int | None = None,
    on_run: Callable[[str, int, float, float], None] | None = None,
) -> list[ConfigResult]:
    """Train every spec ``runs`` times (seeds 0..runs−1) and, for seed 0, once more with
    ``protocol.compare_grad``; a progress bar counts the runs."""
    if runs < 1:
        raise ValueError(f"runs must be >= 1, got {runs}")
    reporter = reporter or Reporter()
    quiet = Reporter(progress=False)
    extra = 0 if protocol.compare_grad is None else 1
    bar = reporter.bar(total=len(specs) * (runs + extra), desc="runs")
    results = []
    try:
        for spec in specs:
            result: ConfigResult | None = None
            weights0 = None
            for seed in range(runs):
                acc, A, seconds, params = _train(
                    spec, data, seed, protocol.grad, protocol, quiet, threads
                )
                if result is None:
                    result = ConfigResult(spec.name, params)
                    weights0 = A
                result.accuracies.append(acc)
                result.seconds.append(seconds)
                bar.update(1)
                bar.set_postfix(config=spec.name, acc=f"{acc:.4f}")
                if on_run is not None:
                    on_run(spec.name, seed, acc, seconds)
            assert result is not None and weights0 is not None
            if protocol.compare_grad is not None:
                acc, A, _, _ = _train(
                    spec, data, 0, protocol.compare_grad, protocol, quiet, threads
                )
                result.compare_accuracy = acc
                result.max_weight_difference = float((A - weights0).abs().max())
                bar.update(1)
            results.append(result)
    finally:
        bar.close()
    return results


def results_json(results: Sequence[ConfigResult]) -> dict:
    """Exactly the reproductions' schema: ``{"configs": [{"name", "params", "accuracies", "mean",
    "std"}, ...]}`` (std: the sample standard deviation, 0 for one run)."""
    return {
        "configs": [
            {
                "name": r.name,
                "params": r.params,
                "accuracies": r.accuracies,
                "mean": r.mean,
                "std": r.std,
            }
            for r in results
        ]
    }


def details_json(results: Sequence[ConfigResult], extra: dict | None = None) -> dict:
    """What results.json leaves out: times per run, the engine comparison, ``extra``."""
    return {
        "configs": [
            {
                "name": r.name,
                "seconds": r.seconds,
                "compare_accuracy": r.compare_accuracy,
                "max_weight_difference": r.max_weight_difference,
            }
            for r in results
        ],
        **(extra or {}),
    }


def results_table(results: Sequence[ConfigResult], compare_grad: str | None) -> str:
    """The Markdown table: mean ± std, parameter count, time per run, the engine check."""
    header = ["config", "params", "test accuracy (mean ± std)", "runs", "time / run"]
    if compare_grad is not None:
        header.append(f"max abs weight difference vs {compare_grad} (run 0)")
    lines = ["| " + " | ".join(header) + " |", "|" + " --- |" * len(header)]
    for r in results:
        row = [
            r.name,
            str(r.params),
            f"{r.mean:.4f} ± {r.std:.4f}",
            str(len(r.accuracies)),
            f"{statistics.mean(r.seconds):.1f} s",
        ]
        if compare_grad is not None:
            row.append(f"{r.max_weight_difference:.1e}")
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines)


def console_table(results: Sequence[ConfigResult]) -> str:
    rows = [("config", "params | mean ± std | time / run")]
    for r in results:
        rows.append(
            (
                r.name,
                f"{r.params:6d} | {r.mean:.4f} ± {r.std:.4f} | {statistics.mean(r.seconds):.1f} s",
            )
        )
    return format_table(rows)


def write_outputs(
    out: Path,
    reporter: Reporter,
    results: Sequence[ConfigResult],
    details: dict,
    markdown: str,
    plot: Callable[[], Any],
    verdicts: Sequence[str],
    wall: float,
) -> None:
    """Write a comparison's files — DIR/results.json (:func:`results_json`), DIR/details.json
    (:func:`details_json` with ``details``), DIR/results.md (``markdown``, the verdicts and the
    wall time) and DIR/accuracies.png (the figure ``plot()`` returns) — and print the console
    table, the verdicts and where the results went."""
    from ..plots import plt, saver

    reporter.write_json(out / "results.json", results_json(results))
    reporter.write_json(out / "details.json", details_json(results, details))
    text = markdown + "\n\n" + "\n".join(f"- {v}" for v in verdicts)
    reporter.write_text(out / "results.md", f"{text}\n\nTotal wall time {wall:.0f} s.\n")
    fig = plot()
    reporter.write_with(out / "accuracies.png", saver(fig, dpi=90))
    plt.close(fig)
    reporter.print(console_table(results))
    for v in verdicts:
        reporter.print(v)
