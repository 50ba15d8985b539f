"""The built-in datasets (:data:`DATASETS`), by name through :func:`load_dataset`.

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

scikit-learn and mnist1d are imported when a set is loaded, not with this module.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np

from .dataset import CLASSIFICATION, Dataset

__all__ = ["DATASETS", "MNIST1D_SAMPLES", "TOY_DATASETS", "load_dataset", "mnist1d_dataset"]


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


#: the sequences mnist1d's generator makes by default (the published set: 4000 + 1000)
MNIST1D_SAMPLES = 5000


def mnist1d_dataset(samples: int = MNIST1D_SAMPLES) -> Dataset:
    """mnist1d's local generator (no download) with its default arguments, but for the number
    of sequences: ``samples``, the first 80 % for training and the rest the test split
    (``test_indices``); the default is the published set, a smaller one a quick check."""
    from mnist1d.data import get_dataset_args, make_dataset

    if samples < 10:
        raise ValueError(f"mnist1d needs at least 10 samples, got {samples}")
    arguments = get_dataset_args()
    arguments.num_samples = samples
    data = make_dataset(arguments)
    X = np.concatenate([data["x"], data["x_test"]])
    y = np.concatenate([data["y"], data["y_test"]])
    test = np.arange(len(data["y"]), len(y))
    return Dataset("mnist1d", X, y, CLASSIFICATION, test_indices=test)


def _mnist1d(n: int, seed: int) -> Dataset:
    """The published MNIST-1D (``n`` and ``seed`` do not apply: the generator's own)."""
    return mnist1d_dataset()


#: generated 2-D sets: name → generator(n_samples, seed)
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
