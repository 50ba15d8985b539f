"""The user's own data: a CSV file with a header row, numeric feature columns and a target column.

Every error names the file, the column and the row (1-based, after the header) at fault.
"""

from __future__ import annotations

import csv
import io
import math
from pathlib import Path

import numpy as np

from .dataset import CLASSIFICATION, REGRESSION, Dataset, file_fingerprint

__all__ = ["load_csv"]


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
    content = path.read_bytes()  # hashed: the run records what it read (Dataset.source)
    try:
        text = content.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        raise ValueError(
            f"{path}: not a UTF-8 text file ({error.reason} at byte {error.start})"
        ) from None
    source = file_fingerprint(path, content)
    lines = io.StringIO(text, newline="")
    rows = [row for row in csv.reader(lines) if any(cell.strip() for cell in row)]
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
        return Dataset(path.stem, X, np.zeros(len(X)), REGRESSION, list(features), source=source)

    k = header.index(target)
    raw = [row[k].strip() for row in body]
    for number, cell in enumerate(raw, start=1):
        if not cell or cell.lower() in ("nan", "na", "null", "none"):
            raise ValueError(f"{path}: column {target!r}, row {number} has no target value")
    values = _numbers(raw)
    if task == "auto":
        if values is None:
            task = CLASSIFICATION
        else:
            distinct = len(np.unique(values))
            integer = _looks_integer(values)
            task = CLASSIFICATION if integer and distinct <= max_classes else REGRESSION
    if task == REGRESSION:
        if values is None:
            bad = next(n for n, c in enumerate(raw, 1) if not _is_finite_number(c))
            raise ValueError(
                f"{path}: column {target!r}, row {bad} holds {raw[bad - 1]!r}, not a number "
                "(a regression target must be numeric)"
            )
        return Dataset(path.stem, X, values, REGRESSION, list(features), source=source)
    if values is not None:
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
    return Dataset(path.stem, X, y, CLASSIFICATION, list(features), names, source=source)


def _numbers(cells: list[str]) -> np.ndarray | None:
    """The cells as finite floats, or None when any is not one."""
    try:
        values = np.array([float(c) for c in cells])
    except ValueError:
        return None
    return values if bool(np.all(np.isfinite(values))) else None


def _is_finite_number(cell: str) -> bool:
    try:
        return math.isfinite(float(cell))
    except ValueError:
        return False


def _format_number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else repr(float(value))
