"""Scoring and applying a trained run: the test metrics ``meshprop train`` reports, the samples
``meshprop evaluate`` scores (the run's own split, rebuilt from its configuration and seed, or
other data), and the rows ``meshprop predict`` writes.  Training, evaluation and prediction
share these functions, so they compute exactly the same numbers."""

from __future__ import annotations

from pathlib import Path
from typing import Any, TypeGuard

import numpy as np
import torch

from ..data import (
    CLASSIFICATION,
    REGRESSION,
    Dataset,
    Standardizer,
    load_csv,
    load_dataset,
    split_indices,
)
from ..mesh import MeshNet
from ..training import metrics
from ..training.inference import outputs
from .config import RunConfig

__all__ = [
    "SPLITS",
    "check_run_document",
    "predict_rows",
    "prepare_eval_data",
    "remap_labels",
    "test_metrics",
]

#: the parts of a run's data ``meshprop evaluate`` can score.
SPLITS = ("test", "val", "train", "all")


@torch.no_grad()
def test_metrics(
    net: MeshNet, X: torch.Tensor, y: torch.Tensor, task: str, scaler: Standardizer
) -> dict[str, float]:
    """``test_accuracy`` (and loss) for classification; ``test_mse`` and ``test_r2`` in the
    target's original units for regression.  The outputs are computed without gradients in
    chunks of a bounded number of samples (``meshprop.training.inference``), the metrics on all
    of them at once, so always the same numbers."""
    out = outputs(net, X.to(device=net.parameter.device, dtype=net.parameter.dtype))
    if task == CLASSIFICATION:
        m = metrics(out, y, "cross_entropy")
        return {"test_loss": m["loss"], "test_accuracy": m["accuracy"]}
    pred = torch.as_tensor(scaler.inverse_y(out.cpu().numpy()))
    target = torch.as_tensor(scaler.inverse_y(y.cpu().numpy()))
    m = metrics(pred, target, "mse")
    return {"test_mse": m["mse"], "test_r2": m["r2"]}


def _strings(value: Any) -> TypeGuard[list[str]]:
    return isinstance(value, list) and all(isinstance(v, str) for v in value)


def check_run_document(document: dict[str, Any], net: MeshNet, where: str | Path) -> None:
    """One-line ValueErrors, naming ``where`` (the checkpoint's model.json), for what
    ``evaluate`` and ``predict`` read from a run's checkpoint besides the model: the task,
    the feature and class names, the standardisation statistics and the configuration."""
    where = Path(where)
    if where.is_dir():
        where = where / "model.json"
    n_inputs, n_outputs = net.topology.n_inputs, net.topology.n_outputs
    task = document.get("task")
    if task not in (CLASSIFICATION, REGRESSION):
        raise ValueError(
            f"{where}: 'task' must be {CLASSIFICATION!r} or {REGRESSION!r}, got {task!r}"
        )
    features = document.get("feature_names")
    if not _strings(features) or len(features) != n_inputs:
        raise ValueError(
            f"{where}: 'feature_names' must be a list of {n_inputs} column names (the model's "
            f"inputs), got {features!r}"
        )
    classes = document.get("class_names")
    if task == CLASSIFICATION and (not _strings(classes) or len(classes) != n_outputs):
        raise ValueError(
            f"{where}: 'class_names' must be a list of {n_outputs} class names (the model's "
            f"outputs), got {classes!r}"
        )
    try:
        scaler = Standardizer.from_dict(document["standardizer"])
        if scaler.mean.shape != (n_inputs,) or scaler.std.shape != (n_inputs,):
            raise ValueError(f"its mean and std must hold {n_inputs} numbers each")
        if task == REGRESSION and scaler.target is None:
            raise ValueError("no target statistics (y_mean, y_std) for a regression model")
    except KeyError as error:
        raise ValueError(f"{where}: 'standardizer' lacks {error.args[0]!r}") from None
    except (TypeError, ValueError, AttributeError, IndexError) as error:
        raise ValueError(f"{where}: invalid 'standardizer' ({error})") from None
    try:
        if not isinstance(document.get("config"), dict):
            raise TypeError("not an object")
        RunConfig.from_dict(document["config"])
    except (TypeError, ValueError) as error:
        raise ValueError(f"{where}: invalid 'config' ({error})") from None


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
    """The (standardised) samples ``meshprop evaluate`` scores, from a checkpoint's document:
    the run's own test split by default, rebuilt from the stored configuration and seed."""
    if split not in SPLITS:
        raise ValueError(f"split must be one of {', '.join(SPLITS)}, got {split!r}")
    config = RunConfig.from_dict(document["config"])
    task = document["task"]
    scaler = Standardizer.from_dict(document["standardizer"])
    if dataset is None and data is None:
        dataset, data, target = config.dataset, config.data, config.target
    if data is not None:
        ds = load_csv(data, target or config.target, task=task, features=document["feature_names"])
    else:
        assert dataset is not None
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
    else:
        parts = split_indices(
            len(y), config.test_size, config.val_size, config.seed, ds.test_indices
        )
        idx = parts[split]
    X = torch.as_tensor(scaler.transform(ds.X[idx]), dtype=torch.float64)
    if task == REGRESSION:
        t = torch.as_tensor(scaler.transform_y(y[idx]), dtype=torch.float64).reshape(-1, 1)
    else:
        t = torch.as_tensor(y[idx], dtype=torch.long)
    return ds, X, t, scaler


@torch.no_grad()
def predict_rows(
    net: MeshNet, document: dict[str, Any], X: np.ndarray
) -> tuple[list[str], list[list[Any]]]:
    """``meshprop predict``'s CSV: the header and one row per sample of the raw features ``X``
    (row number from 1, the prediction; for classification the class name and one probability
    column ``p_NAME`` per class, for regression the value in the target's units)."""
    scaler = Standardizer.from_dict(document["standardizer"])
    inputs = torch.as_tensor(scaler.transform(X), dtype=net.parameter.dtype)
    out = outputs(net, inputs.to(net.parameter.device))
    header = ["row", "prediction"]
    if document["task"] == CLASSIFICATION:
        names = document["class_names"]
        probs = torch.softmax(out, dim=1).tolist()
        labels = [names[k] for k in out.argmax(dim=1).tolist()]
        header += [f"p_{name}" for name in names]
        rows = [
            [i, label, *(f"{p:.6g}" for p in ps)]
            for i, (label, ps) in enumerate(zip(labels, probs, strict=True), start=1)
        ]
        return header, rows
    values = scaler.inverse_y(out[:, 0].cpu().numpy())
    return header, [[i, f"{v:.8g}"] for i, v in enumerate(values.tolist(), start=1)]
