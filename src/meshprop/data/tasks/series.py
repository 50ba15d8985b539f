"""Prediction tasks on a series: Mackey–Glass and a column of the user's CSV file.

The series x(0..n−1) is split in time: the first ``n_train = int((1 − test_fraction)·n)``
values are the training part, the rest the test part.  It is standardised with the training
part's mean and standard deviation.  Element t's input is the window
[x(t), x(t−1), …, x(t−W+1)] (0 before the start) and its target x(t+H), H the horizon:

- training: the elements whose window lies in the series and whose target lies in the
  training part, t = W − 1 … n_train − H − 1 (the elements the AR baseline is fitted on),
  streamed in order and cycled (element k of the stream is t = W − 1 + k mod (n_train − H −
  W + 1)) for as many elements as training takes; the state carries over from the end of the
  part to its start;
- test: one run with frozen weights over the whole series from a zero state (the training part
  warms the state up), scored on the elements whose target lies in the test part.

Metric: NMSE = mean((y − x)²)/var(x) over the test targets (standardised units); baselines:
persistence and a ridge AR(5), and a ridge AR(W) on the inputs themselves when the window W
is not 5 (:mod:`.baselines`).  ``linear_fit`` holds the ridge fit of the target on the window
over the training elements (AR(W)), for a network that starts from it.
"""

from __future__ import annotations

import csv
import io
import math
from pathlib import Path

import numpy as np
import torch

from .baselines import AR_ORDER, persistence_nmse, ridge_ar_fit, ridge_ar_nmse
from .stream import TaskStream

__all__ = [
    "MACKEY_GLASS_SAMPLES",
    "MIN_SERIES",
    "load_series_column",
    "mackey_glass_task",
    "series_task",
]

#: values of the built-in Mackey–Glass series (τ = 17, one value per time unit)
MACKEY_GLASS_SAMPLES = 2000
#: the shortest series accepted
MIN_SERIES = 20


def load_series_column(path: str | Path, column: str) -> np.ndarray:
    """The numbers of ``column`` of a CSV file with a header row, in file order.

    Refuses (ValueError naming the file, the row — 1-based after the header — and its line) a
    blank cell, a blank line inside the data, a NaN or infinite value and any text that is not
    a number: the series is never silently shifted.  Blank lines after the last row are
    ignored."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no such file: {path}")
    try:
        text = path.read_bytes().decode("utf-8-sig")
    except UnicodeDecodeError as error:
        raise ValueError(f"{path}: not a UTF-8 text file ({error.reason})") from None
    rows = list(csv.reader(io.StringIO(text, newline="")))
    while rows and not any(cell.strip() for cell in rows[-1]):
        rows.pop()  # blank lines at the end of the file
    if not rows:
        raise ValueError(f"{path} is empty (expected a header row and data rows)")
    header = [h.strip() for h in rows[0]]
    if column not in header:
        raise ValueError(f"column {column!r} not in {path}; columns are {header}")
    j = header.index(column)
    values = np.empty(len(rows) - 1, dtype=np.float64)
    for r, row in enumerate(rows[1:], start=1):
        where = f"{path}, row {r} (line {r + 1}), column {column!r}"
        cell = row[j].strip() if j < len(row) else ""
        if not cell:
            raise ValueError(f"{where}: blank cell; fill or remove the row")
        try:
            value = float(cell)
        except ValueError:
            raise ValueError(f"{where}: {cell!r} is not a number") from None
        if not math.isfinite(value):
            raise ValueError(f"{where}: {cell!r} is not a finite number")
        values[r - 1] = value
    return values


def series_task(
    series: np.ndarray,
    name: str,
    horizon: int = 1,
    window: int = 1,
    test_fraction: float = 0.3,
    train_ticks: int = 20_000,
) -> TaskStream:
    """Predict ``series`` ``horizon`` values ahead from a window of its last ``window`` values
    (see the module docstring for the split and how training consumes the series)."""
    series = np.asarray(series, dtype=np.float64)
    n = len(series)
    for label, value, low in (("horizon", horizon, 1), ("window", window, 1)):
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            raise ValueError(f"{label} must be an integer >= {low}, got {value!r}")
    if not 0.0 < test_fraction < 1.0:
        raise ValueError(f"test_fraction must be in (0, 1), got {test_fraction}")
    if n < MIN_SERIES:
        raise ValueError(f"the series has {n} values; at least {MIN_SERIES} are needed")
    n_train = int((1.0 - test_fraction) * n)
    if n_train - horizon < AR_ORDER + 2 or n - n_train < 2:
        raise ValueError(
            f"{n} values split at {n_train}: too few for horizon {horizon} (a training part of "
            f"more than {horizon + AR_ORDER + 1} values and a test part of 2 or more are needed)"
        )
    mean, std = series[:n_train].mean(), series[:n_train].std()
    if std == 0:
        raise ValueError("the training part of the series is constant")
    z = (series - mean) / std
    zt = torch.as_tensor(z, dtype=torch.float64)
    padded = torch.cat([torch.zeros(window - 1, dtype=torch.float64), zt])
    # inputs of every element t = 0 … n − H − 1: [z(t), z(t−1), …, z(t−W+1)]
    inputs = torch.stack(
        [padded[window - 1 - k : window - 1 - k + n - horizon] for k in range(window)], dim=1
    )
    targets = zt[horizon:]
    first = window - 1  # the first element whose window lies wholly in the series
    count = n_train - horizon - first
    if count < 1:
        raise ValueError(
            f"the training part ({n_train} values) holds no element with a full window of "
            f"{window} and a target {horizon} step(s) ahead; use a smaller --window"
        )
    idx = first + torch.arange(train_ticks) % count
    test = torch.arange(n - horizon) + horizon >= n_train
    times = np.arange(n - horizon)[test.numpy()]
    baselines = {
        "persistence": persistence_nmse(z, horizon, times),
        f"ridge_ar{AR_ORDER}": ridge_ar_nmse(z, horizon, n_train, times),
    }
    if window != AR_ORDER and count >= window + 1:  # the linear model of the network's inputs
        baselines[f"ridge_ar{window}"] = ridge_ar_nmse(z, horizon, n_train, times, window)
    coef, intercept = ridge_ar_fit(z, horizon, n_train, window) if count >= window + 1 else (
        np.zeros(window), 0.0)  # fmt: skip
    description = (
        f"{name}: {n} values; training part the first {n_train} ({100 * (1 - test_fraction):g} %), "
        f"test part the last {n - n_train}; standardised with the training part's mean and std; "
        f"input the last {window} value(s), target the value {horizon} step(s) ahead; training "
        f"streams the {count} training elements in order, cycled to {train_ticks:,} "
        "elements; test: one frozen run over the whole series, NMSE on the test targets"
    )
    return TaskStream(
        name=name,
        metric="nmse",
        x_train=inputs[idx].view(-1, 1, window),
        y_train=targets[idx].view(-1, 1, 1),
        m_train=torch.ones(train_ticks, 1, dtype=torch.bool),
        x_test=inputs.view(-1, 1, window),
        y_test=targets.view(-1, 1, 1),
        m_test=test.view(-1, 1),
        description=description,
        baselines=baselines,
        linear_fit=(tuple(float(c) for c in coef), intercept),
    )


def mackey_glass_task(
    horizon: int = 1,
    window: int = 1,
    test_fraction: float = 0.3,
    train_ticks: int = 20_000,
    n_samples: int = MACKEY_GLASS_SAMPLES,
) -> TaskStream:
    """Mackey–Glass (τ = 17, sampled every time unit, ``meshprop.diagram.series``) predicted
    ``horizon`` steps ahead (1 by default; the literature's long-horizon benchmark is 84)."""
    from ...diagram.series import mackey_glass

    series = mackey_glass(n_samples, tau=17.0, sample_every=1.0)
    return series_task(series, "mackey-glass", horizon, window, test_fraction, train_ticks)
