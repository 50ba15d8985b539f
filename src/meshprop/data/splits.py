"""Seeded train/validation/test splits and standardisation with training statistics only.

The split is scikit-learn's ``train_test_split`` driven by numpy's PCG64 stream of ``seed``:
the same permutation as ``np.random.default_rng(seed).permutation``, so every split is the one
meshprop has always drawn and a saved run rebuilds its own test split exactly.  The
:class:`Standardizer` is scikit-learn's ``StandardScaler`` (one for the features, one for a
regression target); it is stored in checkpoints (:meth:`Standardizer.to_dict`) so that
``meshprop evaluate`` and ``meshprop predict`` transform new data exactly as in training.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from .dataset import CLASSIFICATION, REGRESSION, Dataset

if TYPE_CHECKING:  # scikit-learn is imported when data is split, not with meshprop.data
    from sklearn.preprocessing import StandardScaler

__all__ = ["Split", "Standardizer", "split_dataset", "split_indices"]


def _scaler(mean: Any, std: Any) -> StandardScaler:
    """A fitted ``StandardScaler`` with the given statistics (a saved run's)."""
    from sklearn.preprocessing import StandardScaler

    scaler = StandardScaler()
    scaler.mean_ = np.asarray(mean, dtype=np.float64)
    scaler.scale_ = np.asarray(std, dtype=np.float64)
    scaler.var_ = scaler.scale_**2
    scaler.n_features_in_ = len(scaler.mean_)
    scaler.n_samples_seen_ = 0
    return scaler


class Standardizer:
    """z = (x − mean) / std with the training split's statistics (population std; a constant
    column keeps std 1), and the same for a regression target."""

    def __init__(self, features: StandardScaler, target: StandardScaler | None = None) -> None:
        self.features = features
        #: the regression target's scaler (None for classification).
        self.target = target

    @classmethod
    def fit(cls, X: np.ndarray, y: np.ndarray | None = None) -> Standardizer:
        from sklearn.preprocessing import StandardScaler

        target = None
        if y is not None:
            target = StandardScaler().fit(np.asarray(y, dtype=np.float64).reshape(-1, 1))
        return cls(StandardScaler().fit(X), target)

    @classmethod
    def identity(cls, n_features: int) -> Standardizer:
        """Leaves features unchanged (mean 0, std 1)."""
        return cls(_scaler(np.zeros(n_features), np.ones(n_features)))

    @property
    def mean(self) -> np.ndarray:
        return np.asarray(self.features.mean_)

    @property
    def std(self) -> np.ndarray:
        return np.asarray(self.features.scale_)

    @property
    def y_mean(self) -> float | None:
        return None if self.target is None else float(self.target.mean_[0])

    @property
    def y_std(self) -> float | None:
        return None if self.target is None else float(self.target.scale_[0])

    def transform(self, X: np.ndarray) -> np.ndarray:
        if X.ndim != 2 or X.shape[1] != len(self.mean):
            raise ValueError(
                f"expected data with {len(self.mean)} features, got shape {tuple(X.shape)}"
            )
        return np.asarray(self.features.transform(X))

    def transform_y(self, y: np.ndarray) -> np.ndarray:
        if self.target is None:
            return y
        return np.asarray(self.target.transform(y.reshape(-1, 1))).reshape(y.shape)

    def inverse_y(self, y: np.ndarray) -> np.ndarray:
        if self.target is None:
            return y
        return np.asarray(self.target.inverse_transform(y.reshape(-1, 1))).reshape(y.shape)

    def to_dict(self) -> dict[str, Any]:
        return {
            "mean": self.mean.tolist(),
            "std": self.std.tolist(),
            "y_mean": self.y_mean,
            "y_std": self.y_std,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Standardizer:
        """The standardiser :meth:`to_dict` stored (the ``standardizer`` of a checkpoint)."""
        target = None
        if data.get("y_mean") is not None:
            target = _scaler([data["y_mean"]], [data["y_std"]])
        return cls(_scaler(data["mean"], data["std"]), target)


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
    """Seeded disjoint, sorted index sets ``train``, ``val``, ``test`` covering 0..n-1.

    One seeded shuffle: the test part is its first ``round(test_size·n)`` samples (or
    ``fixed_test`` when the source defines its own test split), the validation part the next
    ``round(val_size·n)``, the training part the rest.
    """
    for name, value in (("test_size", test_size), ("val_size", val_size)):
        if not 0.0 <= value < 1.0:
            raise ValueError(f"{name} must be in [0, 1), got {value}")
    from sklearn.model_selection import train_test_split

    stream = np.random.RandomState(np.random.PCG64(seed))
    n_val = round(val_size * n)
    if fixed_test is None:
        n_test = round(test_size * n)
        if n_test == 0:
            raise ValueError(f"the split leaves no test samples (n={n}, test_size={test_size})")
        if n_test >= n:
            raise ValueError(f"the split leaves no training samples (n={n})")
        rest, test = train_test_split(np.arange(n), test_size=n_test, random_state=stream)
        val, train = rest[:n_val], rest[n_val:]
    else:
        test = np.asarray(fixed_test)
        rest = np.setdiff1d(np.arange(n), test)
        if 0 < n_val < len(rest):
            train, val = train_test_split(rest, test_size=n_val, random_state=stream)
        else:
            train, val = (rest, rest[:0]) if n_val == 0 else (rest[:0], rest)
    if len(train) == 0:
        raise ValueError(f"the split leaves no training samples (n={n})")
    return {"train": np.sort(train), "val": np.sort(val), "test": np.sort(test)}


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
    X_train, y_train = dataset.X[parts["train"]], dataset.y[parts["train"]]
    regression = dataset.task == REGRESSION
    if standardize:
        scaler = Standardizer.fit(X_train, y_train if regression else None)
    else:
        scaler = Standardizer.identity(dataset.n_features)

    def part(name: str) -> tuple[torch.Tensor, torch.Tensor]:
        idx = parts[name]
        X = scaler.transform(dataset.X[idx])
        return _tensors(X, scaler.transform_y(dataset.y[idx]), dataset.task)

    val = part("val") if len(parts["val"]) else None
    return Split(part("train"), val, part("test"), scaler, dataset, parts)
