"""Checkpoints: the weights in safetensors, the topology and configuration in JSON.

A checkpoint is a directory (or the path of its ``model.json``) holding

- ``model.safetensors``: the weights as the network stores them (its
  :class:`~meshprop.layout.Layout`): ``A`` (N×N, zero outside the mask) for the dense layout,
  ``weight`` ((P,), one per edge in ``topo.edges`` order) for the sparse one — and the
  topology's edges, compactly: ``edges`` ((P, 2) int32 source/target pairs, row-major) or,
  when smaller, ``mask`` (the N×N boolean mask);
- ``model.json``: ``{"format": "meshprop-checkpoint", "version": 3, "topology": {n_inputs,
  n_hidden, n_outputs, bias, layer_sizes, "edges": "edges" | "mask"}, "model": {ticks,
  activation, output_activation, grad, dtype, layout}, ...extra}``, where ``extra`` is whatever
  the caller stores (the training configuration, the standardisation statistics).

Version 2 (no ``layout``: always the dense ``A``) and version 1 (also the edges as a JSON list of
pairs, which took minutes and gigabytes for a mesh of thousands of neurons) are still read.

:func:`load_checkpoint` rebuilds the identical model: same topology, same activations, same
weights bit for bit.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from .layout import layout_class
from .mesh import MeshNet
from .topology import Topology

__all__ = ["load_checkpoint", "save_checkpoint"]

FORMAT = "meshprop-checkpoint"
VERSION = 3
#: versions :func:`load_checkpoint` reads (1: the edges as a JSON list in model.json; 1 and 2:
#: no layout, the dense ``A``)
READABLE = (1, 2, 3)
WEIGHTS = "model.safetensors"
CONFIG = "model.json"
_DTYPES = {"float32": torch.float32, "float64": torch.float64}


def model_config(net: MeshNet) -> dict[str, Any]:
    """What, besides topology and weights, rebuilds ``net``."""
    dtype = str(net.parameter.dtype).removeprefix("torch.")
    return {
        "ticks": net.ticks,
        "activation": net.activation if isinstance(net.activation, str) else list(net.activation),
        "output_activation": net.output_activation,
        "grad": net.grad,
        "dtype": dtype,
        "layout": net.layout,
    }


def save_checkpoint(
    directory: str | Path,
    net: MeshNet,
    extra: dict[str, Any] | None = None,
    overwrite: bool = False,
) -> Path:
    """Write ``net`` (and JSON-serialisable ``extra``) into ``directory``; returns it.

    ``directory`` is created (with its parents) or must be an empty folder; a folder holding
    files is refused (``FileExistsError`` saying so) unless ``overwrite=True``, which replaces a
    checkpoint's two files.  A save that fails leaves no folder of its own making behind.
    """
    if not isinstance(net, MeshNet):
        raise TypeError(f"net must be a meshprop.MeshNet, got {type(net).__name__}")
    directory = Path(directory)
    if directory.exists() and not directory.is_dir():
        raise FileExistsError(
            f"cannot save a checkpoint to {str(directory)!r}: it is a file, and a checkpoint is "
            f"a folder (holding {CONFIG} and {WEIGHTS}); choose another path"
        )
    if directory.is_dir() and any(directory.iterdir()) and not overwrite:
        raise FileExistsError(
            f"cannot save a checkpoint to {str(directory)!r}: the folder is not empty; choose "
            "a new or empty folder, or pass overwrite=True to replace a checkpoint there"
        )
    tensors, topology = topology_tensors(net.topology)
    document = {
        "format": FORMAT,
        "version": VERSION,
        "topology": topology,
        "model": model_config(net),
    }
    for key, value in (extra or {}).items():
        if key in document:
            raise ValueError(f"extra key {key!r} clashes with the checkpoint's own fields")
        document[key] = value
    try:
        text = json.dumps(document, indent=2) + "\n"
    except (TypeError, ValueError) as error:
        raise ValueError(f"extra is not JSON-serialisable ({error})") from None
    tensors[net.storage.parameter] = net.parameter.detach().to("cpu").contiguous()
    created = directory  # the outermost folder this call creates, if any
    while not created.parent.exists():
        created = created.parent
    created_any = not directory.exists()
    directory.mkdir(parents=True, exist_ok=True)
    try:
        save_file(tensors, str(directory / WEIGHTS))
        (directory / CONFIG).write_text(text, encoding="utf-8")
    except BaseException:
        if created_any:  # no half-written folder of ours left behind
            shutil.rmtree(created, ignore_errors=True)
        raise
    return directory


def topology_tensors(topology: Topology) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """The topology as (tensors for the safetensors file, its JSON description): the edges as
    (P, 2) int32 pairs, or the N×N boolean mask when that is smaller (dense meshes)."""
    sizes = topology.layer_sizes
    description: dict[str, Any] = {
        "n_inputs": topology.n_inputs,
        "n_hidden": topology.n_hidden,
        "n_outputs": topology.n_outputs,
        "bias": topology.bias,
        "layer_sizes": None if sizes is None else list(sizes),
    }
    N, P = topology.n_neurons, topology.n_edges
    if N * N < 8 * P:  # one byte per entry against two int32 per edge
        description["edges"] = "mask"
        return {"mask": topology.dense_mask().clone()}, description
    description["edges"] = "edges"
    return {"edges": topology.edges.to(torch.int32).contiguous()}, description


def stored_bytes(n_neurons: int, n_edges: int, itemsize: int, layout: str = "dense") -> int:
    """The size of a checkpoint's safetensors file (the weights and the topology), without
    the JSON: N×N weights for the dense layout, P for the sparse one."""
    N, P = n_neurons, n_edges
    weights = layout_class(layout).weight_count(N, P)
    return weights * itemsize + min(N * N, 8 * P) + 1024


def _resolve(path: str | Path) -> Path:
    path = Path(path)
    if path.is_dir():
        return path
    if path.name in (CONFIG, WEIGHTS) and path.is_file():
        return path.parent
    raise FileNotFoundError(
        f"no checkpoint at {str(path)!r}: expected a directory holding {CONFIG} and {WEIGHTS}"
    )


def load_checkpoint(path: str | Path, grad: str | None = None) -> tuple[MeshNet, dict[str, Any]]:
    """The model stored at ``path`` and the whole JSON document (for its ``extra`` fields).

    ``grad`` overrides the stored gradient engine (the forward pass does not depend on it).
    """
    directory = _resolve(path)
    for name in (CONFIG, WEIGHTS):
        if not (directory / name).is_file():
            inner = directory / "checkpoint"
            if (inner / CONFIG).is_file():  # a run folder given for its checkpoint
                raise FileNotFoundError(
                    f"{str(path)!r} is a run folder, not a checkpoint: did you mean {inner}?"
                )
            raise FileNotFoundError(f"checkpoint {str(directory)!r} lacks {name}")
    try:
        document = json.loads((directory / CONFIG).read_text(encoding="utf-8"))
    except json.JSONDecodeError as error:
        raise ValueError(f"{directory / CONFIG}: not valid JSON ({error})") from None
    if not isinstance(document, dict) or document.get("format") != FORMAT:
        raise ValueError(f"{directory / CONFIG} is not a meshprop checkpoint")
    version = document.get("version")
    if version not in READABLE or isinstance(version, bool):
        raise ValueError(
            f"{directory / CONFIG}: checkpoint version {version!r}, "
            f"this meshprop reads versions {', '.join(map(str, READABLE))}"
        )
    where = directory / CONFIG
    tensors = _read_weights(directory / WEIGHTS)
    description = _section(document, "topology", where)
    try:
        if version == 1:
            topology = Topology.from_dict(description)
        else:
            topology = _topology(description, tensors, directory / WEIGHTS)
    except (KeyError, TypeError, ValueError, AttributeError, IndexError, RuntimeError) as error:
        raise ValueError(f"{where}: invalid topology ({_describe(error)})") from None
    config = _section(document, "model", where)
    try:
        dtype = _DTYPES.get(str(config["dtype"]))
        if dtype is None:
            raise ValueError(f"unsupported dtype {config['dtype']!r}")
        net = MeshNet(
            topology,
            ticks=int(config["ticks"]),
            activation=config["activation"],
            output_activation=config["output_activation"],
            grad=grad or config["grad"],
            dtype=dtype,
            layout=_layout(config, version),
        )
    except (KeyError, TypeError, ValueError, AttributeError, IndexError) as error:
        raise ValueError(f"{where}: invalid model settings ({_describe(error)})") from None
    _load_weights(net, tensors, directory / WEIGHTS)
    return net, document


def _layout(config: dict[str, Any], version: int) -> str:
    """The stored layout: ``"dense"`` before version 3, the ``layout`` key from then on."""
    if version < 3:
        return "dense"
    layout = config["layout"]
    if not isinstance(layout, str):
        raise TypeError(f"layout must be a string, got {type(layout).__name__}")
    return layout


def _load_weights(net: MeshNet, tensors: dict[str, torch.Tensor], where: Path) -> None:
    """Copy the stored weights into ``net`` after checking their name, shape and that nothing
    lies off the topology's edges (the storage's :meth:`~meshprop.layout.Layout.project`)."""
    storage, name = net.storage, net.storage.parameter
    stored = tensors.get(name)
    if stored is None or tuple(stored.shape) != storage.shape or not stored.is_floating_point():
        found = "none" if stored is None else f"{tuple(stored.shape)} {stored.dtype}"
        raise ValueError(
            f"{where}: expected a floating-point tensor {name!r} of shape {storage.shape} "
            f"(the {storage.name} layout's weights), got {found}"
        )
    values = stored.to(torch.float64)
    if bool((values - storage.project(values)).abs().sum() > 0):
        raise ValueError(f"{where}: weights outside the topology's edges")
    with torch.no_grad():
        net.parameter.copy_(stored.to(net.parameter.dtype))


def _read_weights(path: Path) -> dict[str, torch.Tensor]:
    """The tensors of a checkpoint's safetensors file (one-line ValueError otherwise)."""
    if path.stat().st_size == 0:
        raise ValueError(f"{path}: empty file (the checkpoint was not written completely)")
    try:
        return load_file(str(path))
    except (SafetensorError, OSError, ValueError, RuntimeError) as error:
        raise ValueError(f"{path}: not a readable safetensors file ({_describe(error)})") from None


def _topology(
    description: dict[str, Any], tensors: dict[str, torch.Tensor], where: Path
) -> Topology:
    """A version-2 topology: sizes from the JSON, edges or mask from the safetensors file."""
    kind = description["edges"]
    if kind not in ("edges", "mask"):
        raise ValueError(f"'edges' must be 'edges' or 'mask', got {kind!r}")
    stored = tensors.get(kind)
    if stored is None:
        raise ValueError(f"{where} holds no tensor {kind!r}")
    sizes = description.get("layer_sizes")
    args = (
        description["n_inputs"],
        description["n_hidden"],
        description["n_outputs"],
        description["bias"],
    )
    if not isinstance(args[3], bool):
        raise TypeError(f"bias must be a bool, got {type(args[3]).__name__}")
    layers = None if sizes is None else tuple(int(k) for k in sizes)
    if kind == "mask":
        if stored.dtype != torch.bool:
            raise TypeError(f"the mask must be boolean, got {stored.dtype}")
        return Topology(*args, mask=stored, layer_sizes=layers)
    if stored.dtype not in (torch.int32, torch.int64):
        raise TypeError(f"the edges must be integers, got {stored.dtype}")
    return Topology(*args, edges=stored.to(torch.long), layer_sizes=layers)


def _section(document: dict[str, Any], key: str, where: Path) -> dict[str, Any]:
    """``document[key]``, which must be a JSON object."""
    value = document.get(key)
    if not isinstance(value, dict):
        found = "missing" if value is None else f"a {type(value).__name__}"
        raise ValueError(f"{where}: the {key!r} section must be an object, found {found}")
    return value


def _describe(error: Exception) -> str:
    """One line for an error raised while reading a checkpoint: a missing key is named."""
    if isinstance(error, KeyError):
        return f"missing key {error.args[0]!r}"
    return str(error).splitlines()[0] if str(error) else type(error).__name__
