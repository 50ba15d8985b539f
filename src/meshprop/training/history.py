"""What a training run records (:class:`History`) and when it stops (:class:`EarlyStopping`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

__all__ = ["EarlyStopping", "History"]


@dataclass
class EarlyStopping:
    """Stop when the validation loss has not improved by ``min_delta`` for ``patience`` epochs;
    with ``restore_best`` the weights of the best epoch are put back at the end."""

    patience: int = 20
    min_delta: float = 0.0
    restore_best: bool = True

    def __post_init__(self) -> None:
        if isinstance(self.patience, bool) or not isinstance(self.patience, int):
            raise TypeError(f"patience must be an integer, got {self.patience!r}")
        if self.patience < 1:
            raise ValueError(f"patience must be >= 1, got {self.patience}")
        if self.min_delta < 0:
            raise ValueError(f"min_delta must be >= 0, got {self.min_delta}")


@dataclass
class History:
    """Per-epoch records (``epoch``, ``batch_loss``, ``train_loss``, ``train_accuracy`` or
    ``train_mse``/``train_r2``, and the same for ``val_`` when a validation split is given), plus
    how training ended."""

    records: list[dict[str, float]] = field(default_factory=list)
    best_epoch: int | None = None
    stopped_early: bool = False
    wall_time_s: float = 0.0

    def __getitem__(self, key: str) -> list[float]:
        """The values of one metric over the epochs, e.g. ``history["val_loss"]``."""
        if not self.records or key not in self.records[0]:
            known = sorted(self.records[0]) if self.records else []
            raise KeyError(f"no metric {key!r} in the history; recorded: {known}")
        return [r[key] for r in self.records]

    def __len__(self) -> int:
        return len(self.records)

    @property
    def last(self) -> dict[str, float]:
        return self.records[-1] if self.records else {}

    def to_dict(self) -> dict[str, Any]:
        return {
            "epochs": self.records,
            "best_epoch": self.best_epoch,
            "stopped_early": self.stopped_early,
            "wall_time_s": self.wall_time_s,
        }
