"""Datasets for training mesh neural networks: built-in sets and the user's own CSV files.

Every loader returns a :class:`Dataset` (features ``X`` as float64, targets ``y``: class indices
0..K-1 for classification, floats for regression).  :func:`split_dataset` makes a seeded
train/validation/test split and standardises features (and regression targets) with statistics
of the training split only (:class:`Standardizer`, stored in checkpoints).

- :mod:`~meshprop.data.dataset`: the :class:`Dataset` container;
- :mod:`~meshprop.data.builtin`: :data:`DATASETS` and :func:`load_dataset`;
- :mod:`~meshprop.data.csvfile`: :func:`load_csv`;
- :mod:`~meshprop.data.splits`: :func:`split_dataset`, :func:`split_indices`, :class:`Standardizer`;
- :mod:`~meshprop.data.bayes`: :func:`bayes_correct`, the Bayes-optimal rule of the blob sets.
"""

from __future__ import annotations

from .bayes import bayes_correct
from .builtin import DATASETS, TOY_DATASETS, load_dataset
from .csvfile import load_csv
from .dataset import CLASSIFICATION, REGRESSION, Dataset
from .splits import Split, Standardizer, split_dataset, split_indices

__all__ = [
    "CLASSIFICATION",
    "DATASETS",
    "REGRESSION",
    "TOY_DATASETS",
    "Dataset",
    "Split",
    "Standardizer",
    "bayes_correct",
    "load_csv",
    "load_dataset",
    "split_dataset",
    "split_indices",
]
