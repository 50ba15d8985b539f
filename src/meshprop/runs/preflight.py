"""What a run will cost, checked before it starts: the memory of building and training its
network, and the disk space of its run folder.

``meshprop train`` calls :func:`check_run` after parsing its options and before loading data,
so ``--hidden 200000`` (a dense N×N mesh of 40 000 000 000 entries) is the memory guard's one
line, not an allocation failure minutes later, and a run folder that cannot fit on its disk is
refused before the first epoch.  The sizes are bounds computed from the configuration alone
(one input and one output neuron at least, or the columns of a CSV file's header), so nothing
is read but that header.
"""

from __future__ import annotations

import csv
import itertools
import shutil
from pathlib import Path

from ..checkpoint import stored_bytes
from ..devices import require_device
from ..layout import dense_layout_bytes
from ..memory import MEMORY_LIMIT_ENV, MemoryLimitError, format_bytes, get_memory_limit
from ..topology import BUILD_BYTES_PER_EDGE, SPARSE_RANDOM_FAN_IN
from .config import RunConfig

__all__ = [
    "PLOT_BYTES",
    "check_disk_space",
    "check_run",
    "network_bytes",
    "network_size",
    "output_bytes",
]

#: a generous bound on the PNG plots and JSON/CSV files of a run folder besides the checkpoint
PLOT_BYTES = 8 * 2**20
_ITEMSIZE = {"float32": 4, "float64": 8}
#: optimiser state tensors per weight (torch.optim): Adam keeps two moments
_STATES = {"adam": 2, "adamw": 2, "rmsprop": 2, "sgd": 1, "adagrad": 1}


def _csv_columns(path: str) -> int | None:
    """The number of columns of a CSV file's header (None if it cannot be read)."""
    try:
        with open(path, newline="", encoding="utf-8-sig") as handle:
            header = next(csv.reader(handle), None)
    except (OSError, UnicodeDecodeError, csv.Error):
        return None
    return None if not header else len(header)


def network_size(config: RunConfig) -> tuple[int, int]:
    """(neurons N, edges P) of the network ``config`` builds, at least: one input and one
    output neuron, or the feature columns of the CSV file's header."""
    inputs = 1
    if config.data is not None:
        columns = _csv_columns(config.data)
        inputs = max(1, (columns or 2) - 1)
    outputs = 1
    if config.arch == "mlp":
        sizes = [inputs, *(config.layers or []), outputs]
        N = sum(sizes) + 1
        P = sum((a + 1) * b for a, b in itertools.pairwise(sizes))
        return N, P
    N = inputs + 1 + config.hidden + outputs
    if config.degree is not None:  # Topology.sparse_random: its wired edges, then random ones
        H = config.hidden
        wired = H * min(SPARSE_RANDOM_FAN_IN, inputs) + (H + outputs) + H
        P = max(round(config.degree * N), wired)
        return N, P if config.density >= 1 else max(1, round(config.density * P))
    allowed = N * (N - inputs - 1)
    P = allowed if config.density >= 1 else max(1, round(config.density * allowed))
    return N, P


#: bytes per edge of the sparse layout's cached edge index (``engines/edge_ops.EdgeIndex``:
#: sources, targets, the target-major permutation and column indices, int64)
INDEX_BYTES_PER_EDGE = 32


def network_bytes(config: RunConfig, n_neurons: int, n_edges: int) -> int:
    """Memory to build and train the network: for the dense layout, the N×N tensors — the
    boolean masks (the topology's and the network's), the weights, their gradient and the
    optimiser state; for the sparse layout the same per edge (nothing N×N) and its edge index;
    and for both the edge list (int64 pairs, with its temporary copies)."""
    N, P = n_neurons, n_edges
    itemsize = _ITEMSIZE[config.dtype]
    states = _STATES.get(config.optimizer, 2)
    if config.layout == "sparse":
        per_edge = (2 + states) * itemsize + INDEX_BYTES_PER_EDGE + BUILD_BYTES_PER_EDGE
        return P * per_edge
    # MeshNet's own N×N tensors, two more boolean N×N (the topology's mask and a temporary),
    # the optimiser's state per weight, and the edge list while the topology is built
    return (
        dense_layout_bytes(N, itemsize) + N * N * (2 + states * itemsize) + BUILD_BYTES_PER_EDGE * P
    )


def output_bytes(config: RunConfig, n_neurons: int, n_edges: int) -> int:
    """Disk space of the run folder: the checkpoint (``meshprop.checkpoint``) and the rest."""
    itemsize = _ITEMSIZE[config.dtype]
    return stored_bytes(n_neurons, n_edges, itemsize, config.layout) + PLOT_BYTES


def _existing(path: Path) -> Path:
    path = path.absolute()
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def check_disk_space(path: str | Path, need: int, flag: str = "--out", what: str = "") -> None:
    """A one-line ValueError when the file system holding ``path`` (or its nearest existing
    ancestor) has less than ``need`` bytes free."""
    try:
        free = shutil.disk_usage(_existing(Path(path))).free
    except OSError:
        return  # no figure to compare with: the writes themselves will tell
    if need > free:
        raise ValueError(
            f"{flag} {path}: {what or 'the outputs'} need about {format_bytes(need)} but only "
            f"{format_bytes(free)} is free there"
        )


def check_run(config: RunConfig, out: str | Path | None = None) -> tuple[int, int]:
    """Refuse a run whose network cannot be built and trained under the memory limit
    (:class:`~meshprop.memory.MemoryLimitError`, naming the flags), or whose run folder ``out``
    would not fit on its disk (ValueError), or whose ``device`` does not exist (``--device
    cuda`` without CUDA: ValueError).  Returns (memory, disk) estimates in bytes."""
    require_device(config.device)
    N, P = network_size(config)
    need = network_bytes(config, N, P)
    limit = get_memory_limit()
    if limit is not None and need > limit:
        shape = (
            f"--layers {','.join(map(str, config.layers or []))}"
            if config.arch == "mlp"
            else f"--hidden {config.hidden}"
        )
        weights = "one weight per edge" if config.layout == "sparse" else "N×N weights"
        advice = "" if config.layout == "sparse" else "--layout sparse, "
        raise MemoryLimitError(
            f"{shape}: a network of {N} neurons ({P} edges, {config.dtype} {weights}) needs "
            f"about {format_bytes(need)} to build and train (weights, gradient, "
            f"{config.optimizer} state, masks) but the memory limit is {format_bytes(limit)}; "
            f"use fewer neurons, {advice}or raise the limit (${MEMORY_LIMIT_ENV})",
            "network",
            need,
            limit,
            None,
        )
    disk = output_bytes(config, N, P)
    if out is not None:
        check_disk_space(out, disk, "--out", f"the run folder ({N} neurons)")
    return need, disk
