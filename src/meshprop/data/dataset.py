"""The :class:`Dataset` container every loader returns: features ``X`` as float64 and targets
``y`` (class indices 0..K-1 for classification, floats for regression)."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["CLASSIFICATION", "REGRESSION", "Dataset", "file_fingerprint"]

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
    #: for data read from a file: :func:`file_fingerprint` of the bytes read (else None).
    source: dict[str, Any] | None = None

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

    def fingerprint(self) -> dict[str, Any]:
        """What identifies the data: the file's path, size and SHA-256 for data read from a
        file, else the size and SHA-256 of the arrays ``X`` and ``y`` (generated datasets)."""
        if self.source is not None:
            return dict(self.source)
        digest = hashlib.sha256()
        for array in (self.X, self.y):
            digest.update(np.ascontiguousarray(array).tobytes())
        size = self.X.nbytes + self.y.nbytes
        return {"arrays": self.name, "size": size, "sha256": digest.hexdigest()}

    @property
    def n_features(self) -> int:
        return int(self.X.shape[1])

    @property
    def n_classes(self) -> int:
        return len(self.class_names) if self.task == CLASSIFICATION else 0

    @property
    def n_outputs(self) -> int:
        """Output neurons a network needs: one per class, or one for regression."""
        return self.n_classes if self.task == CLASSIFICATION else 1


def file_fingerprint(path: str | Path, content: bytes | None = None) -> dict[str, Any]:
    """``{"path", "size", "sha256"}`` of a file (of ``content``, its bytes, when given)."""
    data = Path(path).read_bytes() if content is None else content
    return {
        "path": str(Path(path).resolve()),
        "size": len(data),
        "sha256": hashlib.sha256(data).hexdigest(),
    }
