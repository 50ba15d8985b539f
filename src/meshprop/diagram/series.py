"""The Mackey–Glass chaotic time series, generated locally.

    dx/dt = β x(t−τ) / (1 + x(t−τ)ⁿ) − γ x(t),   β = 0.2, γ = 0.1, n = 10, τ = 17

Integration: classical 4th-order Runge–Kutta with step dt = 0.1 (τ/dt = 170 steps exactly), the
history x(t) = x0 = 1.2 for t ≤ 0.  The delayed term at the RK4 half steps, x(t − τ + dt/2), is
the mean of the two neighbouring grid values (linear interpolation); this interpolation makes
the scheme second order overall (halving dt divides the error by 4, tests/test_timeseries.py).
After discarding a transient of ``discard`` time units, the series is sampled every
``sample_every`` time units (a multiple of dt).
"""

from __future__ import annotations

import numpy as np

__all__ = ["mackey_glass"]


def mackey_glass(
    n_samples: int = 2000,
    tau: float = 17.0,
    sample_every: float = 1.0,
    dt: float = 0.1,
    discard: float = 500.0,
    x0: float = 1.2,
    beta: float = 0.2,
    gamma: float = 0.1,
    power: float = 10.0,
) -> np.ndarray:
    """``n_samples`` values of the Mackey–Glass series (float64), see the module docstring."""
    if isinstance(n_samples, bool) or not isinstance(n_samples, int) or n_samples < 1:
        raise ValueError(f"n_samples must be a positive integer, got {n_samples!r}")
    for name, v in (("tau", tau), ("sample_every", sample_every), ("dt", dt)):
        if not v > 0:
            raise ValueError(f"{name} must be > 0, got {v}")
    lag = round(tau / dt)
    stride = round(sample_every / dt)
    if abs(lag * dt - tau) > 1e-9 or abs(stride * dt - sample_every) > 1e-9:
        raise ValueError(
            f"tau ({tau}) and sample_every ({sample_every}) must be multiples of dt ({dt})"
        )
    skip = round(discard / dt)
    steps = skip + stride * (n_samples - 1)
    x = np.empty(lag + steps + 1)
    x[: lag + 1] = x0  # history on [-τ, 0]

    def f(xt: float, xd: float) -> float:
        return beta * xd / (1.0 + xd**power) - gamma * xt

    for i in range(lag, lag + steps):
        d0, d1 = x[i - lag], x[i - lag + 1]
        dm = 0.5 * (d0 + d1)
        xi = x[i]
        k1 = f(xi, d0)
        k2 = f(xi + 0.5 * dt * k1, dm)
        k3 = f(xi + 0.5 * dt * k2, dm)
        k4 = f(xi + dt * k3, d1)
        x[i + 1] = xi + dt / 6.0 * (k1 + 2 * k2 + 2 * k3 + k4)
    return x[lag + skip :: stride][:n_samples].copy()
