"""Datasets for training mesh neural networks: built-in sets and the user's own CSV files.

Every loader returns a :class:`Dataset` (features ``X`` as float64, targets ``y``: class indices
0..K-1 for classification, floats for regression).  :func:`split_dataset` makes a seeded
train/validation/test split and standardises features (and regression targets) with statistics
of the training split only; the resulting :class:`Standardizer` is stored in checkpoints so that
``meshprop evaluate`` and ``meshprop predict`` transform new data exactly as in training.

Built-in sets (:data:`DATASETS`):

- ``moons``, ``circles``: scikit-learn generators, 1000 samples, noise 0.1 (circles factor 0.5),
  as in the reference implementation of paper 000.
- ``blobs``: three Gaussian blobs with standard deviations 1.0, 2.5 and 0.5 (the reference's
  first blob set).
- ``blobs2``: the reference's second blob set: two independent 3-blob draws of 500 samples
  each, concatenated, so each class is made of two clusters in different places.
- ``spirals``: two interleaved spirals (generated here).
- ``iris``, ``wine``, ``breast_cancer``, ``digits``: scikit-learn's bundled copies.
- ``mnist1d``: the ``mnist1d`` package's local generator ``mnist1d.data.make_dataset`` with its
  default arguments (4000 + 1000 sequences of length 40, 10 classes); never downloaded.
"""

from __future__ import annotations

import csv
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

__all__ = [
    "DATASETS",
    "TOY_DATASETS",
    "Dataset",
    "Split",
    "Standardizer",
    "load_csv",
    "load_dataset",
    "split_dataset",
]

CLASSIFICATION = "classification"
REGRESSION = "regression"


@dataclass
class Dataset:
    """Features ``X`` (n, d) float64 and targets ``y`` (n,): int64 classes or float64 values."""

    name: str
    X: np.ndarray
    y: np.ndarray
    task: str = CLASSIFICATION
    feature_names: list[str] = field(default_factory=list)
    #: original class labels, ``class_names[k]`` is class index k (classification only).
    class_names: list[str] = field(default_factory=list)
    #: the samples that form the test split when the source defines one (mnist1d), else None.
    test_indices: np.ndarray | None = None

    def __post_init__(self) -> None:
        if self.task not in (CLASSIFICATION, REGRESSION):
            raise ValueError(f"task must be 'classification' or 'regression', got {self.task!r}")
        self.X = np.asarray(self.X, dtype=np.float64)
        if self.X.ndim != 2:
            raise ValueError(f"X must be 2-D (samples, features), got shape {self.X.shape}")
        dtype = np.int64 if self.task == CLASSIFICATION else np.float64
        self.y = np.asarray(self.y).astype(dtype)
        if self.y.shape != (len(self.X),):
            raise ValueError(
                f"y must have shape ({len(self.X)},) like X's rows, got {self.y.shape}"
            )
        if not self.feature_names:
            self.feature_names = [f"x{k}" for k in range(self.n_features)]
        if self.task == CLASSIFICATION and not self.class_names:
            self.class_names = [str(k) for k in range(int(self.y.max()) + 1)]

    @property
    def n_features(self) -> int:
        return self.X.shape[1]

    @property
    def n_classes(self) -> int:
        return len(self.class_names) if self.task == CLASSIFICATION else 0

    @property
    def n_outputs(self) -> int:
        """Output neurons a network needs: one per class, or one for regression."""
        return self.n_classes if self.task == CLASSIFICATION else 1


# ------------------------------------------------------------------------------- generators
def _moons(n: int, seed: int) -> Dataset:
    from sklearn.datasets import make_moons

    X, y = make_moons(n_samples=n, noise=0.1, random_state=seed)
    return Dataset("moons", X, y)


def _circles(n: int, seed: int) -> Dataset:
    from sklearn.datasets import make_circles

    X, y = make_circles(n_samples=n, noise=0.1, factor=0.5, random_state=seed)
    return Dataset("circles", X, y)


def _blobs(n: int, seed: int) -> Dataset:
    from sklearn.datasets import make_blobs

    X, y = make_blobs(n_samples=n, cluster_std=[1.0, 2.5, 0.5], random_state=seed)
    return Dataset("blobs", X, y)


def _blobs2(n: int, seed: int) -> Dataset:
    from sklearn.datasets import make_blobs

    X1, y1 = make_blobs(n_samples=n // 2, random_state=seed)
    X2, y2 = make_blobs(n_samples=n - n // 2, random_state=seed + 1_000_003)
    order = np.random.default_rng(seed).permutation(n)
    return Dataset("blobs2", np.concatenate([X1, X2])[order], np.concatenate([y1, y2])[order])


def _spirals(n: int, seed: int) -> Dataset:
    """Two interleaved spirals: r = θ/3π for θ in [0, 3π] (θ = 3π√u, u uniform), class 1 is
    class 0 rotated by π, plus Gaussian noise of std 0.02."""
    rng = np.random.default_rng(seed)
    per_class = [n // 2, n - n // 2]
    xs, ys = [], []
    for label, count in enumerate(per_class):
        theta = np.sqrt(rng.uniform(0.0, 1.0, count)) * 3.0 * math.pi  # 1.5 turns
        r = theta / (3.0 * math.pi)
        phase = label * math.pi
        points = np.stack([r * np.cos(theta + phase), r * np.sin(theta + phase)], axis=1)
        xs.append(points + rng.normal(0.0, 0.02, points.shape))
        ys.append(np.full(count, label))
    order = rng.permutation(n)
    return Dataset("spirals", np.concatenate(xs)[order], np.concatenate(ys)[order])


def _sklearn_bundle(name: str) -> Callable[[int, int], Dataset]:
    def load(n: int, seed: int) -> Dataset:
        import sklearn.datasets as skd

        bunch = getattr(skd, f"load_{name}")()
        names = [str(c) for c in getattr(bunch, "target_names", [])]
        features = [str(f) for f in getattr(bunch, "feature_names", [])]
        return Dataset(name, bunch.data, bunch.target, CLASSIFICATION, features, names)

    return load


def _mnist1d(n: int, seed: int) -> Dataset:
    """mnist1d's local generator with its default arguments (no download)."""
    from mnist1d.data import make_dataset

    data = make_dataset()
    X = np.concatenate([data["x"], data["x_test"]])
    y = np.concatenate([data["y"], data["y_test"]])
    test = np.arange(len(data["y"]), len(y))
    return Dataset("mnist1d", X, y, CLASSIFICATION, test_indices=test)


#: generated 2-D sets: name → (generator, default number of samples)
_GENERATED: dict[str, Callable[[int, int], Dataset]] = {
    "moons": _moons,
    "circles": _circles,
    "blobs": _blobs,
    "blobs2": _blobs2,
    "spirals": _spirals,
}
_FIXED: dict[str, Callable[[int, int], Dataset]] = {
    "iris": _sklearn_bundle("iris"),
    "wine": _sklearn_bundle("wine"),
    "breast_cancer": _sklearn_bundle("breast_cancer"),
    "digits": _sklearn_bundle("digits"),
    "mnist1d": _mnist1d,
}
#: the 2-D toy sets of the reference implementation (``meshprop reproduce toys``).
TOY_DATASETS: tuple[str, ...] = tuple(_GENERATED)
#: every built-in dataset name accepted by :func:`load_dataset`.
DATASETS: tuple[str, ...] = TOY_DATASETS + tuple(_FIXED)


def load_dataset(name: str, n_samples: int = 1000, seed: int = 0) -> Dataset:
    """A built-in dataset by name.  ``n_samples`` and ``seed`` apply to the generated 2-D sets
    (``moons``, ``circles``, ``blobs``, ``blobs2``, ``spirals``); the others are fixed."""
    if not isinstance(name, str) or name not in DATASETS:
        raise ValueError(f"unknown dataset {name!r}; expected one of {', '.join(DATASETS)}")
    if name in _GENERATED:
        if isinstance(n_samples, bool) or not isinstance(n_samples, int) or n_samples < 4:
            raise ValueError(f"n_samples must be an integer >= 4, got {n_samples!r}")
        return _GENERATED[name](n_samples, int(seed))
    return _FIXED[name](n_samples, int(seed))


def bayes_correct(name: str, n_samples: int = 1000, seed: int = 0) -> np.ndarray:
    """For the blob sets, whether the Bayes-optimal classifier (the true Gaussian centres and
    spreads of the draw, equal priors) labels each sample correctly: the best accuracy any
    classifier can expect on that draw.  Samples are in :func:`load_dataset`'s order."""
    from sklearn.datasets import make_blobs

    def log_density(X: np.ndarray, centres: np.ndarray, std: np.ndarray) -> np.ndarray:
        d2 = ((X[:, None, :] - centres[None]) ** 2).sum(axis=-1)
        return -d2 / (2 * std**2) - X.shape[1] * np.log(std)

    ds = load_dataset(name, n_samples, seed)
    if name == "blobs":
        std = np.array([1.0, 2.5, 0.5])
        _, _, centres = make_blobs(
            n_samples=n_samples, cluster_std=std, random_state=seed, return_centers=True
        )
        scores = log_density(ds.X, centres, std)
    elif name == "blobs2":
        _, _, c1 = make_blobs(n_samples=n_samples // 2, random_state=seed, return_centers=True)
        _, _, c2 = make_blobs(
            n_samples=n_samples - n_samples // 2,
            random_state=seed + 1_000_003,
            return_centers=True,
        )
        one = np.ones(3)
        scores = np.logaddexp(log_density(ds.X, c1, one), log_density(ds.X, c2, one))
    else:
        raise ValueError(f"Bayes accuracy is known for 'blobs' and 'blobs2', not {name!r}")
    return scores.argmax(axis=1) == ds.y


# ------------------------------------------------------------------------------------- CSV
def _looks_integer(values: np.ndarray) -> bool:
    return bool(np.all(np.isfinite(values)) and np.all(values == np.round(values)))


def load_csv(
    path: str | Path,
    target: str | None,
    task: str = "auto",
    features: list[str] | None = None,
    max_classes: int = 20,
) -> Dataset:
    """Read a CSV file with a header row: numeric feature columns and a ``target`` column.

    - ``target=None`` reads features only (for ``meshprop predict``); ``y`` is then empty.
    - ``task="auto"``: a target holding non-numbers, or integers with at most ``max_classes``
      distinct values, is a classification target (labels sorted, mapped to 0..K-1); any other
      numeric target is a regression target.
    - ``features``: the feature columns to read, in this order (default: every other column).

    Raises ValueError naming the file, the column and the row (1-based, after the header) of the
    first missing cell, NaN, or non-number, and for a classification target with one class.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"CSV file {str(path)!r} does not exist")
    if task not in ("auto", CLASSIFICATION, REGRESSION):
        raise ValueError(f"task must be 'auto', 'classification' or 'regression', got {task!r}")
    with path.open(newline="", encoding="utf-8-sig") as handle:
        rows = [row for row in csv.reader(handle) if any(cell.strip() for cell in row)]
    if not rows:
        raise ValueError(f"{path}: the file is empty (expected a header row and data rows)")
    header = [h.strip() for h in rows[0]]
    body = rows[1:]
    if not body:
        raise ValueError(f"{path}: the file has a header but no data rows")
    if target is not None and target not in header:
        raise ValueError(f"{path}: no column {target!r}; the columns are {', '.join(header)}")
    if features is None:
        features = [h for h in header if h != target]
    missing = [f for f in features if f not in header]
    if missing:
        raise ValueError(
            f"{path}: no feature column {missing[0]!r}; the columns are {', '.join(header)}"
        )
    if not features:
        raise ValueError(f"{path}: no feature columns besides the target {target!r}")
    for number, row in enumerate(body, start=1):
        if len(row) != len(header):
            raise ValueError(
                f"{path}: row {number} has {len(row)} cells but the header has {len(header)}"
            )

    def numeric(column: str) -> np.ndarray:
        k = header.index(column)
        values = np.empty(len(body))
        for number, row in enumerate(body, start=1):
            cell = row[k].strip()
            try:
                value = float(cell)
            except ValueError:
                what = "is empty" if not cell else f"holds {cell!r}, not a number"
                raise ValueError(f"{path}: column {column!r}, row {number} {what}") from None
            if not math.isfinite(value):
                raise ValueError(
                    f"{path}: column {column!r}, row {number} holds {cell!r}; "
                    "features and targets must be finite numbers"
                )
            values[number - 1] = value
        return values

    X = np.stack([numeric(c) for c in features], axis=1)
    if target is None:
        return Dataset(path.stem, X, np.zeros(len(X)), REGRESSION, list(features))

    k = header.index(target)
    raw = [row[k].strip() for row in body]
    for number, cell in enumerate(raw, start=1):
        if not cell or cell.lower() in ("nan", "na", "null", "none"):
            raise ValueError(f"{path}: column {target!r}, row {number} has no target value")
    try:
        values = np.array([float(c) for c in raw])
        numeric_target = bool(np.all(np.isfinite(values)))
    except ValueError:
        values, numeric_target = None, False
    if task == "auto":
        if not numeric_target:
            task = CLASSIFICATION
        else:
            distinct = len(np.unique(values))
            integer = _looks_integer(values)
            task = CLASSIFICATION if integer and distinct <= max_classes else REGRESSION
    if task == REGRESSION:
        if not numeric_target:
            bad = next(n for n, c in enumerate(raw, 1) if not _is_finite_number(c))
            raise ValueError(
                f"{path}: column {target!r}, row {bad} holds {raw[bad - 1]!r}, not a number "
                "(a regression target must be numeric)"
            )
        return Dataset(path.stem, X, values, REGRESSION, list(features))
    if numeric_target:
        labels = sorted(set(values.tolist()))
        names = [_format_number(v) for v in labels]
        index = {v: i for i, v in enumerate(labels)}
        y = np.array([index[v] for v in values.tolist()])
    else:
        names = sorted(set(raw))
        index = {v: i for i, v in enumerate(names)}
        y = np.array([index[v] for v in raw])
    if len(names) < 2:
        raise ValueError(
            f"{path}: target column {target!r} holds a single class ({names[0]!r}) in all "
            f"{len(raw)} rows; classification needs at least two"
        )
    return Dataset(path.stem, X, y, CLASSIFICATION, list(features), names)


def _is_finite_number(cell: str) -> bool:
    try:
        return math.isfinite(float(cell))
    except ValueError:
        return False


def _format_number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else repr(float(value))


# ----------------------------------------------------------------------------------- splits
@dataclass
class Standardizer:
    """z = (x − mean) / std with the training split's statistics (std 0 → 1)."""

    mean: np.ndarray
    std: np.ndarray
    #: regression targets: their mean and std (None for classification).
    y_mean: float | None = None
    y_std: float | None = None

    @classmethod
    def fit(cls, X: np.ndarray, y: np.ndarray | None = None) -> Standardizer:
        std = X.std(axis=0)
        std = np.where(std > 0, std, 1.0)
        if y is None:
            return cls(X.mean(axis=0), std)
        y_std = float(y.std()) or 1.0
        return cls(X.mean(axis=0), std, float(y.mean()), y_std)

    def transform(self, X: np.ndarray) -> np.ndarray:
        if X.ndim != 2 or X.shape[1] != len(self.mean):
            raise ValueError(
                f"expected data with {len(self.mean)} features, got shape {tuple(X.shape)}"
            )
        return (X - self.mean) / self.std

    def transform_y(self, y: np.ndarray) -> np.ndarray:
        return y if self.y_mean is None else (y - self.y_mean) / self.y_std

    def inverse_y(self, y: np.ndarray) -> np.ndarray:
        return y if self.y_mean is None else y * self.y_std + self.y_mean

    def to_dict(self) -> dict:
        return {
            "mean": self.mean.tolist(),
            "std": self.std.tolist(),
            "y_mean": self.y_mean,
            "y_std": self.y_std,
        }

    @classmethod
    def from_dict(cls, data: dict) -> Standardizer:
        return cls(
            np.asarray(data["mean"], dtype=np.float64),
            np.asarray(data["std"], dtype=np.float64),
            data.get("y_mean"),
            data.get("y_std"),
        )


@dataclass
class Split:
    """Standardised tensors for each part; ``val`` is None without a validation split."""

    train: tuple[torch.Tensor, torch.Tensor]
    val: tuple[torch.Tensor, torch.Tensor] | None
    test: tuple[torch.Tensor, torch.Tensor]
    standardizer: Standardizer
    dataset: Dataset
    #: row indices of each part in ``dataset``.
    indices: dict[str, np.ndarray]


def _tensors(X: np.ndarray, y: np.ndarray, task: str) -> tuple[torch.Tensor, torch.Tensor]:
    x = torch.as_tensor(X, dtype=torch.float64)
    if task == CLASSIFICATION:
        return x, torch.as_tensor(y, dtype=torch.long)
    return x, torch.as_tensor(y, dtype=torch.float64).reshape(-1, 1)


def split_indices(
    n: int, test_size: float, val_size: float, seed: int, fixed_test: np.ndarray | None = None
) -> dict[str, np.ndarray]:
    """Seeded disjoint index sets ``train``, ``val``, ``test`` covering 0..n-1.

    The test part is ``round(test_size·n)`` samples (or ``fixed_test`` when the source defines
    its own test split), the validation part ``round(val_size·n)`` of the rest.
    """
    for name, value in (("test_size", test_size), ("val_size", val_size)):
        if not 0.0 <= value < 1.0:
            raise ValueError(f"{name} must be in [0, 1), got {value}")
    rng = np.random.default_rng(seed)
    if fixed_test is not None:
        test = np.sort(fixed_test)
        rest = rng.permutation(np.setdiff1d(np.arange(n), test))
    else:
        order = rng.permutation(n)
        n_test = round(test_size * n)
        test, rest = np.sort(order[:n_test]), order[n_test:]
    n_val = round(val_size * n)
    val, train = np.sort(rest[:n_val]), np.sort(rest[n_val:])
    if len(train) == 0:
        raise ValueError(f"the split leaves no training samples (n={n})")
    return {"train": train, "val": val, "test": test}


def split_dataset(
    dataset: Dataset,
    test_size: float = 0.3,
    val_size: float = 0.0,
    seed: int = 0,
    standardize: bool = True,
) -> Split:
    """Split ``dataset`` (seeded) and standardise with training statistics only."""
    if not isinstance(dataset, Dataset):
        raise TypeError(f"expected a meshprop.data.Dataset, got {type(dataset).__name__}")
    parts = split_indices(len(dataset.y), test_size, val_size, seed, dataset.test_indices)
    if len(parts["test"]) == 0:
        raise ValueError(f"the split leaves no test samples (n={len(dataset.y)})")
    X_train, y_train = dataset.X[parts["train"]], dataset.y[parts["train"]]
    regression = dataset.task == REGRESSION
    if standardize:
        scaler = Standardizer.fit(X_train, y_train if regression else None)
    else:
        d = dataset.n_features
        scaler = Standardizer(np.zeros(d), np.ones(d))

    def part(name: str) -> tuple[torch.Tensor, torch.Tensor]:
        idx = parts[name]
        X = scaler.transform(dataset.X[idx])
        return _tensors(X, scaler.transform_y(dataset.y[idx]), dataset.task)

    val = part("val") if len(parts["val"]) else None
    return Split(part("train"), val, part("test"), scaler, dataset, parts)
