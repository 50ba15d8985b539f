"""Memory tasks on random ±1 bits, scored by accuracy (sign(output) = target).

- :func:`delayed_recall`: the input of element t is a bit b(t); the target is b(t − D) (no
  loss for t < D).
- :func:`copy_task`: episodes of a pattern of K bits, D blank elements, then K recall elements
  whose target is the pattern in order; two inputs per element, the bit (0 when blank or
  recalling) and a recall cue (1 while recalling).  Only the recall elements carry a loss.

Both: a training stream of ``train_ticks`` elements and a fresh held-out stream of
``test_ticks`` elements drawn after it from the same seeded generator.  Baselines: chance
(0.5) and the majority class of the training targets.
"""

from __future__ import annotations

import torch

from .baselines import chance_accuracy, majority_accuracy
from .stream import TaskStream

__all__ = ["copy_task", "delayed_recall"]

Parts = tuple[torch.Tensor, torch.Tensor, torch.Tensor]


def _bits(n: int, gen: torch.Generator) -> torch.Tensor:
    return torch.randint(0, 2, (n,), generator=gen).double() * 2 - 1


def _recall(n: int, delay: int, gen: torch.Generator) -> Parts:
    bits = _bits(n, gen)
    target = torch.zeros(n, dtype=torch.float64)
    target[delay:] = bits[: n - delay]
    mask = torch.arange(n) >= delay
    return bits.view(n, 1, 1), target.view(n, 1, 1), mask.view(n, 1)


def _baselines(y_train: torch.Tensor, m_train: torch.Tensor, y_test, m_test) -> dict[str, float]:
    return {
        "chance": chance_accuracy(2),
        "majority": majority_accuracy(
            y_train[..., 0][m_train].numpy(), y_test[..., 0][m_test].numpy()
        ),
    }


def _check(name: str, value: int, low: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise ValueError(f"{name} must be an integer >= {low}, got {value!r}")


def delayed_recall(
    delay: int = 10, train_ticks: int = 10_000, test_ticks: int = 5000, seed: int = 0
) -> TaskStream:
    """Recall the bit shown ``delay`` elements earlier (see the module docstring)."""
    _check("delay", delay, 1)
    _check("train_ticks", train_ticks, 1)
    _check("test_ticks", test_ticks, delay + 1)
    gen = torch.Generator().manual_seed(seed)
    x, y, m = _recall(train_ticks, delay, gen)
    xt, yt, mt = _recall(test_ticks, delay, gen)
    description = (
        f"delayed-recall: input a random ±1 bit per element, target the bit of {delay} "
        f"elements earlier; {train_ticks:,} training elements, then accuracy on a fresh "
        f"stream of {test_ticks:,} with frozen weights from a zero state"
    )
    return TaskStream(
        "delayed-recall", "accuracy", x, y, m, xt, yt, mt, description,
        _baselines(y, m, yt, mt), warmup=delay,
    )  # fmt: skip


def _copy(n: int, length: int, delay: int, gen: torch.Generator) -> Parts:
    period = 2 * length + delay
    episodes = -(-n // period)
    pattern = _bits(episodes * length, gen).view(episodes, length)
    x = torch.zeros(episodes, period, 2, dtype=torch.float64)
    y = torch.zeros(episodes, period, dtype=torch.float64)
    m = torch.zeros(episodes, period, dtype=torch.bool)
    x[:, :length, 0] = pattern
    x[:, length + delay :, 1] = 1.0
    y[:, length + delay :] = pattern
    m[:, length + delay :] = True
    return x.view(-1, 1, 2)[:n], y.view(-1, 1, 1)[:n], m.view(-1, 1)[:n]


def copy_task(
    length: int = 3,
    delay: int = 5,
    train_ticks: int = 50_000,
    test_ticks: int = 5000,
    seed: int = 0,
) -> TaskStream:
    """Copy a pattern of ``length`` bits after ``delay`` blank elements (module docstring)."""
    _check("length", length, 1)
    _check("delay", delay, 0)
    _check("train_ticks", train_ticks, 1)
    _check("test_ticks", test_ticks, 2 * length + delay)
    gen = torch.Generator().manual_seed(seed)
    x, y, m = _copy(train_ticks, length, delay, gen)
    xt, yt, mt = _copy(test_ticks, length, delay, gen)
    description = (
        f"copy: episodes of {2 * length + delay} elements (a pattern of {length} random ±1 "
        f"bits, {delay} blanks, {length} recall elements with a cue input; target the pattern), "
        f"streamed back to back; {train_ticks:,} training elements, then accuracy on the recall "
        f"elements of a fresh stream of {test_ticks:,}"
    )
    return TaskStream(
        "copy", "accuracy", x, y, m, xt, yt, mt, description, _baselines(y, m, yt, mt)
    )
