"""The Bayes-optimal accuracy of the blob sets: the best any classifier can expect on a draw."""

from __future__ import annotations

import numpy as np

from .builtin import load_dataset

__all__ = ["bayes_correct"]


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
