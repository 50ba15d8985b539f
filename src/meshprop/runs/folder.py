"""A run folder that is consistent at every instant, and its manifest ``run.json``.

``meshprop train --out DIR`` writes every file of DIR atomically (:mod:`meshprop.atomic`), in
this order:

1. ``run.json`` marked ``"complete": false`` (with the run's id), then ``config.json``;
2. every epoch: ``metrics.csv`` and, every ``--checkpoint-every`` epochs, ``training-state.pt``
   (the whole training state, :mod:`meshprop.training.resume`);
3. at the end: ``metrics.json``, ``checkpoint/``, the plots, and last ``run.json`` again, now
   ``"complete": true`` and listing every file of the run with its size and SHA-256.

So a folder whose ``run.json`` says complete holds exactly the files it lists, from one run;
any other state is a run in progress or interrupted (``--resume`` continues it).
:func:`verify_run_folder` checks this for ``evaluate`` and ``predict``: a file that changed or
went missing after its run finished, or a run that never finished, is a one-line error.
"""

from __future__ import annotations

import json
import shutil
import uuid
from pathlib import Path
from typing import Any

from ..atomic import TEMP_MARK, atomic_write_text, file_sha256, remove_stale_temporaries

__all__ = [
    "MANIFEST",
    "RUN_FILES",
    "STATE_FILE",
    "check_run_folder",
    "clear_run_folder",
    "new_run_id",
    "read_manifest",
    "run_folder_of",
    "verify_run_folder",
    "write_manifest",
]

MANIFEST = "run.json"
MANIFEST_FORMAT = "meshprop-run"
MANIFEST_VERSION = 1
#: the training state ``--resume`` continues from
STATE_FILE = "training-state.pt"
#: what ``meshprop train`` and ``meshprop online`` write into a run folder (``--overwrite``
#: removes these only, in this order: an ``--overwrite`` killed half-way never leaves a
#: training state without the manifest and configuration of the run it belongs to)
RUN_FILES = (
    MANIFEST,
    STATE_FILE,
    "online-state.pt",  # meshprop online's state
    "config.json",
    "metrics.json",
    "metrics.csv",
    "checkpoint",
    "tensorboard",
    "curves.png",
    "topology.png",
    "structure.png",
    "decision_boundary.png",
    "curve.json",  # meshprop online's learning curve
    "learning_curve.png",
)


def new_run_id() -> str:
    return uuid.uuid4().hex


def _entries(directory: Path) -> list[str]:
    """The names in ``directory``, leaving out temporaries of interrupted atomic writes."""
    return sorted(p.name for p in directory.iterdir() if TEMP_MARK not in p.name)


def check_run_folder(out: str | Path, resume: bool = False, overwrite: bool = False) -> str:
    """What ``meshprop train --out out`` may do, decided before any work: ``"new"`` (a missing
    or empty folder), ``"resume"`` (continue the run in ``out``; a fresh start when it holds no
    run yet) or ``"overwrite"`` (replace the run in ``out``).  Raises ValueError (one line) for
    a path that is not a folder, a non-empty folder without ``--resume``/``--overwrite``, and
    ``--resume``/``--overwrite`` on a folder holding files that are not a run's."""
    if resume and overwrite:
        raise ValueError("give --resume or --overwrite, not both")
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise ValueError(f"--out {out}: exists and is not a directory")
    names = _entries(out) if out.is_dir() else []
    if not names:
        return "resume" if resume else "new"
    foreign = [name for name in names if name not in RUN_FILES]
    is_run = "config.json" in names or MANIFEST in names
    if foreign or not is_run:
        shown = ", ".join((foreign or names)[:3]) + (" ..." if len(foreign or names) > 3 else "")
        raise ValueError(
            f"--out {out}: the folder holds files that are not a meshprop run ({shown}); "
            "give an empty or new folder"
        )
    if resume:
        return "resume"
    if overwrite:
        return "overwrite"
    state = "a finished run" if _complete(out) else "an unfinished run"
    raise ValueError(
        f"--out {out} already holds {state}: give --resume to continue it, --overwrite to "
        "replace it, or another --out"
    )


def _complete(out: Path) -> bool:
    try:
        return bool(read_manifest(out).get("complete"))
    except (OSError, ValueError):
        return False


def clear_run_folder(out: str | Path) -> None:
    """Remove the files of a run (:data:`RUN_FILES`, manifest first) and stale temporaries."""
    out = Path(out)
    for name in RUN_FILES:
        path = out / name
        if path.is_dir():
            shutil.rmtree(path)
        else:
            path.unlink(missing_ok=True)
    remove_stale_temporaries(out)


def read_manifest(out: str | Path) -> dict[str, Any]:
    """The manifest of the run folder ``out`` (ValueError when it is not readable)."""
    path = Path(out) / MANIFEST
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as error:
        raise ValueError(f"{path}: not valid JSON ({error})") from None
    if not isinstance(document, dict) or document.get("format") != MANIFEST_FORMAT:
        raise ValueError(f"{path}: not a meshprop run manifest")
    if not isinstance(document.get("files"), dict) or not isinstance(document.get("run_id"), str):
        raise ValueError(f"{path}: a run manifest without its run_id or files")
    return document


def write_manifest(
    out: str | Path, run_id: str, files: list[Path] | None = None, complete: bool = False
) -> Path:
    """Write ``out/run.json`` atomically: the run's id, whether it is complete, and the size
    and SHA-256 of each of ``files`` (paths inside ``out``)."""
    out = Path(out)
    listed = {}
    for path in sorted(set(files or [])):
        listed[path.relative_to(out).as_posix()] = {
            "bytes": path.stat().st_size,
            "sha256": file_sha256(path),
        }
    document = {
        "format": MANIFEST_FORMAT,
        "version": MANIFEST_VERSION,
        "run_id": run_id,
        "complete": complete,
        "files": listed,
    }
    return atomic_write_text(out / MANIFEST, json.dumps(document, indent=2) + "\n")


def run_folder_of(path: str | Path) -> Path:
    """The run folder of ``path``: the folder itself, or for its ``checkpoint`` folder or a
    file in it (``checkpoint/model.json``) the folder above."""
    path = Path(path)
    if path.is_file():
        path = path.parent
    if not (path / MANIFEST).exists() and (path.parent / MANIFEST).exists():
        return path.parent
    return path


def verify_run_folder(path: str | Path) -> dict[str, Any] | None:
    """Check that the run folder of ``path`` (a run folder, its ``checkpoint/`` or a file in
    it) holds one finished run: its manifest says complete and every listed file is there
    with the listed size and SHA-256.  Returns the manifest; None for a folder without
    ``run.json`` (written by an older meshprop, or a checkpoint saved elsewhere).  Raises
    ValueError with one line naming the first file at fault."""
    out = run_folder_of(path)
    if not (out / MANIFEST).is_file():
        return None
    manifest = read_manifest(out)
    if not manifest.get("complete"):
        raise ValueError(
            f"{out}: the run did not finish (interrupted or still running): continue it with "
            f"`meshprop train --out {out} --resume`"
        )
    for name, entry in manifest["files"].items():
        file = out / name
        if not file.is_file():
            raise ValueError(f"{file}: missing; the run folder {out} is incomplete")
        if file.stat().st_size != entry.get("bytes") or file_sha256(file) != entry.get("sha256"):
            raise ValueError(
                f"{file} is not the file run {manifest['run_id'][:8]} wrote (changed or "
                "replaced since): the run folder mixes runs"
            )
    return manifest
