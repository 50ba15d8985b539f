"""The saved state of a ``meshprop online`` run, so that a stream cut by a signal or a kill
continues exactly where its last saved state left it (``--resume``).

The state (``online-state.pt``, written atomically every ``--checkpoint-every`` elements and on
SIGINT/SIGTERM) holds the settings it belongs to, the next element's index, the weights, the
optimizer's state, the learner's carried state (:meth:`meshprop.OnlineLearner.state_dict`: h,
the RTRL sensitivities or the truncated-BPTT window), the learning curve so far with its open
window, and the training seconds spent.  The stream itself is not saved: it is drawn again from
the seed.  A resumed run gives bit-identical weights, curve and metrics (the tests kill real
runs to check it).
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import torch

from ..training import TrainingInterruptedError
from .folder import RunFolder

__all__ = [
    "STATE_FILE",
    "STATE_FORMAT",
    "OnlineInterruptedError",
    "read_state",
    "write_state",
]

#: the state ``--resume`` continues from, in the run folder
STATE_FILE = "online-state.pt"
STATE_FORMAT = "meshprop-online-state"
STATE_VERSION = 1


class OnlineInterruptedError(TrainingInterruptedError):
    """A stop request (SIGINT/SIGTERM) ended the stream after ``tick`` elements, all saved in
    ``path`` (a :class:`~meshprop.training.TrainingInterruptedError`, as ``fit``'s: the
    commands' runner says how to resume and exits 130/143)."""

    def __init__(self, tick: int, path: Path) -> None:
        super().__init__(0, tick, path)
        self.tick = tick
        self.args = (f"interrupted after element {tick}; state in {path}",)


def write_state(folder: RunFolder, settings: dict[str, Any], tick: int, **parts: Any) -> Path:
    """Save the state after ``tick`` elements (``parts``: weights, optimizer, learner, curve,
    window, elapsed) atomically into ``folder`` (:data:`STATE_FILE`, listed in its manifest)."""
    buffer = io.BytesIO()
    torch.save(
        {"format": STATE_FORMAT, "version": STATE_VERSION, "settings": settings, "tick": tick,
         **parts},
        buffer,
    )  # fmt: skip
    return folder.write_bytes(STATE_FILE, buffer.getvalue())


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
