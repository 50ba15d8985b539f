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
- ``curves.png``, ``topology.png`` and, for 2-D classification, ``decision_boundary.png``.
"""

from __future__ import annotations

import platform
import time
from pathlib import Path
from typing import Any

import torch

from ..checkpoint import load_checkpoint, save_checkpoint
from ..data import CLASSIFICATION
from ..mesh import MeshNet
from ..reporting import Reporter
from .fingerprint import FINGERPRINT_KEY
from .logs import PROVENANCE_KEY, provenance
from .run import RunResult

__all__ = ["CONFIG_FILE", "METRICS_FILE", "checkpoint_extra", "read_checkpoint", "write_run"]

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
) -> list[Path]:
    """Write the run folder ``out`` (see the module docstring); returns the paths written
    (``checkpoint/model.json`` standing for the checkpoint).  ``run_provenance``: what
    :func:`~meshprop.runs.logs.provenance` gave at the run's start (default: taken now)."""
    from .. import plots  # matplotlib only when a run is written

    out = Path(out)
    info = run_provenance if run_provenance is not None else provenance(result.config.seed)
    info = {**info, FINGERPRINT_KEY: result.split.dataset.fingerprint()}
    ds, split = result.split.dataset, result.split
    written: list[Path | None] = [
        reporter.write_json(out / CONFIG_FILE, {**result.config.to_dict(), PROVENANCE_KEY: info}),
        reporter.write_json(out / METRICS_FILE, metrics_document(result)),
        reporter.write_with(
            out / CHECKPOINT_DIR / "model.json",
            lambda p: save_checkpoint(p.parent, result.net, checkpoint_extra(result)),
        ),
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
    return [p for p in written if p is not None]


def read_checkpoint(path: str | Path) -> tuple[MeshNet, dict[str, Any]]:
    """The model of a run's checkpoint and its JSON document, which must hold what
    ``meshprop train`` stores (:data:`EXTRA_KEYS`)."""
    net, document = load_checkpoint(path)
    missing = [key for key in EXTRA_KEYS if key not in document]
    if missing:
        raise ValueError(
            f"{path}: a checkpoint without {', '.join(missing)}; evaluate and predict read "
            "checkpoints written by `meshprop train`"
        )
    return net, document
