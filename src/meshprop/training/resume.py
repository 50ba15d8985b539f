"""Checkpoints of the whole training state, so that an interrupted ``fit`` resumes and ends
bit-identical to the run that was never interrupted.

``fit(..., checkpoint=TrainingCheckpoint(path))`` saves after every ``every``-th epoch (and
when the run ends or is stopped by :attr:`TrainingCheckpoint.stop_requested`) one file holding

- the model's ``state_dict`` and the optimiser's (Adam's moments and step counts, ...);
- every random state training draws from: torch's global CPU generator (a ``DataLoader`` draws
  its base seed from it every epoch), the CUDA generators when CUDA is in use, NumPy's and
  Python's global generators, and the loader's own shuffling generator;
- the early-stopping state (best validation loss, the best weights, epochs waited), the
  history's records, the global step and the epoch;
- inside an epoch (a stop request between two steps): the random state at the epoch's start,
  the number of batches done and the running mean of their losses, so the epoch's batches are
  drawn again in the same order and the first ones skipped;
- ``extra``: the caller's own state (:attr:`TrainingCheckpoint.extra_state`), e.g. the topology
  and random generator of structural learning (:mod:`meshprop.structure`).

The file is written atomically (:mod:`meshprop.atomic`): a process killed at any instant
leaves the previous checkpoint or the new one.  It is a ``torch.save`` archive read back with
``weights_only=True`` (tensors, numbers, strings, lists and dicts only: no code is unpickled).
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from ..atomic import atomic_write_stream

__all__ = [
    "STATE_FORMAT",
    "TrainingCheckpoint",
    "TrainingInterruptedError",
    "capture_rng",
    "load_training_state",
    "loader_generator",
    "restore_rng",
    "save_training_state",
]

STATE_FORMAT = "meshprop-training-state"
STATE_VERSION = 1


class TrainingInterruptedError(Exception):
    """``fit`` stopped on :attr:`TrainingCheckpoint.stop_requested` after saving its state:
    ``epoch`` is the epoch in progress (or the last one completed, when the request came at
    its end), ``step`` the optimiser steps done, ``path`` the checkpoint to resume from."""

    def __init__(self, epoch: int, step: int, path: Path) -> None:
        self.epoch, self.step, self.path = epoch, step, path
        super().__init__(f"training interrupted at epoch {epoch} step {step}; state in {path}")


@dataclass
class TrainingCheckpoint:
    """Where and when ``fit`` saves its state, and whether it resumes from it.

    Args:
        path: the checkpoint file (written atomically; its folder is created).
        every: save after every ``every``-th epoch (0: only when the run ends or is stopped);
            the last epoch, an early stop and a stop request always save.
        resume: continue from ``path`` when the file exists (a fresh start otherwise).
        stop_requested: polled after every optimiser step and epoch; when it returns True,
            ``fit`` saves and raises :class:`TrainingInterruptedError` (e.g. a signal
            handler's flag).
        extra_state: ``extra_state(net)`` → tensors/numbers/strings/lists/dicts saved with the
            state; ``load_extra_state(net, extra)`` puts them back on resume, before the
            model's and the optimiser's state are loaded (so it may change the topology).
        restored: ``restored(history)`` once on resume, with the history of the epochs done
            (e.g. to rewrite a per-epoch log).
    """

    path: str | Path
    every: int = 1
    resume: bool = False
    stop_requested: Callable[[], bool] | None = None
    extra_state: Callable[[nn.Module], Any] | None = None
    load_extra_state: Callable[[nn.Module, Any], None] | None = None
    restored: Callable[[Any], None] | None = None

    def __post_init__(self) -> None:
        if isinstance(self.every, bool) or not isinstance(self.every, int) or self.every < 0:
            raise ValueError(f"every must be an integer >= 0, got {self.every!r}")
        self.path = Path(self.path)

    def due(self, epoch: int) -> bool:
        return self.every > 0 and epoch % self.every == 0

    def stopping(self) -> bool:
        return self.stop_requested is not None and bool(self.stop_requested())


def loader_generator(loader: Iterable[Any]) -> torch.Generator | None:
    """The ``torch.Generator`` that shuffles a ``DataLoader``'s samples (``make_loader``'s, or
    any loader whose sampler or batch sampler's sampler has one), else None."""
    sampler: Any = getattr(loader, "sampler", None)
    for candidate in (
        getattr(sampler, "sampler", None),
        sampler,
        getattr(getattr(loader, "batch_sampler", None), "sampler", None),
    ):
        generator = getattr(candidate, "generator", None)
        if isinstance(generator, torch.Generator):
            return generator
    return None


def capture_rng(generator: torch.Generator | None = None) -> dict[str, Any]:
    """Every random state a training step may draw from (see the module docstring)."""
    np_state: Any = np.random.get_state()  # the legacy tuple (MT19937, keys, pos, ...)
    version, words, gauss = random.getstate()
    state: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "numpy": {
            "kind": str(np_state[0]),
            "keys": torch.from_numpy(np.asarray(np_state[1], dtype=np.int64)),
            "pos": int(np_state[2]),
            "has_gauss": int(np_state[3]),
            "cached_gaussian": float(np_state[4]),
        },
        "python": {"version": version, "words": list(words), "gauss": gauss},
        "loader": None if generator is None else generator.get_state(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng(state: dict[str, Any], generator: torch.Generator | None = None) -> None:
    """Put back what :func:`capture_rng` captured (the loader's state into ``generator``)."""
    torch.set_rng_state(state["torch"])
    np_state = state["numpy"]
    np.random.set_state(
        (
            np_state["kind"],
            np_state["keys"].numpy().astype(np.uint32),
            np_state["pos"],
            np_state["has_gauss"],
            np_state["cached_gaussian"],
        )
    )
    py = state["python"]
    random.setstate((py["version"], tuple(py["words"]), py["gauss"]))
    if generator is not None and state["loader"] is not None:
        generator.set_state(state["loader"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_training_state(path: str | Path, state: dict[str, Any]) -> Path:
    """Write ``state`` (``fit``'s, see the module docstring) to ``path`` atomically."""
    document = {"format": STATE_FORMAT, "version": STATE_VERSION, **state}
    return atomic_write_stream(path, lambda handle: torch.save(document, handle))


#: the entries every training state holds
STATE_KEYS = (
    "epoch",
    "step",
    "model",
    "optimizer",
    "rng",
    "history",
    "early_stopping",
    "in_epoch",
    "settings",
    "extra",
)


def load_training_state(path: str | Path) -> dict[str, Any]:
    """The training state saved at ``path``; a file that is not one (truncated, another
    format, a newer version) raises ValueError naming the file and what is wrong."""
    path = Path(path)
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise
    except Exception as error:  # truncated or random bytes: zipfile, pickle, EOF errors
        reason = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise ValueError(f"{path}: not a readable training checkpoint ({reason})") from None
    if not isinstance(state, dict) or state.get("format") != STATE_FORMAT:
        raise ValueError(f"{path}: not a meshprop training checkpoint")
    if state.get("version") != STATE_VERSION:
        raise ValueError(
            f"{path}: training checkpoint version {state.get('version')!r}, this meshprop "
            f"reads version {STATE_VERSION}"
        )
    missing = [key for key in STATE_KEYS if key not in state]
    if missing:
        raise ValueError(f"{path}: an incomplete training checkpoint (no {', '.join(missing)})")
    return state
