"""The :class:`TaskStream`: one online-learning task as a training stream, a held-out part,
its metric and the baselines that put the metric in context."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

__all__ = ["METRICS", "TaskStream"]

#: metric name → what it measures (the ``test_<metric>`` key of ``meshprop online``'s metrics)
METRICS = {
    "accuracy": "fraction of the scored elements where sign(output) equals the ±1 target",
    "nmse": "mean squared error over the scored elements divided by the targets' variance there",
    "mse": "mean squared error over the scored elements",
}


@dataclass(frozen=True)
class TaskStream:
    """A task as streams of elements, one sample wide (B = 1).

    ``x_train`` (T, 1, I), ``y_train`` (T, 1, 1) and ``m_train`` (T, 1) bool are the training
    stream (``m``: the elements that carry a loss); ``x_test``, ``y_test``, ``m_test`` the
    held-out stream, run once from a zero state with frozen weights and scored by ``metric``
    (:data:`METRICS`) on its masked elements (:meth:`score`).  ``baselines`` holds the same
    metric for simple predictors on the same elements (see :mod:`.baselines`); ``description``
    says in words how the streams are made.  ``warmup``: elements at the start of a stream
    whose target a fresh state cannot know (delayed recall: D), left out of full-BPTT sequences.
    ``linear_fit``: for a prediction task, the ridge fit of the target on the inputs over the
    training part (coefficients per input, intercept; the AR baseline when the window is its
    order), from which a network with input → output edges can start; None otherwise.
    """

    name: str
    metric: str
    x_train: torch.Tensor
    y_train: torch.Tensor
    m_train: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor
    m_test: torch.Tensor
    description: str
    baselines: dict[str, float] = field(default_factory=dict)
    warmup: int = 0
    linear_fit: tuple[tuple[float, ...], float] | None = None

    def __post_init__(self) -> None:
        if self.metric not in METRICS:
            raise ValueError(f"metric must be one of {sorted(METRICS)}, got {self.metric!r}")
        for part in ("train", "test"):
            x, y, m = (getattr(self, f"{k}_{part}") for k in "xym")
            if x.dim() != 3 or y.shape != (x.shape[0], x.shape[1], 1) or m.shape != x.shape[:2]:
                raise ValueError(
                    f"{part} stream: x (T, B, I), y (T, B, 1) and m (T, B) expected, got "
                    f"{tuple(x.shape)}, {tuple(y.shape)}, {tuple(m.shape)}"
                )

    @property
    def n_inputs(self) -> int:
        """Inputs per element (I)."""
        return int(self.x_train.shape[-1])

    @property
    def classification(self) -> bool:
        """Scored by accuracy on ±1 targets (an output's sign is its answer)."""
        return self.metric == "accuracy"

    @property
    def metric_key(self) -> str:
        """The key of the test metric in ``meshprop online``'s metrics.json."""
        return f"test_{self.metric}"

    def score(self, y: torch.Tensor) -> float:
        """The task's metric of the outputs ``y`` (T, 1, 1) of the held-out stream."""
        return score(self.metric, y, self.y_test, self.m_test)


def score(metric: str, y: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> float:
    """``metric`` of outputs ``y`` against ``target`` (both (T, B, 1)) on the ``mask`` (T, B)."""
    out, t = y.detach().double()[..., 0][mask], target.double()[..., 0][mask]
    if out.numel() == 0:
        raise ValueError("no element is scored (the mask is empty)")
    if metric == "accuracy":
        return float((torch.sign(out) == t).double().mean())
    err = float(((out - t) ** 2).mean())
    if metric == "mse":
        return err
    return err / float(t.var(unbiased=False))
