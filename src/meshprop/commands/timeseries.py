"""``meshprop timeseries``: one-step-ahead prediction of a series with a block-diagram network.

The first ``--train-fraction`` (70 %) of the series trains the model, the rest is the test set.
The series is standardised with the training part's mean and standard deviation.  Training
sequences are all windows of ``--window`` steps of the training part (a batch of sequences,
zero initial conditions); the loss ignores the first steps of each window, while the taps fill
(``burn-in``).  ``meshprop.fit`` trains the model with full-batch Adam steps on all windows at
once, the gradients coming from the reciprocal network (paper 004).  The test predictions come
from one run over the whole series, so every test prediction sees only past values.  A linear
autoregressive model on the same window of past values, fitted to the training part by least
squares, is the baseline.

NMSE = mean((prediction − truth)²) / variance(truth) over the predicted test values.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
from pathlib import Path

import numpy as np
import torch

from ..diagram import Diagram, draw, examples
from ..diagram.series import mackey_glass
from ..losses import LossFn
from ..mesh import MeshNet
from ..threads import thread_policy
from ..topology import Topology
from ..training import History, fit
from .checks import declare_outputs

__all__ = ["ar_baseline", "load_series", "register", "train_diagram"]

MODELS = ("fir", "narx", "mesh")


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "timeseries",
        help="one-step-ahead prediction of a time series with an FIR, NARX or mesh network",
        description="Train a block-diagram network (FIR network of Wan 1993, NARX with output "
        "feedback, or a mesh neural network with a tapped input line) to predict x(k+1) from "
        "x(k), x(k-1), ... on the first 70% of a series; report the test NMSE on the rest "
        "against a least-squares linear AR baseline on the same window.",
    )
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--data", metavar="FILE.csv", help="CSV file with a header row")
    src.add_argument("--dataset", choices=("mackey-glass",), help="generate a series locally")
    p.add_argument("--column", metavar="NAME", help="the CSV column holding the series")
    p.add_argument("--samples", type=int, default=1500, help="Mackey-Glass: number of samples")
    p.add_argument(
        "--sample-every",
        type=float,
        default=6.0,
        help="Mackey-Glass: sampling interval in time units (multiple of 0.1)",
    )
    p.add_argument("--model", choices=MODELS, default="fir", help="the network")
    p.add_argument("--taps", type=int, default=8, help="taps of the input delay line (K)")
    p.add_argument(
        "--hidden-taps", type=int, default=2, help="fir: taps of the hidden-to-output FIR synapses"
    )
    p.add_argument("--hidden", type=int, default=10, help="hidden neurons")
    p.add_argument("--epochs", type=int, default=600, help="full-batch Adam steps")
    p.add_argument("--lr", type=float, default=0.01, help="Adam learning rate")
    p.add_argument("--window", type=int, default=32, help="training sequence length")
    p.add_argument(
        "--train-fraction",
        type=float,
        default=0.7,
        help="the first part of the series that trains the model, in [0.1, 0.95]",
    )
    p.add_argument("--seed", type=int, default=0, help="seeds the weights")
    p.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch intra-op threads (the tensors are small: 1 is fastest; 0 = torch's default)",
    )
    p.add_argument("--out", required=True, metavar="DIR", help="output directory")
    p.set_defaults(handler=handle)
    declare_outputs(p, out="dir")


def load_series(path: str, column: str | None) -> np.ndarray:
    """The numbers of one CSV column (header row required)."""
    if column is None:
        raise ValueError("--data needs --column NAME")
    file = Path(path)
    if not file.is_file():
        raise FileNotFoundError(f"no such file: {path}")
    with file.open(newline="") as handle:
        reader = csv.reader(handle)
        header = next(reader, None)
        if not header:
            raise ValueError(f"{path} is empty")
        header = [h.strip() for h in header]
        if column not in header:
            raise ValueError(f"column {column!r} not in {path}; columns are {header}")
        j = header.index(column)
        values = []
        for row_no, row in enumerate(reader, start=2):
            if not row:
                continue
            try:
                values.append(float(row[j]))
            except (ValueError, IndexError):
                raise ValueError(
                    f"{path} line {row_no}: column {column!r} holds {row[j : j + 1]}, "
                    "expected a number"
                ) from None
    series = np.asarray(values, dtype=np.float64)
    if not np.isfinite(series).all():
        raise ValueError(f"column {column!r} contains NaN or inf")
    return series


def ar_baseline(series: np.ndarray, n_train: int, order: int) -> tuple[np.ndarray, np.ndarray]:
    """Least-squares AR(order) with intercept: x̂(k+1) = c + Σ_{m<order} a_m x(k−m).

    Fitted on the targets inside the training part; returns (coefficients, predictions of
    x(order), …, x(n−1))."""
    n = len(series)
    rows = np.stack([series[order - 1 - m : n - 1 - m] for m in range(order)], axis=1)
    X = np.concatenate([rows, np.ones((len(rows), 1))], axis=1)
    y = series[order:]
    fit = slice(0, n_train - order)
    coef, *_ = np.linalg.lstsq(X[fit], y[fit], rcond=None)
    return coef, X @ coef


def _nmse(pred: np.ndarray, truth: np.ndarray) -> float:
    return float(np.mean((pred - truth) ** 2) / np.var(truth))


def _build(args: argparse.Namespace) -> tuple[Diagram, int]:
    """The model diagram and its receptive field (past values it sees besides x(k))."""
    H, K = args.hidden, args.taps
    if args.model == "fir":
        d = examples.fir_network((1, H, 1), (K, args.hidden_taps), seed=args.seed)
        return d, K + args.hidden_taps
    if args.model == "narx":
        return examples.narx(1, H, 1, input_taps=K, output_taps=2, seed=args.seed), K
    topo = Topology.mesh(inputs=K + 1, hidden=H, outputs=1, bias=True)
    net = MeshNet(
        topo,
        ticks=1,
        activation="tanh",
        output_activation="identity",
        dtype=torch.float64,
        seed=args.seed,
    )
    with torch.no_grad():
        net.parameter.mul_(0.5)  # a contracting start for the recurrent state
    return examples.mnn(net, input_taps=K), K


def train_diagram(
    diagram: Diagram,
    x: torch.Tensor,
    target: torch.Tensor,
    loss: str | LossFn,
    epochs: int,
    lr: float,
    threads: int | None = None,
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
        progress=False,
        threads=threads,
    )


def handle(args: argparse.Namespace) -> int:
    with thread_policy(args.threads, "--threads"):
        return _run(args)


def _run(args: argparse.Namespace) -> int:
    for name in ("taps", "hidden", "epochs", "window", "samples"):
        if getattr(args, name) < 1:
            raise ValueError(f"--{name.replace('_', '-')} must be >= 1, got {getattr(args, name)}")
    if args.hidden_taps < 0:
        raise ValueError(f"--hidden-taps must be >= 0, got {args.hidden_taps}")
    for name in ("lr", "sample_every"):
        value = getattr(args, name)
        if not (math.isfinite(value) and value > 0):
            raise ValueError(f"--{name.replace('_', '-')} must be > 0, got {value}")
    if not 0.1 <= args.train_fraction <= 0.95:
        raise ValueError(f"--train-fraction must be in [0.1, 0.95], got {args.train_fraction}")
    if args.dataset == "mackey-glass":
        series = mackey_glass(args.samples, tau=17.0, sample_every=args.sample_every)
        source = f"mackey-glass (tau=17, sample_every={args.sample_every}, n={args.samples})"
    else:
        series = load_series(args.data, args.column)
        source = f"{args.data}:{args.column}"
    torch.manual_seed(args.seed)
    d, field = _build(args)
    n = len(series)
    n_train = int(args.train_fraction * n)
    order = field + 1
    L = args.window
    burn = min(field, L // 2)
    if n_train < L + 1 or n - n_train < 2 or n_train <= 2 * order:
        raise ValueError(
            f"series of {n} values is too short for window {L} and {order} taps "
            f"({n_train} training values)"
        )
    mean, std = series[:n_train].mean(), series[:n_train].std()
    if std == 0:
        raise ValueError("the training part of the series is constant")
    z = (series - mean) / std

    starts = np.arange(0, n_train - L)
    idx = starts[:, None] + np.arange(L)[None, :]
    x = torch.as_tensor(z[idx].T[:, :, None])  # (L, B, 1)
    t = torch.as_tensor(z[idx + 1].T[:, :, None])

    def loss(y: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return ((y[burn:] - target[burn:]) ** 2).mean()

    trained = train_diagram(d, x, t, loss, args.epochs, args.lr, args.threads)
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
        "model": args.model,
        "taps": args.taps,
        "hidden_taps": args.hidden_taps if args.model == "fir" else None,
        "hidden": args.hidden,
        "parameters": sum(p.numel() for p in params.values()),
        "epochs": args.epochs,
        "final_train_loss": history[-1],
        "train_nmse": _nmse(pred[train], truth[train]),
        "test_nmse": _nmse(pred[test], truth[test]),
        "ar_order": order,
        "ar_test_nmse": _nmse(ar_test, series[n_train:]),
        "n_train": n_train,
        "n_test": n - n_train,
        "train_seconds": round(seconds, 2),
    }
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
    _plot(out / "prediction.png", series, pred, ar_pred, n_train, order, history, metrics)
    draw(d, out / "diagram.png", title=f"{args.model} network")
    print(
        f"{args.model}: test NMSE {metrics['test_nmse']:.4g} "
        f"(linear AR({order}) least squares: {metrics['ar_test_nmse']:.4g}), "
        f"train NMSE {metrics['train_nmse']:.4g}, {metrics['parameters']} parameters, "
        f"{seconds:.1f} s"
    )
    print(f"wrote {out / 'metrics.json'}, {out / 'prediction.png'}, {out / 'diagram.png'}")
    if not math.isfinite(metrics["test_nmse"]):
        raise ValueError("the model diverged (test NMSE is not finite)")
    return 0


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
    fig.savefig(path, dpi=90)
    plt.close(fig)
