"""One training run from a flat configuration: the data, the network, ``fit``, the test
metrics and the files of a run directory.  ``meshprop train`` and ``meshprop reproduce`` are
thin layers over :func:`run` and :func:`write_run`; ``meshprop evaluate`` and ``predict``
use :func:`prepare_eval_data` and :func:`test_metrics` so that they compute exactly what
training reported.
"""

from __future__ import annotations

import dataclasses
import platform
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .checkpoint import save_checkpoint
from .data import (
    CLASSIFICATION,
    REGRESSION,
    Dataset,
    Split,
    Standardizer,
    load_csv,
    load_dataset,
    split_dataset,
    split_indices,
)
from .distributed import DataParallel
from .layered import MLP, RULES
from .mesh import MeshNet
from .reporting import Reporter
from .topology import Topology
from .training import EarlyStopping, History, fit, metrics

__all__ = ["RunConfig", "RunResult", "build_net", "load_data", "run", "test_metrics", "write_run"]

_DTYPES = {"float32": torch.float32, "float64": torch.float64}
ARCHITECTURES = ("mesh", "mlp")


@dataclass
class RunConfig:
    """Everything that defines a training run (stored in ``metrics.json`` and checkpoints)."""

    dataset: str | None = "moons"
    data: str | None = None
    target: str | None = None
    task: str = "auto"
    n_samples: int = 1000
    hidden: int = 5
    ticks: int = 3
    density: float = 1.0
    activation: str = "relu"
    output_activation: str | None = "identity"
    grad: str = "fop"
    optimizer: str = "adam"
    lr: float = 0.01
    momentum: float = 0.0
    weight_decay: float = 0.0
    epochs: int = 60
    batch_size: int = 32
    seed: int = 0
    test_size: float = 0.3
    val_size: float = 0.0
    patience: int | None = None
    dtype: str = "float64"
    #: "mesh" (an MNN of ``hidden`` neurons) or "mlp" (a layered network of ``layers``).
    arch: str = "mesh"
    #: hidden layer sizes of an MLP (``arch="mlp"``), e.g. [13, 13].
    layers: list[int] | None = None

    def __post_init__(self) -> None:
        if self.arch not in ARCHITECTURES:
            raise ValueError(f"arch must be one of {ARCHITECTURES}, got {self.arch!r}")
        if self.arch == "mlp":
            if self.layers is None:
                raise ValueError(
                    "an MLP needs its hidden layer sizes (layers, e.g. --layers 13,13)"
                )
            self.layers = [int(n) for n in self.layers]
        elif self.layers is not None:
            raise ValueError("layers applies to arch='mlp' only")
        if (self.dataset is None) == (self.data is None):
            raise ValueError("give exactly one of a built-in dataset or a CSV file (data)")
        if self.data is not None and self.target is None:
            raise ValueError(f"a CSV file needs a target column (--target) for {self.data!r}")
        if self.dtype not in _DTYPES:
            raise ValueError(f"dtype must be float32 or float64, got {self.dtype!r}")
        if self.patience is not None and self.val_size <= 0:
            raise ValueError("early stopping (patience) needs a validation split (val_size > 0)")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RunConfig:
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in names})


@dataclass
class RunResult:
    config: RunConfig
    net: MeshNet
    split: Split
    history: History
    test: dict[str, float]


def load_data(config: RunConfig) -> Dataset:
    """The dataset named by ``config`` (built-in, or the CSV file with its target column)."""
    if config.data is not None:
        return load_csv(config.data, config.target, task=config.task)
    return load_dataset(config.dataset, n_samples=config.n_samples, seed=config.seed)


def build_net(config: RunConfig, n_inputs: int, n_outputs: int) -> MeshNet | MLP:
    """A full mesh (``density=1``) or a random mesh keeping ``density`` of the edges; with
    ``arch="mlp"`` the layered network [inputs, *layers, outputs] — an :class:`MLP` trained by
    its layered rule (``grad`` two_step / tensor_batch) or, for a mesh engine, its mesh view
    (``Topology.layered``, ticks = L)."""
    if config.arch == "mlp":
        mlp = MLP(
            [n_inputs, *config.layers, n_outputs],
            activation=config.activation,
            output_activation=config.output_activation,
            grad=config.grad if config.grad in RULES else "two_step",
            dtype=_DTYPES[config.dtype],
            seed=config.seed,
        )
        return mlp if config.grad in RULES else mlp.to_mesh(grad=config.grad)
    if config.density >= 1.0:
        topo = Topology.mesh(n_inputs, config.hidden, n_outputs, bias=True)
    else:
        topo = Topology.random(
            n_inputs,
            config.hidden,
            n_outputs,
            density=config.density,
            bias=True,
            seed=config.seed,
        )
    return MeshNet(
        topo,
        ticks=config.ticks,
        activation=config.activation,
        output_activation=config.output_activation,
        grad=config.grad,
        dtype=_DTYPES[config.dtype],
        seed=config.seed,
    )


def loss_for(task: str) -> str:
    return "cross_entropy" if task == CLASSIFICATION else "mse"


@torch.no_grad()
def test_metrics(
    net: MeshNet, X: torch.Tensor, y: torch.Tensor, task: str, scaler: Standardizer
) -> dict[str, float]:
    """``test_accuracy`` (and loss) for classification; ``test_mse`` and ``test_r2`` in the
    target's original units for regression.  One batch, so always the same numbers."""
    out = net(X.to(net.A.dtype))
    if task == CLASSIFICATION:
        m = metrics(out, y, "cross_entropy")
        return {"test_loss": m["loss"], "test_accuracy": m["accuracy"]}
    pred = torch.as_tensor(scaler.inverse_y(out.cpu().numpy()))
    target = torch.as_tensor(scaler.inverse_y(y.cpu().numpy()))
    m = metrics(pred, target, "mse")
    return {"test_mse": m["mse"], "test_r2": m["r2"]}


def run(
    config: RunConfig,
    reporter: Reporter | None = None,
    callback: Any = None,
    dataset: Dataset | None = None,
    parallel: DataParallel | None = None,
) -> RunResult:
    """Load, split (seeded by ``config.seed``), build, train and test.

    With ``parallel`` (``meshprop.distributed``) every process runs this and trains on its
    shard of each batch; the model lives on ``parallel.device``.  An MLP is tested and
    returned as its mesh view (the same function, so checkpoints, plots and ``evaluate``
    treat both architectures alike)."""
    reporter = reporter if reporter is not None else Reporter()
    dataset = load_data(config) if dataset is None else dataset
    split = split_dataset(dataset, config.test_size, config.val_size, config.seed)
    net = build_net(config, dataset.n_features, dataset.n_outputs)
    if parallel is not None:
        net = net.to(parallel.device)
    stopping = None if config.patience is None else EarlyStopping(patience=config.patience)
    history = fit(
        net,
        split.train,
        split.val,
        loss=loss_for(dataset.task),
        optimizer=config.optimizer,
        lr=config.lr,
        momentum=config.momentum,
        weight_decay=config.weight_decay,
        epochs=config.epochs,
        batch_size=config.batch_size,
        seed=config.seed,
        early_stopping=stopping,
        callback=callback,
        reporter=reporter,
        parallel=parallel,
    )
    if isinstance(net, MLP):
        net = net.to_mesh(grad="bptt")
    test = test_metrics(net, *split.test, dataset.task, split.standardizer)
    return RunResult(config, net, split, history, test)


def describe_model(config: RunConfig, net: MeshNet | MLP) -> str:
    """One line naming the architecture and its trainable-parameter count."""
    if config.arch == "mlp":
        sizes = net.sizes if isinstance(net, MLP) else net.topology.layer_sizes
        shape = "MLP A[" + ", ".join(str(n) for n in sizes) + "]"
    else:
        topo = net.topology
        shape = (
            f"mesh of {topo.n_inputs} inputs, {topo.n_hidden} hidden, "
            f"{topo.n_outputs} outputs, {net.ticks} ticks"
        )
    return f"model: {shape}, {net.n_parameters} trainable parameters, gradient {config.grad}"


def checkpoint_extra(result: RunResult) -> dict[str, Any]:
    ds = result.split.dataset
    return {
        "config": result.config.to_dict(),
        "task": ds.task,
        "feature_names": ds.feature_names,
        "class_names": ds.class_names,
        "standardizer": result.split.standardizer.to_dict(),
    }


def write_run(result: RunResult, out: str | Path, reporter: Reporter) -> list[Path]:
    """Write ``metrics.json``, the checkpoint (``checkpoint/``) and PNG plots into ``out``."""
    from . import plots

    out = Path(out)
    ds, split = result.split.dataset, result.split
    written: list[Path | None] = []
    document = {
        "config": result.config.to_dict(),
        "dataset": {
            "name": ds.name,
            "task": ds.task,
            "samples": len(ds.y),
            "features": ds.n_features,
            "classes": ds.n_classes,
            "train": len(split.indices["train"]),
            "val": len(split.indices["val"]),
            "test": len(split.indices["test"]),
        },
        "model": {
            "neurons": result.net.topology.n_neurons,
            "edges": result.net.topology.n_edges,
            "arch": result.config.arch,
            "parameters": result.net.n_parameters,
        },
        "history": result.history.to_dict(),
        **result.test,
        "platform": platform.platform(),
        "torch": torch.__version__,
        "written": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    written.append(reporter.write_json(out / "metrics.json", document))
    written.append(
        reporter.write_with(
            out / "checkpoint" / "model.json",
            lambda p: save_checkpoint(p.parent, result.net, checkpoint_extra(result)),
        )
    )
    figures = [
        ("curves.png", plots.plot_history(result.history, f"{ds.name}: {result.config.grad}")),
        ("topology.png", plots.plot_topology(result.net, f"{ds.name}: trained weights")),
    ]
    if ds.n_features == 2 and ds.task == CLASSIFICATION:
        X = torch.cat([split.train[0], split.test[0]]).numpy()
        y = torch.cat([split.train[1], split.test[1]]).numpy()
        accuracy = result.test["test_accuracy"]
        title = f"{ds.name}: test accuracy {accuracy:.3f}"
        figures.append(
            ("decision_boundary.png", plots.plot_decision_boundary(result.net, X, y, title))
        )
    for name, fig in figures:
        written.append(reporter.write_with(out / name, lambda p, f=fig: f.savefig(p, dpi=80)))
        plots.plt.close(fig)
    return [p for p in written if p is not None]


def summary_rows(result: RunResult) -> list[tuple[str, str]]:
    """The final summary table of ``meshprop train`` as (name, value) rows."""
    ds, net, history = result.split.dataset, result.net, result.history
    # the weights in use: those of the best epoch when early stopping restored them
    last = history.records[history.best_epoch - 1] if history.best_epoch else history.last
    rows = [
        ("dataset", f"{ds.name} ({ds.task}, {len(ds.y)} samples, {ds.n_features} features)"),
        (
            "split",
            "train {train} / val {val} / test {test}".format(
                **{k: len(v) for k, v in result.split.indices.items()}
            ),
        ),
        (
            "network",
            f"{net.topology.n_neurons} neurons, {net.topology.n_edges} edges, "
            f"{net.ticks} ticks, {net.activation}",
        ),
        ("parameters", f"{net.n_parameters} trainable ({result.config.arch})"),
        ("gradient", result.config.grad),
        (
            "optimizer",
            f"{result.config.optimizer} lr={result.config.lr:g}, batch {result.config.batch_size}",
        ),
        (
            "epochs",
            f"{len(history)}"
            + (f" (stopped early, best {history.best_epoch})" if history.stopped_early else ""),
        ),
        ("train loss", f"{last['train_loss']:.4f}"),
    ]
    if "val_loss" in last:
        rows.append(("val loss", f"{last['val_loss']:.4f}"))
    for key, value in result.test.items():
        rows.append((key.replace("_", " "), f"{value:.4f}"))
    rows.append(("wall time", f"{history.wall_time_s:.1f} s"))
    return rows


def format_table(rows: list[tuple[str, str]]) -> str:
    width = max(len(k) for k, _ in rows)
    line = "-" * (width + 3 + max(len(v) for _, v in rows))
    return "\n".join([line, *(f"{k:<{width}} | {v}" for k, v in rows), line])


# -------------------------------------------------------------------- evaluate / predict
def remap_labels(dataset: Dataset, class_names: list[str], where: str) -> np.ndarray:
    """``dataset``'s class indices re-expressed in the checkpoint's class numbering."""
    index = {name: k for k, name in enumerate(class_names)}
    y = np.empty(len(dataset.y), dtype=np.int64)
    for row, label in enumerate(dataset.y, start=1):
        name = dataset.class_names[int(label)]
        if name not in index:
            raise ValueError(
                f"{where}: row {row} has class {name!r}, which the model was not trained on "
                f"(classes: {', '.join(class_names)})"
            )
        y[row - 1] = index[name]
    return y


def prepare_eval_data(
    document: dict[str, Any],
    dataset: str | None = None,
    data: str | None = None,
    target: str | None = None,
    split: str = "test",
) -> tuple[Dataset, torch.Tensor, torch.Tensor, Standardizer]:
    """The (standardised) samples ``meshprop evaluate`` scores: the checkpoint's own test
    split by default, rebuilt from the stored configuration and seed."""
    config = RunConfig.from_dict(document["config"])
    task = document["task"]
    scaler = Standardizer.from_dict(document["standardizer"])
    if dataset is None and data is None:
        dataset, data, target = config.dataset, config.data, config.target
    if data is not None:
        target = target or config.target
        ds = load_csv(data, target, task=task, features=document["feature_names"])
    else:
        ds = load_dataset(dataset, n_samples=config.n_samples, seed=config.seed)
    if ds.n_features != len(scaler.mean):
        raise ValueError(
            f"the data has {ds.n_features} features but the model takes {len(scaler.mean)}"
        )
    y = ds.y
    if task == CLASSIFICATION:
        y = remap_labels(ds, document["class_names"], str(data or dataset))
    if split == "all":
        idx = np.arange(len(y))
    elif split in ("train", "val", "test"):
        parts = split_indices(
            len(y), config.test_size, config.val_size, config.seed, ds.test_indices
        )
        idx = parts[split]
    else:
        raise ValueError(f"split must be 'train', 'val', 'test' or 'all', got {split!r}")
    X = torch.as_tensor(scaler.transform(ds.X[idx]), dtype=torch.float64)
    if task == REGRESSION:
        t = torch.as_tensor(scaler.transform_y(y[idx]), dtype=torch.float64).reshape(-1, 1)
    else:
        t = torch.as_tensor(y[idx], dtype=torch.long)
    return ds, X, t, scaler
