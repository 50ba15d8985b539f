"""Logs people read: the provenance of a run (versions, git revision, seed) saved in its
``config.json`` and printed at its start, the per-epoch metrics as CSV (always) and as
TensorBoard scalars (``--tensorboard``, the optional ``meshprop[tensorboard]`` extra).
"""

from __future__ import annotations

import csv
import io
import platform
import subprocess
import time
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

import torch

from ..atomic import atomic_write_text
from ..reporting import Reporter

__all__ = [
    "METRICS_CSV",
    "PROVENANCE_KEY",
    "TENSORBOARD_DIR",
    "EpochLog",
    "check_tensorboard",
    "git_revision",
    "meshprop_version",
    "provenance",
]

METRICS_CSV = "metrics.csv"
TENSORBOARD_DIR = "tensorboard"
#: the key of ``config.json`` holding the provenance (``--config`` files ignore it)
PROVENANCE_KEY = "provenance"


def meshprop_version() -> str:
    """The installed package's version (its metadata), ``"unknown"`` when not installed."""
    try:
        return version("meshprop")
    except PackageNotFoundError:
        return "unknown"


def git_revision(path: str | Path | None = None) -> str | None:
    """The commit of the git checkout holding ``path`` (default: meshprop's own source), with
    ``+dirty`` when it has uncommitted changes; None outside a checkout or without git."""
    where = Path(path) if path is not None else Path(__file__).resolve().parent
    try:
        head = subprocess.run(
            ["git", "-C", str(where), "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            timeout=5,
            check=True,
        ).stdout.strip()
        status = subprocess.run(
            ["git", "-C", str(where), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            timeout=5,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return f"{head}+dirty" if status else head or None


def provenance(seed: int | None) -> dict[str, Any]:
    """What makes a run reproducible besides its configuration."""
    return {
        "seed": seed,
        "meshprop": meshprop_version(),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "git_revision": git_revision(),
        "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }


def describe_provenance(info: dict[str, Any]) -> str:
    """One line for the start of a run."""
    git = info["git_revision"] or "not a git checkout"
    return (
        f"meshprop {info['meshprop']}, torch {info['torch']}, python {info['python']}, "
        f"git {git}, seed {info['seed']}"
    )


def check_tensorboard() -> None:
    """Raise a one-line error when TensorBoard logging cannot work (the package is missing)."""
    try:
        import tensorboard  # noqa: F401
    except ImportError:
        raise ValueError(
            "--tensorboard needs the tensorboard package, which is not installed: "
            "pip install 'meshprop[tensorboard]'"
        ) from None


class EpochLog:
    """A ``fit`` callback writing every epoch's record to ``DIR/metrics.csv`` as it ends (one
    row per epoch, the header from the first record; the file is rewritten atomically, so it
    is never half a row) and, with ``tensorboard``, to TensorBoard scalars under
    ``DIR/tensorboard``.  Silent when ``reporter`` is disabled (the non-main processes of a
    data-parallel run).  :meth:`restore` starts from the records of a resumed run (the CSV
    rewritten with them; TensorBoard told to hide the events of the later epochs a killed run
    had logged, which are logged again).  Call :meth:`close` at the end."""

    def __init__(
        self, out: str | Path, tensorboard: bool = False, reporter: Reporter | None = None
    ) -> None:
        self.out = Path(out)
        self.enabled = reporter is None or reporter.enabled
        self.tensorboard = tensorboard
        if tensorboard:
            check_tensorboard()
        self.records: list[dict[str, Any]] = []
        self._writer: Any = None
        self._purge_step: int | None = None  # a resumed run: TensorBoard drops later steps
        if self.enabled:
            self.out.mkdir(parents=True, exist_ok=True)
            (self.out / METRICS_CSV).unlink(missing_ok=True)  # a fresh run starts a fresh log

    def restore(self, history: Any) -> None:
        """Continue after the epochs of ``history`` (a resumed run): the CSV is rewritten
        with exactly their rows."""
        self.records = [dict(record) for record in history.records]
        if self.enabled and self.records:
            self._write()
            # epochs logged after the saved state, before the run was killed, are logged again:
            # TensorBoard hides the old events from this step on (SummaryWriter's purge_step)
            self._purge_step = int(self.records[-1].get("epoch", len(self.records))) + 1

    def _write(self) -> None:
        fields = list(self.records[0])
        text = io.StringIO(newline="")
        writer = csv.DictWriter(text, fields, extrasaction="ignore", lineterminator="\r\n")
        writer.writeheader()
        writer.writerows(self.records)
        atomic_write_text(self.out / METRICS_CSV, text.getvalue())

    def __call__(self, epoch: int, net: Any, record: dict[str, float]) -> None:
        if not self.enabled:
            return
        self.records.append(dict(record))
        self._write()
        if self.tensorboard:
            if self._writer is None:
                from torch.utils.tensorboard import SummaryWriter

                self._writer = SummaryWriter(
                    log_dir=str(self.out / TENSORBOARD_DIR), purge_step=self._purge_step
                )
            for key, value in record.items():
                if key != "epoch":
                    self._writer.add_scalar(key, value, epoch)
            self._writer.flush()

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None
