"""CAE features of an IDX image set, trained once and cached on disk.

:func:`cae_features` trains a :class:`~meshprop.data.autoencoder.ConvAutoencoder` on the
training images (through ``meshprop.training.fit``, loss "mse", Adam) and encodes the training
and test images into 32 values each.  The result is stored as ``<cache_dir>/<key>.npz`` where
``key`` (:func:`feature_key`) is a SHA-256 over

- the bytes of the images (train and test) — a change of data,
- the architecture string of the CAE — a change of architecture,
- the seed and the training budget (epochs, batch, lr, training subset) — a change of seed,

so a cached file is reused only for exactly the same inputs, and any change trains a new CAE.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from ..reporting import Reporter
from ..training import fit
from .autoencoder import CODE_SIZE, ConvAutoencoder

__all__ = ["CAEBudget", "FeatureSet", "cae_features", "default_cache_dir", "feature_key"]


@dataclass(frozen=True)
class CAEBudget:
    """How the CAE is trained: ``epochs`` passes of Adam (``lr``) over mini-batches of
    ``batch_size`` from the first ``subset`` training images (``None``: all of them)."""

    epochs: int = 4
    batch_size: int = 128
    lr: float = 2e-3
    subset: int | None = None

    def __post_init__(self) -> None:
        if self.epochs < 1 or self.batch_size < 1 or self.lr <= 0:
            raise ValueError(f"epochs, batch_size and lr must be positive, got {self}")
        if self.subset is not None and self.subset < 1:
            raise ValueError(f"subset must be >= 1 or None, got {self.subset}")


@dataclass
class FeatureSet:
    """Codes of the training and test images (float32) with their labels, and the cache key."""

    X_train: np.ndarray
    y_train: np.ndarray
    X_test: np.ndarray
    y_test: np.ndarray
    key: str
    path: Path
    from_cache: bool
    reconstruction_mse: float


def default_cache_dir() -> Path:
    """``$MESHPROP_CACHE`` or ``~/.cache/meshprop``, sub-folder ``features``."""
    base = os.environ.get("MESHPROP_CACHE") or Path.home() / ".cache" / "meshprop"
    return Path(base) / "features"


def feature_key(
    train_images: np.ndarray,
    test_images: np.ndarray,
    architecture: str,
    seed: int,
    budget: CAEBudget,
) -> str:
    """The cache key of a feature set: changes with the data, the architecture or the seed
    (and the training budget)."""
    h = hashlib.sha256()
    for images in (train_images, test_images):
        images = np.ascontiguousarray(images)
        h.update(f"{images.dtype.str}{images.shape}".encode())
        h.update(images.tobytes())
    h.update(architecture.encode())
    h.update(json.dumps({"seed": int(seed), **asdict(budget)}, sort_keys=True).encode())
    return h.hexdigest()[:32]


def _flat(images: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(images.reshape(len(images), -1).astype(np.float32) / 255.0)


@torch.no_grad()
def _encode(cae: ConvAutoencoder, X: torch.Tensor, chunk: int = 2048) -> np.ndarray:
    cae.eval()
    return torch.cat([cae.encode(X[i : i + chunk]) for i in range(0, len(X), chunk)]).numpy()


@torch.no_grad()
def _mse(cae: ConvAutoencoder, X: torch.Tensor, chunk: int = 2048) -> float:
    total = sum(
        float(((cae(X[i : i + chunk]) - X[i : i + chunk]) ** 2).sum())
        for i in range(0, len(X), chunk)
    )
    return total / X.numel()


def cae_features(
    train: tuple[np.ndarray, np.ndarray],
    test: tuple[np.ndarray, np.ndarray],
    seed: int = 0,
    budget: CAEBudget | None = None,
    cache_dir: str | Path | None = None,
    reporter: Reporter | None = None,
    threads: int | None = None,
) -> FeatureSet:
    """32-value CAE codes of ``train = (images, labels)`` and ``test``, from the cache when a
    file with the same key exists, else trained (CAE on the training images only) and cached.

    Images are (n, side, side) uint8; the CAE sees them scaled to [0, 1].
    """
    budget = budget or CAEBudget()
    reporter = reporter or Reporter()
    (train_images, y_train), (test_images, y_test) = train, test
    for name, images in (("train", train_images), ("test", test_images)):
        if images.ndim != 3 or images.shape[1] != images.shape[2]:
            raise ValueError(f"{name} images must be (n, side, side), got {images.shape}")
    side = int(train_images.shape[1])
    cae = ConvAutoencoder(side=side, code=CODE_SIZE, seed=seed)
    key = feature_key(train_images, test_images, cae.architecture, seed, budget)
    directory = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    path = directory / f"{key}.npz"
    if path.is_file():
        with np.load(path) as stored:
            return FeatureSet(
                stored["X_train"],
                np.asarray(y_train, dtype=np.int64),
                stored["X_test"],
                np.asarray(y_test, dtype=np.int64),
                key,
                path,
                True,
                float(stored["reconstruction_mse"]),
            )
    X_train, X_test = _flat(train_images), _flat(test_images)
    fit_X = X_train if budget.subset is None else X_train[: budget.subset]
    reporter.print(
        f"training the CAE on {len(fit_X)} images ({budget.epochs} epochs, batch "
        f"{budget.batch_size}); features cached as {path}"
    )
    fit(
        cae,
        (fit_X, fit_X),
        loss="mse",
        optimizer="adam",
        lr=budget.lr,
        epochs=budget.epochs,
        batch_size=budget.batch_size,
        seed=seed,
        reporter=reporter,
        threads=threads,
        evaluate_train=False,
    )
    features = FeatureSet(
        _encode(cae, X_train),
        np.asarray(y_train, dtype=np.int64),
        _encode(cae, X_test),
        np.asarray(y_test, dtype=np.int64),
        key,
        path,
        False,
        _mse(cae, X_test),
    )
    directory.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile(dir=directory, suffix=".npz", delete=False) as tmp:
        np.savez(
            tmp,
            X_train=features.X_train,
            X_test=features.X_test,
            reconstruction_mse=np.float64(features.reconstruction_mse),
        )
    os.replace(tmp.name, path)  # atomic: a killed run never leaves a half-written cache file
    return features
