"""Paper 001's real-world experiment on Fashion-MNIST: images → CAE code (32 values) → mnn-85,
mnn-80, mlp-13, mlp-17 (see :mod:`.models`), trained by FOP with Adam over several seeds.

The IDX files are read by :mod:`meshprop.data.idx`; the CAE features come from the on-disk
cache of :mod:`meshprop.data.features` (trained once per data, architecture and seed).  Codes
are standardised with the training split's statistics before the classifiers see them.

Differences from the public script ``experiments.py`` — we follow the paper's model, not the
script's details:

- the script applies dropout (p = 0.2) to the state at every tick during training; the paper's
  state transition S_n = φ̂(S_{n−1}A) (Eq. 3) has no dropout, and neither do we;
- the script has no activation at all in the mesh (the state is the raw ``nn.Linear`` output,
  in training and at test time); we use φ̂ = ReLU on the hidden neurons and identity on the
  outputs, as the paper's state transition prescribes an activation on every non-input neuron;
- the script applies softmax and then ``CrossEntropyLoss`` (a second, implicit log-softmax);
  we feed the logits to the cross-entropy once;
- the script trains 100 epochs with batch 32 and lr 1e-3; our budget is smaller
  (:data:`PROTOCOL`) so that three runs of every configuration fit in 30 minutes on two cores.
"""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

import numpy as np

from ..data.features import CAEBudget, FeatureSet, cae_features
from ..data.idx import find_idx_dir, load_idx_split
from ..reporting import Reporter
from .compare import ConfigResult, Features, Protocol
from .models import ModelSpec

__all__ = [
    "CAE_BUDGET",
    "PAIRS",
    "PROTOCOL",
    "SPECS",
    "load_features",
    "plot_accuracies",
    "standardize",
    "structure_pairs",
    "structure_specs",
    "verdicts",
]

#: the four configurations of paper 001 (the public script's README commands).
SPECS: tuple[ModelSpec, ...] = (
    ModelSpec("mnn-85", "mnn", hidden=50, removed=0.85, ticks=2),
    ModelSpec("mnn-80", "mnn", hidden=50, removed=0.80, ticks=2),
    ModelSpec("mlp-13", "mlp", hidden=13),
    ModelSpec("mlp-17", "mlp", hidden=17),
)
#: MNN against the MLP of similar parameter count (798 vs 751, 1044 vs 1047 weights).
PAIRS: tuple[tuple[str, str], ...] = (("mnn-85", "mlp-13"), ("mnn-80", "mlp-17"))


def structure_specs(rules: tuple[str, ...] | list[str]) -> tuple[ModelSpec, ...]:
    """mnn-85 and mnn-80 whose edges move while they train, one configuration per structure
    rule (``"set"``, ``"rigl"``): named ``mnn-85-rigl`` etc., the same initial edges and the
    same number of edges as the static mesh of their name."""
    return tuple(
        ModelSpec(f"{spec.name}-{rule}", "mnn", spec.hidden, spec.removed, spec.ticks, rule)
        for rule in rules
        for spec in SPECS
        if spec.kind == "mnn"
    )


def structure_pairs(rules: tuple[str, ...] | list[str]) -> tuple[tuple[str, str], ...]:
    """:data:`PAIRS` and, for every rule, its learning meshes against the same MLPs."""
    return PAIRS + tuple((f"{mnn}-{rule}", mlp) for rule in rules for mnn, mlp in PAIRS)


#: the classifiers' training budget (Adam, cross-entropy on logits, float64).
PROTOCOL = Protocol(epochs=10, batch_size=64, lr=3e-3, grad="auto", compare_grad="autograd")
#: the CAE's training budget (all 60 000 training images, 4 epochs).
CAE_BUDGET = CAEBudget(epochs=4, batch_size=128, lr=2e-3, subset=None)


def standardize(features: FeatureSet) -> Features:
    """z-scores with the training split's mean and (population) std, in float64."""
    X_train = features.X_train.astype(np.float64)
    X_test = features.X_test.astype(np.float64)
    mean, std = X_train.mean(axis=0), X_train.std(axis=0)
    std = np.where(std > 0, std, 1.0)
    return Features(
        (X_train - mean) / std, features.y_train, (X_test - mean) / std, features.y_test
    )


def load_features(
    data_dir: str | Path | None,
    seed: int = 0,
    budget: CAEBudget = CAE_BUDGET,
    cache_dir: str | Path | None = None,
    reporter: Reporter | None = None,
    threads: int | None = None,
) -> FeatureSet:
    """The CAE codes of the IDX files in ``data_dir`` (else the Debian package's location)."""
    directory = find_idx_dir(data_dir)
    train = load_idx_split(directory, "train")
    test = load_idx_split(directory, "test")
    return cae_features(train, test, seed, budget, cache_dir, reporter, threads)


def verdicts(results: list[ConfigResult], pairs=PAIRS) -> list[str]:
    """One sentence per (MNN, MLP) pair: which has the higher mean accuracy, by how much in
    units of the larger std."""
    by_name = {r.name: r for r in results}
    lines = []
    for mnn, mlp in pairs:
        if mnn not in by_name or mlp not in by_name:
            continue
        a, b = by_name[mnn], by_name[mlp]
        diff = a.mean - b.mean
        verb = "beats" if diff > 0 else "does not beat"
        spread = max(a.std, b.std)
        scale = f" ({abs(diff) / spread:.1f} × the larger std)" if spread > 0 else ""
        lines.append(
            f"{mnn} ({a.params} weights) {verb} {mlp} ({b.params} weights): "
            f"{a.mean:.4f} vs {b.mean:.4f}, difference {diff:+.4f}{scale}"
        )
    return lines


def plot_accuracies(results: list[ConfigResult], title: str):
    """A box plot of each configuration's test accuracies with the runs as dots."""
    from ..plots import plt

    fig, ax = plt.subplots(figsize=(1.6 * len(results) + 2, 3.6))
    data = [r.accuracies for r in results]
    ax.boxplot(data, widths=0.5)
    ax.set_xticks(range(1, len(results) + 1), [f"{r.name}\n({r.params})" for r in results])
    for k, acc in enumerate(data, start=1):
        ax.plot(np.full(len(acc), k), acc, "o", alpha=0.6, color="tab:blue")
    ax.set_ylabel("test accuracy")
    ax.set_title(title)
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    return fig


def protocol_dict(protocol: Protocol) -> dict:
    d = asdict(protocol)
    d["dtype"] = str(protocol.dtype).replace("torch.", "")
    return d
