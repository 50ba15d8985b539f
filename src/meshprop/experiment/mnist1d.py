"""MNIST-1D (generated locally by the ``mnist1d`` package, 4000 training and 1000 test
sequences of 40 values, 10 classes): sparse meshes and MLPs of similar size, trained by FOP,
measured side by side with the four baselines the dataset's authors publish.

Published by the authors (the mnist1d README, test accuracy): logistic regression 32 %,
MLP 68 %, CNN 94 %, GRU 91 %.  Our baselines, with their budgets (:data:`BASELINES`):

- ``logreg``: scikit-learn ``LogisticRegression`` (lbfgs, max_iter 2000) on the standardised
  sequence;
- ``sk-mlp``: scikit-learn ``MLPClassifier`` (100, 100) ReLU, Adam, max_iter 200 (early
  stopping off; the budget ends before scikit-learn's convergence test is met, and its
  ConvergenceWarning is silenced), one ``random_state`` per run;
- ``cnn``: three 1-D convolutions (1→25→25→25 channels, kernel 5, stride 2, padding 1, ReLU)
  and a linear layer to 10 classes, trained by ``meshprop.training.fit`` with Adam
  (:data:`TORCH_BUDGET`: lr 3e-3, 60 epochs, batch 64, float32);
- ``gru``: a one-layer GRU (hidden 32) over the 40 values, the last state through a linear
  layer, trained by ``fit`` with the same budget.

The meshes and MLPs are built by :mod:`.models` exactly as for Fashion-MNIST (bias edges kept,
the percentage = edges removed) and trained with :data:`PROTOCOL`.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from ..data.builtin import MNIST1D_SAMPLES, mnist1d_dataset
from ..reporting import Reporter
from ..training import evaluate, fit
from .compare import ConfigResult, Features, Memo, Protocol, no_memo
from .models import ModelSpec

__all__ = ["BASELINES", "PAIRS", "PROTOCOL", "PUBLISHED", "SPECS", "load", "run_baselines"]

SPECS: tuple[ModelSpec, ...] = (
    ModelSpec("mnn-80", "mnn", hidden=50, removed=0.80, ticks=2),
    ModelSpec("mnn-50", "mnn", hidden=50, removed=0.50, ticks=2),
    ModelSpec("mlp-16", "mlp", hidden=16),
    ModelSpec("mlp-32", "mlp", hidden=32),
)
#: MNN against the MLP of similar parameter count (1140 vs 1098, 2760 vs 2698 weights).
PAIRS: tuple[tuple[str, str], ...] = (("mnn-80", "mlp-16"), ("mnn-50", "mlp-32"))
PROTOCOL = Protocol(epochs=60, batch_size=64, lr=3e-3, grad="auto", compare_grad="autograd")


@dataclass(frozen=True)
class TorchBudget:
    """The torch baselines' budget: Adam(``lr``), ``epochs`` × mini-batches of ``batch_size``."""

    lr: float = 3e-3
    epochs: int = 60
    batch_size: int = 64


#: the CNN's and GRU's budget (float32).
TORCH_BUDGET = TorchBudget()
#: test accuracy the mnist1d authors publish for their baselines (README).
PUBLISHED = {"logreg": 0.32, "sk-mlp": 0.68, "cnn": 0.94, "gru": 0.91}


def load(samples: int = MNIST1D_SAMPLES) -> Features:
    """MNIST-1D from the package's generator (default arguments: the published 4000 + 1000
    sequences; ``samples`` changes their number), standardised with the training split's mean
    and std (one pair for all 40 positions, so a sequence stays a sequence for the CNN and
    GRU)."""
    ds = mnist1d_dataset(samples)
    assert ds.test_indices is not None
    test = np.zeros(len(ds.y), dtype=bool)
    test[ds.test_indices] = True
    X_train, X_test = ds.X[~test], ds.X[test]
    mean, std = X_train.mean(), X_train.std()
    return Features((X_train - mean) / std, ds.y[~test], (X_test - mean) / std, ds.y[test])


class CNN(nn.Module):
    """Three strided 1-D convolutions (25 channels, kernel 5) and a linear read-out."""

    def __init__(self, length: int = 40, classes: int = 10, channels: int = 25) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Unflatten(1, (1, length)),
            nn.Conv1d(1, channels, 5, stride=2, padding=1),
            nn.ReLU(),
            nn.Conv1d(channels, channels, 3, stride=2, padding=1),
            nn.ReLU(),
            nn.Conv1d(channels, channels, 3, stride=2, padding=1),
            nn.ReLU(),
            nn.Flatten(),
        )
        with torch.no_grad():
            width = self.body(torch.zeros(1, length)).shape[1]
        self.head = nn.Linear(width, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.body(x))


class GRU(nn.Module):
    """A GRU reading the sequence one value per step; its last state → linear → logits."""

    def __init__(self, hidden: int = 32, classes: int = 10) -> None:
        super().__init__()
        self.gru = nn.GRU(1, hidden, batch_first=True)
        self.head = nn.Linear(hidden, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        _, h = self.gru(x.unsqueeze(-1))
        return self.head(h[-1])


def _torch_baseline(make: Callable[[], nn.Module]) -> Callable[[Features, int], tuple[float, int]]:
    def train(data: Features, seed: int) -> tuple[float, int]:
        torch.manual_seed(seed)
        net = make()
        fit(
            net,
            (data.X_train.astype(np.float32), data.y_train),
            optimizer="adam",
            seed=seed,
            progress=False,
            evaluate_train=False,
            lr=TORCH_BUDGET.lr,
            epochs=TORCH_BUDGET.epochs,
            batch_size=TORCH_BUDGET.batch_size,
        )
        acc = evaluate(net, data.X_test.astype(np.float32), data.y_test)["accuracy"]
        return acc, sum(p.numel() for p in net.parameters())

    return train


def _logreg(data: Features, seed: int) -> tuple[float, int]:
    from sklearn.linear_model import LogisticRegression

    clf = LogisticRegression(max_iter=2000, random_state=seed).fit(data.X_train, data.y_train)
    return float(clf.score(data.X_test, data.y_test)), int(clf.coef_.size + clf.intercept_.size)


def _sk_mlp(data: Features, seed: int) -> tuple[float, int]:
    import warnings

    from sklearn.exceptions import ConvergenceWarning
    from sklearn.neural_network import MLPClassifier

    clf = MLPClassifier((100, 100), max_iter=200, random_state=seed)
    with warnings.catch_warnings():  # the budget is the 200 epochs; stopping there is expected
        warnings.simplefilter("ignore", ConvergenceWarning)
        clf.fit(data.X_train, data.y_train)
    params = sum(w.size for w in clf.coefs_) + sum(b.size for b in clf.intercepts_)
    return float(clf.score(data.X_test, data.y_test)), int(params)


#: the baselines by name: train(data, seed) → (test accuracy, parameter count).
BASELINES: dict[str, Callable[[Features, int], tuple[float, int]]] = {
    "logreg": _logreg,
    "sk-mlp": _sk_mlp,
    "cnn": _torch_baseline(CNN),
    "gru": _torch_baseline(GRU),
}


def run_baselines(
    data: Features,
    runs: int,
    reporter: Reporter | None = None,
    names=tuple(BASELINES),
    memo: Memo | None = None,
) -> list[ConfigResult]:
    """Every baseline trained ``runs`` times (seeds 0..runs−1); ``memo`` as in
    :func:`~meshprop.experiment.compare.compare` (unit keys ``NAME/seed-K``)."""
    reporter = reporter or Reporter()
    memo = memo or no_memo
    bar = reporter.bar(total=len(names) * runs, desc="baselines")
    results = []
    try:
        for name in names:
            result: ConfigResult | None = None
            for seed in range(runs):

                def unit(name: str = name, seed: int = seed) -> dict[str, Any]:
                    start = time.perf_counter()
                    acc, params = BASELINES[name](data, seed)
                    return {
                        "accuracy": acc,
                        "params": params,
                        "seconds": time.perf_counter() - start,
                    }

                record = memo(f"{name}/seed-{seed}", unit)
                if result is None:
                    result = ConfigResult(name, record["params"])
                result.accuracies.append(record["accuracy"])
                result.seconds.append(record["seconds"])
                bar.update(1)
                bar.set_postfix(config=name, acc=f"{record['accuracy']:.4f}")
            assert result is not None
            results.append(result)
    finally:
        bar.close()
    return results
