"""A run folder that is consistent at every instant, and its manifest ``run.json``.

Every command that produces results (``train``, ``online``, ``timeseries``, ``reproduce ...``,
``bench --out``) writes its ``--out`` folder through :class:`RunFolder`: a folder holding
another run is refused unless ``--resume`` or ``--overwrite`` is given, the run is marked
unfinished in ``run.json`` before its first result, every file is written atomically, the
state ``--resume`` continues from is saved as the run goes, and ``run.json`` lists every file
with its size and SHA-256 once the run is complete.

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

import fnmatch
import json
import shutil
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..atomic import (
    TEMP_MARK,
    atomic_write_bytes,
    atomic_write_text,
    atomic_write_with,
    file_sha256,
    remove_stale_temporaries,
)

__all__ = [
    "MANIFEST",
    "RUN_FILES",
    "STATE_FILE",
    "UNITS_FILE",
    "RunFolder",
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
#: the state of a run made of units of work (a sweep): the results of the units done
UNITS_FILE = "units.json"
#: what the commands write into a run folder, as names or shell patterns (``--overwrite``
#: removes these only, in this order: an ``--overwrite`` killed half-way never leaves a
#: saved state without the manifest and configuration of the run it belongs to)
RUN_FILES = (
    MANIFEST,
    STATE_FILE,
    "online-state.pt",  # meshprop online's state
    UNITS_FILE,
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
    "prediction.png",  # meshprop timeseries
    "diagram.png",
    "results.json",  # reproduce fashion-mnist, mnist1d, online
    "table.md",  # reproduce online
    "study.png",
    "details.json",
    "results.md",
    "accuracies.png",
    "structure.json",  # reproduce structure
    "structure.md",
    "structure-*.png",
    "iris.json",  # reproduce iris
    "iris.md",
    "summary.json",  # reproduce toys
    "summary.md",
    "toys.png",
    "*.gif",
    "moons.png",
    "circles.png",
    "blobs.png",
    "blobs2.png",
    "spirals.png",
    "bench.json",  # meshprop bench
    "scale.png",
)


def is_run_file(name: str) -> bool:
    """Whether ``name`` is one of :data:`RUN_FILES` (a name or a pattern)."""
    return any(fnmatch.fnmatchcase(name, pattern) for pattern in RUN_FILES)


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
    foreign = [name for name in names if not is_run_file(name)]
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
    for pattern in RUN_FILES:
        for path in sorted(out.glob(pattern)) if out.is_dir() else []:
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
    out: str | Path,
    run_id: str,
    files: list[Path] | None = None,
    complete: bool = False,
    command: str = "train",
) -> Path:
    """Write ``out/run.json`` atomically: the run's id, the command that writes it, whether it
    is complete, and the size and SHA-256 of each of ``files`` (paths inside ``out``)."""
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
        "command": command,
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
            f"`meshprop {manifest.get('command', 'train')} --out {out} --resume`"
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


class RunFolder:
    """The run folder ``--out`` of one command, from the check made before any work to the
    complete manifest.

    1. :meth:`check` (nothing written): may the command use ``out`` (a new or empty folder, or
       ``--resume``/``--overwrite`` of a run of the same command)?
    2. :meth:`start`: ``--overwrite`` removes the previous run; ``run.json`` is written marked
       unfinished (keeping the run's id on resume), then ``config.json``;
    3. the command writes its files with :meth:`write_text`, :meth:`write_json`,
       :meth:`write_with`, :meth:`write_bytes` (atomic, each recorded for the manifest) and
       saves the state ``--resume`` continues from (:meth:`save_units` for a run made of
       independent units, or its own file such as ``training-state.pt``, given to
       :meth:`finish`);
    4. :meth:`finish`: ``run.json`` marked complete, listing every file with its size and
       SHA-256.

    :meth:`discard_unstarted` removes what :meth:`start` wrote when the run fails before it
    saved any state, so the same command can be repeated once the cause is fixed.
    """

    def __init__(self, out: str | Path, command: str, mode: str, existed: bool) -> None:
        self.out = Path(out)
        self.command = command
        self.mode = mode
        self.existed = existed
        self.run_id: str | None = None
        self.files: list[Path] = []
        self._units: dict[str, Any] | None = None

    @classmethod
    def check(
        cls, out: str | Path, command: str, *, resume: bool = False, overwrite: bool = False
    ) -> RunFolder:
        """The folder ``out`` for ``meshprop COMMAND``, checked before any work (ValueError,
        one line): see :func:`check_run_folder`; ``--resume`` of another command's run is
        refused too."""
        mode = check_run_folder(out, resume, overwrite)
        out = Path(out)
        if mode == "resume" and (out / MANIFEST).is_file():
            try:
                other = read_manifest(out).get("command", "train")
            except (OSError, ValueError):
                other = command
            if other != command:
                raise ValueError(
                    f"--out {out} holds a run of `meshprop {other}`, not of `meshprop "
                    f"{command}`: resume it with `meshprop {other} --out {out} --resume`"
                )
        return cls(out, command, mode, out.exists())

    @property
    def resuming(self) -> bool:
        return self.mode == "resume"

    def saved_config(self) -> dict[str, Any] | None:
        """The ``config.json`` of the run ``--resume`` continues (None when there is none)."""
        path = self.out / "config.json"
        if not self.resuming or not path.is_file():
            return None
        try:
            document = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as error:
            raise ValueError(f"--resume: {path} is not readable ({error})") from None
        if not isinstance(document, dict):
            raise ValueError(f"--resume: {path} is not a run configuration")
        return document

    def start(self, config: dict[str, Any]) -> str:
        """Mark the run in progress and write its configuration; returns the run's id."""
        run_id = None
        if self.resuming and (self.out / MANIFEST).is_file():
            try:
                run_id = read_manifest(self.out)["run_id"]
            except (OSError, ValueError):
                run_id = None
        if self.mode == "overwrite":
            clear_run_folder(self.out)
        self.out.mkdir(parents=True, exist_ok=True)
        remove_stale_temporaries(self.out)
        self.run_id = run_id or new_run_id()
        write_manifest(self.out, self.run_id, complete=False, command=self.command)
        self.write_json("config.json", config)
        return self.run_id

    def path(self, name: str) -> Path:
        return self.out / name

    def _record(self, path: Path) -> Path:
        if path not in self.files:
            self.files.append(path)
        return path

    def write_text(self, name: str, text: str) -> Path:
        return self._record(atomic_write_text(self.out / name, text))

    def write_bytes(self, name: str, data: bytes) -> Path:
        return self._record(atomic_write_bytes(self.out / name, data))

    def write_json(self, name: str, document: Any) -> Path:
        return self.write_text(name, json.dumps(document, indent=2, default=float) + "\n")

    def write_with(self, name: str, writer: Callable[[Path], Any]) -> Path:
        """``writer(temporary_path)`` (a figure's savefig), then the atomic replace."""
        return self._record(atomic_write_with(self.out / name, writer))

    def load_units(self) -> dict[str, Any]:
        """The results of the units a resumed run had finished (empty for a fresh run)."""
        path = self.out / UNITS_FILE
        if not self.resuming or not path.is_file():
            return {}
        try:
            document = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as error:
            raise ValueError(f"--resume: {path} is not readable ({error})") from None
        units = document.get("units") if isinstance(document, dict) else None
        if not isinstance(units, dict):
            raise ValueError(f"--resume: {path} holds no units")
        return units

    def save_units(self, units: dict[str, Any]) -> None:
        """Save the results of the units done (atomically), the state ``--resume`` reads."""
        self.write_json(UNITS_FILE, {"units": units})

    def unit(self, key: str, compute: Callable[[], dict[str, Any]]) -> dict[str, Any]:
        """The record of the unit of work ``key``: the one a resumed run saved, or
        ``compute()``'s, saved at once (with every unit done) in ``units.json``."""
        if self._units is None:
            self._units = self.load_units()
        if key not in self._units:
            self._units[key] = compute()
            self.save_units(self._units)
        return self._units[key]

    def finish(self, *extra: Path) -> Path:
        """Write ``run.json`` marked complete, listing the files written through this object
        and ``extra`` (with their sizes and SHA-256); returns its path."""
        assert self.run_id is not None, "start() the run first"
        listed = [p for p in [*self.files, *extra] if p.is_file()]
        return write_manifest(self.out, self.run_id, listed, complete=True, command=self.command)

    def discard_unstarted(self, state: str | None = None) -> None:
        """After an error before the run saved any state (``state``, a file name, absent):
        remove what :meth:`start` wrote; a folder the run created goes too when empty."""
        if state is not None and (self.out / state).exists():
            return
        if self.run_id is None:
            return
        clear_run_folder(self.out)
        if not self.existed and self.out.is_dir() and not any(self.out.iterdir()):
            self.out.rmdir()
