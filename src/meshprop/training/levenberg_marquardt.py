"""Levenberg–Marquardt training on the one-call Jacobian (pyrenn's default for small recurrent
models).

With e = target − y over every (step, sample, output) and J = ∂y/∂θ (:mod:`.jacobian`, one
forward run of the sensitivities, paper 000 Eq. 13), one epoch solves

    (JᵀJ + μ I) δ = Jᵀ e                                   (torch.linalg.solve)

and tries θ + δ: if the mean squared error drops the step is kept and μ ← μ / factor (towards
Gauss–Newton), otherwise θ is restored, μ ← μ · factor (towards a short gradient step) and the
solve is retried, until μ exceeds ``mu_max`` (training stops: no step lowers the error).

Full batch and the mean-squared error only: LM minimises a sum of squares, so other losses are
rejected (use :func:`meshprop.training.fit` with a torch optimiser for them).  It is a separate
loop from ``fit`` because its step needs the whole batch's Jacobian and re-evaluations of the
error, which an optimiser stepping on mini-batch gradients cannot express.  A MeshNet's P edge
weights are stepped, never the masked entries of A, which stay exactly 0.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping
from typing import Any

import torch
from torch import nn

from ..losses import LossFn
from ..mesh import MeshNet
from ..threads import thread_policy
from .history import History
from .jacobian import ParameterVector, outputs_and_jacobian

__all__ = ["levenberg_marquardt", "lm_step"]


def lm_step(J: torch.Tensor, e: torch.Tensor, mu: float) -> torch.Tensor:
    """δ solving (JᵀJ + μI) δ = Jᵀe for J of shape (…, P) and e shaped like J without its last
    axis (every leading axis is a residual)."""
    P = J.shape[-1]
    Jm, ev = J.reshape(-1, P), e.reshape(-1)
    H = Jm.T @ Jm
    H.diagonal().add_(mu)
    return torch.linalg.solve(H, Jm.T @ ev)


def _outputs(
    model: nn.Module, x: Any, initial_states: Mapping[str, torch.Tensor] | None
) -> torch.Tensor:
    """y without any sensitivity (the trial evaluations of a step)."""
    with torch.no_grad():
        if isinstance(model, MeshNet):
            x = model.prepare_input(x)
            return model.storage.output(model.dynamics, model.parameter, x)
        run: Any = getattr(model, "run")  # noqa: B009 (a duck-typed Diagram)
        outs = run(x, initial_states)
        if isinstance(outs, Mapping):
            names: list[str] = getattr(model, "output_names")  # noqa: B009
            return torch.cat([outs[n] for n in names], dim=2)
        return outs


def _check_target(model: nn.Module, target: Any, y: torch.Tensor) -> torch.Tensor:
    if isinstance(target, Mapping):
        names = getattr(model, "output_names", None)
        if names is None or set(target) != set(names):
            raise ValueError(f"targets by name must be given for exactly the outputs {names}")
        target = torch.cat([torch.as_tensor(target[n]) for n in names], dim=2)
    target = torch.as_tensor(target)
    if not target.dtype.is_floating_point:
        raise TypeError(f"mse needs a floating-point target, got dtype {target.dtype}")
    if tuple(target.shape) != tuple(y.shape):
        raise ValueError(
            f"target must have the outputs' shape {tuple(y.shape)}, got {tuple(target.shape)}"
        )
    target = target.to(dtype=y.dtype, device=y.device)
    if not torch.isfinite(target).all():
        raise ValueError("target contains NaN or inf")
    return target


def levenberg_marquardt(
    model: nn.Module,
    x: Any,
    target: Any,
    epochs: int = 100,
    *,
    loss: str | LossFn = "mse",
    mu: float = 1e-3,
    factor: float = 10.0,
    mu_max: float = 1e10,
    min_loss: float = 0.0,
    initial_states: Mapping[str, torch.Tensor] | None = None,
    callback: Callable[[int, nn.Module, dict[str, float]], Any] | None = None,
    threads: int | None = None,
) -> History:
    """Train ``model`` (a MeshNet or a block diagram) in place by Levenberg–Marquardt.

    Args:
        model: a ``meshprop.MeshNet`` (x (B, I) or (ticks, B, I), target (B, O)) or a
            ``meshprop.diagram.Diagram`` (x (T, B, width), target (T, B, O) — the outputs
            packed in ``output_names`` order — or a dict by output name).
        epochs: Jacobian evaluations (each ends with an accepted step, or training stops).
        loss: must be ``"mse"``: the mean of e² over every entry of the target.
        mu, factor, mu_max: the damping μ at the start, its divisor after an accepted step and
            multiplier after a rejected one, and the μ beyond which training stops.
        min_loss: stop once the error is at or below it.
        callback: ``callback(epoch, model, record)`` after every epoch.
    Returns the :class:`History`: per epoch ``train_loss`` (after the step) and ``mu`` (the μ of
    the accepted step); ``stopped_early`` when μ exceeded ``mu_max`` or ``min_loss`` was reached.
    """
    if loss != "mse":
        raise ValueError(
            f"levenberg_marquardt minimises a sum of squared errors: loss must be 'mse', got "
            f"{loss!r}; train other losses with meshprop.fit"
        )
    if isinstance(epochs, bool) or not isinstance(epochs, int) or epochs < 1:
        raise ValueError(f"epochs must be a positive integer, got {epochs!r}")
    for name, value, low in (("mu", mu, 0.0), ("factor", factor, 1.0), ("mu_max", mu_max, mu)):
        if not (isinstance(value, int | float) and math.isfinite(value) and value > low):
            raise ValueError(f"{name} must be a finite number > {low}, got {value!r}")
    history = History()
    start = time.perf_counter()
    with thread_policy(threads):
        theta = ParameterVector(model)
        y0 = _outputs(model, x, initial_states)
        target = _check_target(model, target, y0)
        error = float(((target - y0) ** 2).mean())
        for epoch in range(1, epochs + 1):
            if error <= min_loss:
                history.stopped_early = True
                break
            y, J = outputs_and_jacobian(model, x, initial_states)
            e = target - y
            current = theta.get()
            while True:
                theta.set(current + lm_step(J, e, mu))
                trial = float(((target - _outputs(model, x, initial_states)) ** 2).mean())
                if math.isfinite(trial) and trial < error:
                    break
                theta.set(current)
                mu *= factor
                if mu > mu_max:
                    break
            if mu > mu_max:
                history.stopped_early = True
                break
            record = {"epoch": float(epoch), "train_loss": trial, "mu": mu}
            error, mu = trial, mu / factor
            history.records.append(record)
            if callback is not None:
                callback(epoch, model, record)
    history.wall_time_s = time.perf_counter() - start
    return history
