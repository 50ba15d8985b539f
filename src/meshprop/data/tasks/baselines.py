"""Simple predictors scored beside every online result, on the same held-out elements.

- prediction (NMSE): :func:`persistence_nmse` repeats the last value seen, x̂(t+H) = x(t);
  :func:`ridge_ar_nmse` is a linear autoregressive model, x̂(t+H) = c + Σ_{k<p} a_k x(t−k),
  fitted by scikit-learn's ``Ridge`` on the training part's lagged values;
- classification of ±1 targets (accuracy): :func:`chance_accuracy` (guessing) and
  :func:`majority_accuracy` (always the most frequent training target);
- regression (MSE): :func:`mean_mse`, always the training targets' mean.
"""

from __future__ import annotations

import numpy as np

__all__ = [
    "AR_ALPHA",
    "AR_ORDER",
    "chance_accuracy",
    "lagged",
    "majority_accuracy",
    "mean_mse",
    "persistence_nmse",
    "ridge_ar_fit",
    "ridge_ar_nmse",
]

#: lags of the autoregressive baseline and its ridge penalty (on the standardised series)
AR_ORDER = 5
AR_ALPHA = 1e-6


def chance_accuracy(n_classes: int = 2) -> float:
    """The expected accuracy of a uniform guess among ``n_classes``."""
    return 1.0 / n_classes


def majority_accuracy(train_targets: np.ndarray, test_targets: np.ndarray) -> float:
    """Accuracy on ``test_targets`` of always answering the most frequent training target
    (ties: the larger value)."""
    values, counts = np.unique(np.asarray(train_targets), return_counts=True)
    best = values[counts == counts.max()].max()
    return float(np.mean(np.asarray(test_targets) == best))


def mean_mse(train_targets: np.ndarray, test_targets: np.ndarray) -> float:
    """Test MSE of always predicting the training targets' mean."""
    test = np.asarray(test_targets, dtype=np.float64)
    return float(np.mean((test - np.mean(train_targets)) ** 2))


def _nmse(prediction: np.ndarray, target: np.ndarray) -> float:
    return float(np.mean((prediction - target) ** 2) / np.var(target))


def persistence_nmse(z: np.ndarray, horizon: int, times: np.ndarray) -> float:
    """NMSE of x̂(t+H) = x(t) over the input times ``times`` (targets z[times + H])."""
    return _nmse(z[times], z[times + horizon])


def lagged(z: np.ndarray, order: int, times: np.ndarray) -> np.ndarray:
    """Rows [z(t), z(t−1), …, z(t−order+1)] for t in ``times`` (every t ≥ order − 1)."""
    return np.stack([z[times - k] for k in range(order)], axis=1)


def ridge_ar_fit(
    z: np.ndarray, horizon: int, n_train: int, order: int = AR_ORDER, alpha: float = AR_ALPHA
) -> tuple[np.ndarray, float]:
    """The coefficients (on [z(t), …, z(t−order+1)]) and intercept of a Ridge regression of
    z(t+H) on the ``order`` last values, fitted on every t whose lags and target lie in the
    first ``n_train`` values (the training part)."""
    from sklearn.linear_model import Ridge

    fit_times = np.arange(order - 1, n_train - horizon)
    if len(fit_times) < order + 1:
        raise ValueError(
            f"the training part ({n_train} values) is too short for an AR({order}) baseline "
            f"at horizon {horizon}"
        )
    model = Ridge(alpha=alpha).fit(lagged(z, order, fit_times), z[fit_times + horizon])
    return np.asarray(model.coef_, dtype=np.float64), float(model.intercept_)


def ridge_ar_nmse(
    z: np.ndarray,
    horizon: int,
    n_train: int,
    times: np.ndarray,
    order: int = AR_ORDER,
    alpha: float = AR_ALPHA,
) -> float:
    """NMSE over the input times ``times`` of a Ridge regression of z(t+H) on the ``order``
    last values, fitted on every t whose lags and target lie in the first ``n_train`` values."""
    coef, intercept = ridge_ar_fit(z, horizon, n_train, order, alpha)
    times = np.asarray(times)
    return _nmse(lagged(z, order, times) @ coef + intercept, z[times + horizon])
