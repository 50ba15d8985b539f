"""One-step-ahead prediction of a series with a block-diagram network: the experiment of
``meshprop timeseries`` (:class:`TimeseriesConfig`, :func:`run_timeseries`).

The first ``train_fraction`` (70 %) of the series trains the model, the rest is the test set.
The series is standardised with the training part's mean and standard deviation.  Training
sequences are all windows of ``window`` steps of the training part (a batch of sequences, zero
initial conditions); the loss ignores the first steps of each window, while the taps fill
(``burn-in``).  ``meshprop.fit`` trains the model with full-batch Adam steps on all windows at
once, the gradients coming from the reciprocal network (paper 004).  The test predictions come
from one run over the whole series, so every test prediction sees only past values.  A linear
autoregressive model on the same window of past values, fitted to the training part by least
squares, is the baseline.

NMSE = mean((prediction − truth)²) / variance(truth) over the predicted test values.

The training state (weights, Adam's moments, the step) is saved in the run folder every
``checkpoint_every`` steps and when a stop is requested; ``--resume`` continues from it and
ends with the weights and metrics of the run never interrupted.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from ..data.tasks.series import load_series_column
from ..diagram import Diagram, draw, examples
from ..diagram.series import mackey_glass
from ..losses import LossFn
from ..mesh import MeshNet
from ..reporting import Reporter
from ..topology import Topology
from ..training import History, TrainingCheckpoint, fit
from .config import setting
from .folder import STATE_FILE, RunFolder
from .settings import ConfigError, check_fields, positive

__all__ = [
    "MODELS",
    "TimeseriesConfig",
    "ar_baseline",
    "build_model",
    "load_series",
    "run_timeseries",
    "train_diagram",
]

MODELS = ("fir", "narx", "mesh")
SOURCES = ("mackey-glass",)


@dataclass
class TimeseriesConfig:
    """Everything that defines a ``meshprop timeseries`` run (saved as its ``config.json``)."""

    data: str | None = setting(
        None,
        "CSV file with a header row (the series is the --column column; a blank cell, a blank "
        "line inside the data or a non-number is refused with its row)",
        group="series",
        metavar="FILE.csv",
        path=True,
    )
    column: str | None = setting(
        None, "the CSV column holding the series", group="series", metavar="NAME"
    )
    dataset: str | None = setting(
        None,
        "generate a series locally instead of --data",
        group="series",
        choices=lambda: SOURCES,
    )
    samples: int = setting(
        1500, "Mackey-Glass: number of samples", group="series", check=(">= 1", positive)
    )
    sample_every: float = setting(
        6.0,
        "Mackey-Glass: sampling interval in time units (multiple of 0.1)",
        group="series",
        check=("> 0", positive),
    )
    model: str = setting("fir", "the network", group="network", choices=lambda: MODELS)
    taps: int = setting(
        8, "taps of the input delay line (K)", group="network", check=(">= 1", positive)
    )
    hidden_taps: int = setting(
        2,
        "fir: taps of the hidden-to-output FIR synapses",
        group="network",
        check=(">= 0", lambda v: v >= 0),
    )
    hidden: int = setting(10, "hidden neurons", group="network", check=(">= 1", positive))
    epochs: int = setting(600, "full-batch Adam steps", group="training", check=(">= 1", positive))
    lr: float = setting(0.01, "Adam learning rate", group="training", check=("> 0", positive))
    window: int = setting(
        32, "training sequence length", group="training", check=(">= 1", positive)
    )
    train_fraction: float = setting(
        0.7,
        "the first part of the series that trains the model",
        group="training",
        check=("in [0.1, 0.95]", lambda v: 0.1 <= v <= 0.95),
    )
    seed: int = setting(0, "seeds the weights", group="training", check=(">= 0", lambda v: v >= 0))
    checkpoint_every: int = setting(
        25,
        "save the training state every N Adam steps (0: only at the end and when interrupted)",
        group="training",
        check=(">= 0", lambda v: v >= 0),
        metavar="N",
    )

    def __post_init__(self) -> None:
        check_fields(self)
        if (self.data is None) == (self.dataset is None):
            raise ConfigError(
                "give a CSV file ({0}) or a generated series ({1})", "data", "dataset"
            )
        if self.data is not None and self.column is None:
            raise ConfigError("{0} needs {1} NAME", "data", "column")
        if self.data is None and self.column is not None:
            raise ConfigError("{0} applies to a CSV file ({1}) only", "column", "data")


def merge(layers: list[dict[str, Any]]) -> dict[str, Any]:
    """Settings of a file, then the flags: a source given by a later layer replaces the
    earlier one (``--dataset`` drops a file's ``data`` and ``column``, ``--data`` its
    ``dataset``)."""
    merged: dict[str, Any] = {}
    for layer in layers:
        if "dataset" in layer and "data" not in layer:
            merged.pop("data", None)
            merged.pop("column", None)
        if "data" in layer and "dataset" not in layer:
            merged.pop("dataset", None)
        merged.update(layer)
    return merged


def load_series(config: TimeseriesConfig) -> tuple[np.ndarray, str]:
    """The series of ``config`` and a description of its source (the CSV column read by the
    strict reader of :func:`meshprop.data.tasks.series.load_series_column`)."""
    if config.dataset == "mackey-glass":
        series = mackey_glass(config.samples, tau=17.0, sample_every=config.sample_every)
        source = f"mackey-glass (tau=17, sample_every={config.sample_every}, n={config.samples})"
        return series, source
    assert config.data is not None and config.column is not None
    return load_series_column(config.data, config.column), f"{config.data}:{config.column}"


def build_model(config: Any) -> tuple[Diagram, int]:
    """The model diagram and its receptive field (past values it sees besides x(k));
    ``config`` has the fields model, hidden, taps, hidden_taps and seed."""
    H, K = config.hidden, config.taps
    if config.model == "fir":
        d = examples.fir_network((1, H, 1), (K, config.hidden_taps), seed=config.seed)
        return d, K + config.hidden_taps
    if config.model == "narx":
        return examples.narx(1, H, 1, input_taps=K, output_taps=2, seed=config.seed), K
    topo = Topology.mesh(inputs=K + 1, hidden=H, outputs=1, bias=True)
    net = MeshNet(
        topo,
        ticks=1,
        activation="tanh",
        output_activation="identity",
        dtype=torch.float64,
        seed=config.seed,
    )
    with torch.no_grad():
        net.parameter.mul_(0.5)  # a contracting start for the recurrent state
    return examples.mnn(net, input_taps=K), K


def ar_baseline(series: np.ndarray, n_train: int, order: int) -> tuple[np.ndarray, np.ndarray]:
    """Least-squares AR(order) with intercept: x̂(k+1) = c + Σ_{m<order} a_m x(k−m).

    Fitted on the targets inside the training part; returns (coefficients, predictions of
    x(order), …, x(n−1))."""
    n = len(series)
    rows = np.stack([series[order - 1 - m : n - 1 - m] for m in range(order)], axis=1)
    X = np.concatenate([rows, np.ones((len(rows), 1))], axis=1)
    y = series[order:]
    fit_rows = slice(0, n_train - order)
    coef, *_ = np.linalg.lstsq(X[fit_rows], y[fit_rows], rcond=None)
    return coef, X @ coef


def _nmse(pred: np.ndarray, truth: np.ndarray) -> float:
    return float(np.mean((pred - truth) ** 2) / np.var(truth))


def train_diagram(
    diagram: Diagram,
    x: torch.Tensor,
    target: torch.Tensor,
    loss: str | LossFn,
    epochs: int,
    lr: float,
    threads: int | None = None,
    checkpoint: TrainingCheckpoint | None = None,
    reporter: Reporter | None = None,
) -> History:
    """``epochs`` full-batch Adam steps of ``meshprop.fit`` on the sequences x, target of shape
    (T, B, width), gradients by the reciprocal network (``diagram.grad = "reciprocal"``).
    ``history["batch_loss"]`` holds the loss of every step (before its update)."""
    diagram.grad = "reciprocal"
    return fit(
        diagram,
        (x, target),
        loss=loss,
        optimizer="adam",
        lr=lr,
        epochs=epochs,
        loader=[(x, target)],  # every window in every step, in their order
        evaluate_train=False,
        progress=reporter is not None and reporter.progress,
        reporter=reporter,
        threads=threads,
        checkpoint=checkpoint,
    )


def check_series(config: TimeseriesConfig) -> np.ndarray:
    """Read the series and check that it suits the configuration (before any file is
    written); returns it."""
    series, _ = load_series(config)
    _, field = build_model(config)
    n = len(series)
    n_train = int(config.train_fraction * n)
    order = field + 1
    if n_train < config.window + 1 or n - n_train < 2 or n_train <= 2 * order:
        raise ValueError(
            f"series of {n} values is too short for window {config.window} and {order} taps "
            f"({n_train} training values)"
        )
    if series[:n_train].std() == 0:
        raise ValueError("the training part of the series is constant")
    return series


def run_timeseries(
    config: TimeseriesConfig,
    folder: RunFolder,
    stop_requested: Callable[[], bool] | None = None,
    reporter: Reporter | None = None,
) -> dict[str, Any]:
    """Train, predict and score (see the module docstring); writes ``metrics.json``,
    ``prediction.png`` and ``diagram.png`` into ``folder`` and completes its manifest.
    Returns the metrics."""
    reporter = reporter if reporter is not None else Reporter(progress=False)
    series, source = load_series(config)
    torch.manual_seed(config.seed)
    d, field = build_model(config)
    n = len(series)
    n_train = int(config.train_fraction * n)
    order = field + 1
    L = config.window
    burn = min(field, L // 2)
    mean, std = series[:n_train].mean(), series[:n_train].std()
    z = (series - mean) / std

    starts = np.arange(0, n_train - L)
    idx = starts[:, None] + np.arange(L)[None, :]
    x = torch.as_tensor(z[idx].T[:, :, None])  # (L, B, 1)
    t = torch.as_tensor(z[idx + 1].T[:, :, None])

    def loss(y: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return ((y[burn:] - target[burn:]) ** 2).mean()

    checkpoint = TrainingCheckpoint(
        folder.path(STATE_FILE),
        every=config.checkpoint_every,
        resume=folder.resuming,
        stop_requested=stop_requested,
        restored=lambda h: reporter.print(f"resuming after step {len(h)} of {config.epochs}"),
    )
    trained = train_diagram(
        d,
        x,
        t,
        loss,
        config.epochs,
        config.lr,
        threads=0,
        checkpoint=checkpoint,
        reporter=reporter,
    )
    history, seconds = trained["batch_loss"], trained.wall_time_s
    params = d.parameter_dict()

    with torch.no_grad():
        run = d.run(torch.as_tensor(z[:-1, None, None]))
    assert isinstance(run, torch.Tensor)  # one output
    pred = run[:, 0, 0].numpy()  # ŷ(k+1), k = 0..n−2
    pred = pred * std + mean
    truth = series[1:]
    test = slice(n_train - 1, None)  # predictions of x(n_train), …, x(n−1)
    train = slice(order - 1, n_train - 1)
    _, ar_pred = ar_baseline(series, n_train, order)  # predictions of x(order), …
    ar_test = ar_pred[n_train - order :]
    metrics = {
        "source": source,
        "model": config.model,
        "taps": config.taps,
        "hidden_taps": config.hidden_taps if config.model == "fir" else None,
        "hidden": config.hidden,
        "parameters": sum(p.numel() for p in params.values()),
        "epochs": config.epochs,
        "final_train_loss": history[-1],
        "train_nmse": _nmse(pred[train], truth[train]),
        "test_nmse": _nmse(pred[test], truth[test]),
        "ar_order": order,
        "ar_test_nmse": _nmse(ar_test, series[n_train:]),
        "n_train": n_train,
        "n_test": n - n_train,
        "train_seconds": round(seconds, 2),
    }
    folder.write_json("metrics.json", metrics)
    folder.write_with(
        "prediction.png",
        lambda path: _plot(path, series, pred, ar_pred, n_train, order, history, metrics),
    )
    folder.write_with("diagram.png", lambda path: draw(d, path, title=f"{config.model} network"))
    folder.finish(folder.path(STATE_FILE))
    return metrics


def _plot(path, series, pred, ar_pred, n_train, order, history, metrics) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = len(series)
    k = np.arange(n)
    fig, axes = plt.subplots(2, 1, figsize=(8, 5), gridspec_kw={"height_ratios": [2, 1]})
    ax = axes[0]
    show = slice(max(n_train - 50, 0), min(n_train + 200, n))
    ax.plot(k[show], series[show], color="black", lw=1.0, label="truth")
    ax.plot(
        k[1:][show.start : show.stop - 1],
        pred[show.start : show.stop - 1],
        color="#c0392b",
        lw=0.9,
        label=f"{metrics['model']} (test NMSE {metrics['test_nmse']:.3g})",
    )
    a, b = max(show.start - order, 0), show.stop - order
    ax.plot(
        k[order:][a:b],
        ar_pred[a:b],
        color="#2e86c1",
        lw=0.7,
        ls="--",
        label=f"linear AR({order}) (test NMSE {metrics['ar_test_nmse']:.3g})",
    )
    ax.axvline(n_train - 0.5, color="gray", lw=0.8, ls=":")
    ax.text(n_train, ax.get_ylim()[1], " test →", va="top", fontsize=8, color="gray")
    ax.set_xlabel("k")
    ax.set_title(
        f"one-step-ahead prediction: {metrics['source']} (first 200 test steps)", fontsize=9
    )
    ax.legend(fontsize=7, loc="lower left")
    axes[1].semilogy(history, color="black", lw=0.9)
    axes[1].set_xlabel("Adam step")
    axes[1].set_ylabel("train loss")
    fig.tight_layout()
    fig.savefig(path, dpi=90, format="png")
    plt.close(fig)
