"""Checkpoints: the weights in safetensors, the topology and configuration in JSON.

A checkpoint is a directory (or the path of its ``model.json``) holding

- ``model.safetensors``: the adjacency matrix ``A`` (N×N, zero outside the mask);
- ``model.json``: ``{"format": "meshprop-checkpoint", "version": 1, "topology": ...,
  "model": {ticks, activation, output_activation, grad, dtype}, ...extra}``, where ``extra``
  is whatever the caller stores (the training configuration, the standardisation statistics).

:func:`load_checkpoint` rebuilds the identical model: same topology, same activations, same
weights bit for bit.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from .mesh import MeshNet
from .topology import Topology

__all__ = ["load_checkpoint", "save_checkpoint"]

FORMAT = "meshprop-checkpoint"
VERSION = 1
WEIGHTS = "model.safetensors"
CONFIG = "model.json"
_DTYPES = {"float32": torch.float32, "float64": torch.float64}


def model_config(net: MeshNet) -> dict[str, Any]:
    """What, besides topology and weights, rebuilds ``net``."""
    dtype = str(net.A.dtype).removeprefix("torch.")
    return {
        "ticks": net.ticks,
        "activation": net.activation if isinstance(net.activation, str) else list(net.activation),
        "output_activation": net.output_activation,
        "grad": net.grad,
        "dtype": dtype,
    }


def save_checkpoint(
    directory: str | Path, net: MeshNet, extra: dict[str, Any] | None = None
) -> Path:
    """Write ``net`` (and JSON-serialisable ``extra``) into ``directory``; returns it."""
    if not isinstance(net, MeshNet):
        raise TypeError(f"net must be a meshprop.MeshNet, got {type(net).__name__}")
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    document = {
        "format": FORMAT,
        "version": VERSION,
        "topology": net.topology.to_dict(),
        "model": model_config(net),
    }
    for key, value in (extra or {}).items():
        if key in document:
            raise ValueError(f"extra key {key!r} clashes with the checkpoint's own fields")
        document[key] = value
    save_file({"A": net.A.detach().to("cpu").contiguous()}, str(directory / WEIGHTS))
    (directory / CONFIG).write_text(json.dumps(document, indent=2) + "\n", encoding="utf-8")
    return directory


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
            raise FileNotFoundError(f"checkpoint {str(directory)!r} lacks {name}")
    try:
        document = json.loads((directory / CONFIG).read_text(encoding="utf-8"))
    except json.JSONDecodeError as error:
        raise ValueError(f"{directory / CONFIG}: not valid JSON ({error})") from None
    if not isinstance(document, dict) or document.get("format") != FORMAT:
        raise ValueError(f"{directory / CONFIG} is not a meshprop checkpoint")
    if document.get("version") != VERSION:
        raise ValueError(
            f"{directory / CONFIG}: checkpoint version {document.get('version')!r}, "
            f"this meshprop reads version {VERSION}"
        )
    where = directory / CONFIG
    try:
        topology = Topology.from_dict(_section(document, "topology", where))
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
        )
    except (KeyError, TypeError, ValueError, AttributeError, IndexError) as error:
        raise ValueError(f"{where}: invalid model settings ({_describe(error)})") from None
    try:
        tensors = load_file(str(directory / WEIGHTS))
    except (SafetensorError, OSError, ValueError, RuntimeError) as error:
        raise ValueError(
            f"{directory / WEIGHTS}: not a readable safetensors file ({_describe(error)})"
        ) from None
    A = tensors.get("A")
    if A is None or A.shape != net.A.shape:
        shape = None if A is None else tuple(A.shape)
        raise ValueError(
            f"{directory / WEIGHTS}: expected a tensor 'A' of shape {tuple(net.A.shape)}, "
            f"got {shape}"
        )
    if bool((A.to(torch.float64) * (~topology.mask)).abs().sum() > 0):
        raise ValueError(f"{directory / WEIGHTS}: weights outside the topology's edges")
    with torch.no_grad():
        net.A.copy_(A.to(dtype))
    return net, document


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
