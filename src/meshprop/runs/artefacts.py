"""The files of a run folder, written by ``meshprop train`` and read by ``evaluate`` and
``predict``:

- ``config.json``: the resolved :class:`~meshprop.runs.config.RunConfig` (a valid
  ``--config`` file: re-running it repeats the run) and its ``provenance`` (seed, meshprop,
  torch and Python versions, git revision: :mod:`meshprop.runs.logs`);
- ``metrics.csv``: one row per epoch, written while training
  (:class:`~meshprop.runs.logs.EpochLog`);
- ``metrics.json``: the configuration, dataset sizes, model size, the per-epoch history, the
  test metrics, platform and torch version;
- ``checkpoint/``: the weights and model (``meshprop.checkpoint``) plus what evaluation needs:
  the configuration, task, feature and class names and the training split's standardisation;
- ``metrics.json`` also holds, for structural learning, ``structure``: one record per update
  (step, edges, density, added, removed), drawn in ``structure.png``;
- ``curves.png``, ``topology.png`` and, for 2-D classification, ``decision_boundary.png``;
- ``training-state.pt`` (what ``--resume`` continues from) and ``run.json``, the manifest
  written last (:mod:`meshprop.runs.folder`).

Every file is written atomically (:mod:`meshprop.atomic`); the two files of ``checkpoint/`` are
each replaced atomically, the weights first.
"""

from __future__ import annotations

import os
import platform
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

from ..atomic import TEMP_MARK, fsync_directory
from ..checkpoint import load_checkpoint, save_checkpoint
from ..data import CLASSIFICATION
from ..mesh import MeshNet
from ..reporting import Reporter
from .fingerprint import FINGERPRINT_KEY
from .folder import STATE_FILE, verify_run_folder, write_manifest
from .logs import METRICS_CSV, PROVENANCE_KEY, provenance
from .run import RunResult

__all__ = [
    "CONFIG_FILE",
    "METRICS_FILE",
    "checkpoint_extra",
    "read_checkpoint",
    "save_checkpoint_atomically",
    "write_run",
]

CONFIG_FILE = "config.json"
METRICS_FILE = "metrics.json"
CHECKPOINT_DIR = "checkpoint"
#: what ``meshprop train`` stores in a checkpoint besides the model (see :func:`checkpoint_extra`)
EXTRA_KEYS = ("config", "task", "feature_names", "class_names", "standardizer")


def checkpoint_extra(result: RunResult) -> dict[str, Any]:
    """What ``evaluate`` and ``predict`` need besides the model."""
    ds = result.split.dataset
    return {
        "config": result.config.to_dict(),
        "task": ds.task,
        "feature_names": ds.feature_names,
        "class_names": ds.class_names,
        "standardizer": result.split.standardizer.to_dict(),
        FINGERPRINT_KEY: ds.fingerprint(),  # evaluate/predict refuse changed data
    }


def save_checkpoint_atomically(
    directory: str | Path, net: MeshNet, extra: dict[str, Any] | None = None
) -> Path:
    """``meshprop.checkpoint.save_checkpoint`` into a temporary folder beside ``directory``,
    then each file moved into ``directory`` by an atomic rename, ``model.json`` last; returns
    ``directory/model.json``."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    prefix = f".{directory.name}{TEMP_MARK}"
    with tempfile.TemporaryDirectory(prefix=prefix, dir=directory.parent) as temporary:
        save_checkpoint(temporary, net, extra)
        files = sorted(Path(temporary).iterdir(), key=lambda p: (p.name == "model.json", p.name))
        for file in files:
            with open(file, "rb+") as handle:
                os.fsync(handle.fileno())
            os.replace(file, directory / file.name)
    fsync_directory(directory)
    return directory / "model.json"


def metrics_document(result: RunResult) -> dict[str, Any]:
    """The content of ``metrics.json``."""
    ds, split = result.split.dataset, result.split
    return {
        "config": result.config.to_dict(),
        "dataset": {
            "name": ds.name,
            "task": ds.task,
            "samples": len(ds.y),
            "features": ds.n_features,
            "classes": ds.n_classes,
            "train": len(split.indices["train"]),
            "val": len(split.indices["val"]),
            "test": len(split.indices["test"]),
        },
        "model": {
            "neurons": result.net.topology.n_neurons,
            "edges": result.net.topology.n_edges,
            "arch": result.config.arch,
            "parameters": result.net.n_parameters,
        },
        "history": result.history.to_dict(),
        **({"structure": result.structure} if result.structure else {}),
        **result.test,
        "platform": platform.platform(),
        "torch": torch.__version__,
        "written": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }


def write_run(
    result: RunResult,
    out: str | Path,
    reporter: Reporter,
    run_provenance: dict[str, Any] | None = None,
    run_id: str | None = None,
) -> list[Path]:
    """Write the run folder ``out`` (see the module docstring); returns the paths of the run's
    files (``checkpoint/model.json`` standing for the checkpoint; with ``run_id`` also
    ``metrics.csv``, ``training-state.pt`` and ``run.json``).  ``run_provenance``: what
    :func:`~meshprop.runs.logs.provenance` gave at the run's start (default: taken now).
    With ``run_id`` the manifest ``run.json`` is written last, listing every file of the run
    (those written here, ``metrics.csv`` and ``training-state.pt``) with its SHA-256."""
    from .. import plots  # matplotlib only when a run is written

    out = Path(out)
    info = run_provenance if run_provenance is not None else provenance(result.config.seed)
    extra = checkpoint_extra(result)  # its data fingerprint goes into the provenance too
    info = {**info, FINGERPRINT_KEY: extra[FINGERPRINT_KEY]}
    ds, split = result.split.dataset, result.split
    written: list[Path | None] = [
        reporter.write_json(out / CONFIG_FILE, {**result.config.to_dict(), PROVENANCE_KEY: info}),
        reporter.write_json(out / METRICS_FILE, metrics_document(result)),
        None
        if not reporter.enabled
        else save_checkpoint_atomically(out / CHECKPOINT_DIR, result.net, extra),
    ]
    figures = [
        ("curves.png", plots.plot_history(result.history, f"{ds.name}: {result.config.grad}")),
        ("topology.png", plots.plot_topology(result.net, f"{ds.name}: trained weights")),
    ]
    if result.structure:
        title = f"{ds.name}: {result.config.structure} at density {result.config.density:g}"
        figures.append(("structure.png", plots.plot_structure(result.structure, title)))
    if ds.n_features == 2 and ds.task == CLASSIFICATION:
        X = torch.cat([split.train[0], split.test[0]]).numpy()
        y = torch.cat([split.train[1], split.test[1]]).numpy()
        accuracy = result.test["test_accuracy"]
        title = f"{ds.name}: test accuracy {accuracy:.3f}"
        figures.append(
            ("decision_boundary.png", plots.plot_decision_boundary(result.net, X, y, title))
        )
    for name, fig in figures:
        written.append(reporter.write_with(out / name, plots.saver(fig, dpi=80)))
        plots.plt.close(fig)
    paths = [p for p in written if p is not None]
    if run_id is not None and reporter.enabled:
        listed = [p for p in paths if p.name != "model.json"]
        listed += [p for p in (out / CHECKPOINT_DIR).iterdir() if TEMP_MARK not in p.name]
        logs = [out / name for name in (METRICS_CSV, STATE_FILE) if (out / name).is_file()]
        listed += logs
        paths += [*logs, write_manifest(out, run_id, listed, complete=True)]
    return paths


def read_checkpoint(path: str | Path) -> tuple[MeshNet, dict[str, Any]]:
    """The model of a run's checkpoint and its JSON document, which must hold what
    ``meshprop train`` stores (:data:`EXTRA_KEYS`).  In a run folder with a ``run.json``
    manifest, the run must have finished and every file must be the one it wrote
    (:func:`meshprop.runs.folder.verify_run_folder`): a folder mixing runs is refused."""
    net, document = load_checkpoint(path)  # a damaged file: the loader's precise error first
    verify_run_folder(path)
    missing = [key for key in EXTRA_KEYS if key not in document]
    if missing:
        raise ValueError(
            f"{path}: a checkpoint without {', '.join(missing)}; evaluate and predict read "
            "checkpoints written by `meshprop train`"
        )
    return net, document
