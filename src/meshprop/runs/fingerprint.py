"""The fingerprint of a run's training data (size and SHA-256: :meth:`Dataset.fingerprint`),
stored in its checkpoint (``data_fingerprint``) and in ``config.json``'s provenance, and checked
when ``meshprop evaluate`` or ``predict`` reads that data again: a file edited since the run
would silently give other splits and other numbers, so it is refused (one line naming the file)
unless ``--allow-changed-data`` is given, which turns the refusal into a warning.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..data import Dataset

__all__ = ["ALLOW_FLAG", "FINGERPRINT_KEY", "check_data", "same_source"]

#: the key of a checkpoint's model.json (and of config.json's provenance) holding it
FINGERPRINT_KEY = "data_fingerprint"
ALLOW_FLAG = "--allow-changed-data"


def _stderr(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def same_source(recorded: dict[str, Any], now: dict[str, Any]) -> bool:
    """Whether the data fingerprinted ``now`` (:meth:`Dataset.fingerprint`) comes from the
    recorded source: the same file path, or the same built-in dataset name."""
    if "path" in recorded and "path" in now:
        return Path(str(recorded["path"])).resolve() == Path(str(now["path"])).resolve()
    return "arrays" in recorded and recorded.get("arrays") == now.get("arrays")


def check_data(
    recorded: Any,
    dataset: Dataset,
    allow_changed: bool = False,
    warn: Callable[[str], None] | None = None,
) -> bool:
    """Compare ``dataset`` with the fingerprint a run recorded for it: True when unchanged or
    when there is nothing to compare (runs written before fingerprints, other data).  A change
    is a one-line ValueError, or with ``allow_changed`` a warning through ``warn`` (default:
    printed on standard error)."""
    if not isinstance(recorded, dict):
        return True
    now = dataset.fingerprint()
    if not same_source(recorded, now):
        return True
    if now.get("size") == recorded.get("size") and now.get("sha256") == recorded.get("sha256"):
        return True
    what = recorded.get("path") or f"the built-in dataset {recorded.get('arrays')!r}"
    old, new = str(recorded.get("sha256"))[:12], str(now.get("sha256"))[:12]
    message = (
        f"{what} changed since the run trained on it (size {recorded.get('size')} -> "
        f"{now.get('size')} bytes, sha256 {old}... -> {new}...)"
    )
    if not allow_changed:
        raise ValueError(
            f"{message}: its splits and metrics would differ from the run's; give "
            f"{ALLOW_FLAG} to use it anyway"
        )
    (warn or _stderr)(f"warning: {message}; using it anyway ({ALLOW_FLAG})")
    return False
