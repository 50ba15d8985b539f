"""The saved state of a ``meshprop online`` run, so that a stream cut by a signal or a kill
continues exactly where its last saved state left it (``--resume``).

The state (``online-state.pt``, written atomically every ``--checkpoint-every`` elements and on
SIGINT/SIGTERM) holds the settings it belongs to, the next element's index, the weights, the
optimizer's state, the learner's carried state (:meth:`meshprop.OnlineLearner.state_dict`: h,
the RTRL sensitivities or the truncated-BPTT window), the learning curve so far with its open
window, and the training seconds spent.  The stream itself is not saved: it is drawn again from
the seed.  A resumed run gives bit-identical weights, curve and metrics (tests/test_online_cli.py
kills real runs to check it).
"""

from __future__ import annotations

import io
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from ..atomic import atomic_write_bytes

__all__ = [
    "STATE_FORMAT",
    "OnlineCheckpoint",
    "OnlineInterruptedError",
    "read_state",
    "write_state",
]

STATE_FORMAT = "meshprop-online-state"
STATE_VERSION = 1


class OnlineInterruptedError(Exception):
    """A stop request (SIGINT/SIGTERM) ended the stream after ``tick`` elements, all saved."""

    def __init__(self, tick: int) -> None:
        super().__init__(f"interrupted after element {tick}")
        self.tick = tick


@dataclass
class OnlineCheckpoint:
    """Where and how often :func:`meshprop.commands.online.run_online` saves its state.

    path: the state file.  every: elements between saves (0: only on a stop request).
    resume: continue from ``path`` when it exists.  stop_requested: polled after every element
    (sequence, for full BPTT); when true the state is saved and
    :class:`OnlineInterruptedError` raised."""

    path: Path
    every: int
    resume: bool = False
    stop_requested: Callable[[], bool] | None = None


def write_state(path: Path, settings: dict[str, Any], tick: int, **parts: Any) -> None:
    """Save the state after ``tick`` elements (``parts``: weights, optimizer, learner, curve,
    window, elapsed) atomically."""
    buffer = io.BytesIO()
    torch.save(
        {"format": STATE_FORMAT, "version": STATE_VERSION, "settings": settings, "tick": tick,
         **parts},
        buffer,
    )  # fmt: skip
    atomic_write_bytes(path, buffer.getvalue())


def read_state(path: Path, settings: dict[str, Any]) -> dict[str, Any]:
    """The state saved in ``path`` for a run of ``settings``; ValueError (one line, naming the
    file) when it is unreadable or was saved by a run with other settings."""
    try:
        document = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # torch raises many kinds for a damaged file
        reason = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise ValueError(f"{path}: not a readable online state ({reason})") from None
    if not isinstance(document, dict) or document.get("format") != STATE_FORMAT:
        raise ValueError(f"{path}: not a meshprop online state")
    if document.get("version") != STATE_VERSION:
        raise ValueError(f"{path}: online state version {document.get('version')!r} is not 1")
    saved = document.get("settings")
    if saved != settings:
        differ = sorted(
            k for k in set(settings) | set(saved or {}) if (saved or {}).get(k) != settings.get(k)
        )
        raise ValueError(
            f"{path}: saved by a run with other settings ({', '.join(differ)}); give the run's "
            "--out with --resume and no conflicting options, or --overwrite"
        )
    return document
