"""The adding problem (Hochreiter & Schmidhuber, 1997), as a stream of episodes.

An episode has L elements with two inputs: a value drawn uniformly from [0, 1] and a marker, 1
on exactly two elements (one in the first half, one in the second) and 0 elsewhere.  The target
at the episode's last element is the sum of the two marked values; only that element carries a
loss.  Episodes follow one another without a reset.  Metric: MSE on the last elements of a
fresh held-out stream; baseline: always the training targets' mean (≈ 1, MSE ≈ 1/6).
"""

from __future__ import annotations

import torch

from .baselines import mean_mse
from .stream import TaskStream

__all__ = ["adding_problem"]


def _episodes(n: int, length: int, gen: torch.Generator) -> tuple[torch.Tensor, ...]:
    episodes = -(-n // length)
    half = length // 2
    values = torch.rand(episodes, length, generator=gen, dtype=torch.float64)
    first = torch.randint(0, half, (episodes,), generator=gen)
    second = torch.randint(half, length, (episodes,), generator=gen)
    rows = torch.arange(episodes)
    marker = torch.zeros(episodes, length, dtype=torch.float64)
    marker[rows, first] = 1.0
    marker[rows, second] = 1.0
    y = torch.zeros(episodes, length, dtype=torch.float64)
    y[:, -1] = values[rows, first] + values[rows, second]
    m = torch.zeros(episodes, length, dtype=torch.bool)
    m[:, -1] = True
    x = torch.stack([values, marker], dim=-1)
    return x.view(-1, 1, 2)[:n], y.view(-1, 1, 1)[:n], m.view(-1, 1)[:n]


def adding_problem(
    length: int = 10, train_ticks: int = 100_000, test_ticks: int = 5000, seed: int = 0
) -> TaskStream:
    """The adding problem of episodes of ``length`` elements (module docstring)."""
    for name, value, low in (("length", length, 2), ("train_ticks", train_ticks, 1)):
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            raise ValueError(f"{name} must be an integer >= {low}, got {value!r}")
    if test_ticks < length:
        raise ValueError(f"test_ticks must be >= the length ({length}), got {test_ticks}")
    gen = torch.Generator().manual_seed(seed)
    x, y, m = _episodes(train_ticks, length, gen)
    xt, yt, mt = _episodes(test_ticks, length, gen)
    baselines = {"mean": mean_mse(y[..., 0][m].numpy(), yt[..., 0][mt].numpy())}
    description = (
        f"adding: episodes of {length} elements (a value in [0, 1] and a marker on two of "
        "them), target the sum of the two marked values at the episode's last element; "
        f"{train_ticks:,} training elements, then MSE on the last elements of a fresh stream "
        f"of {test_ticks:,}"
    )
    return TaskStream("adding", "mse", x, y, m, xt, yt, mt, description, baselines)
