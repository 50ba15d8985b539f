"""What ``fit`` trains on: NumPy arrays or tensors, checked and converted to the model's dtype,
cut into seeded mini-batches along the samples axis.

The samples axis is 0 for (samples, features) data (MeshNet, layered MLP, most modules) and 1
for sequences shaped (T, B, width) (a block diagram, paper 004).  A model's output keeps its
input's samples axis.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import BatchSampler, DataLoader, Dataset, RandomSampler, SequentialSampler

from ..losses import LossFn, validate_target

__all__ = [
    "Samples",
    "make_loader",
    "model_dtype",
    "prepare_data",
    "sample_axis",
    "to_model",
    "to_target",
]


def sample_axis(model: nn.Module, batch_dim: int | None = None) -> int:
    """The axis of the samples in the model's inputs and outputs: ``batch_dim`` when given, else
    the model's own ``sample_axis`` attribute (1 for a :class:`meshprop.diagram.Diagram`, whose
    inputs are (T, B, width)), else 0."""
    if batch_dim is None:
        return int(getattr(model, "sample_axis", 0))
    if isinstance(batch_dim, bool) or not isinstance(batch_dim, int) or batch_dim < 0:
        raise ValueError(f"batch_dim must be an integer >= 0, got {batch_dim!r}")
    return batch_dim


def model_dtype(model: nn.Module) -> tuple[torch.dtype, torch.device]:
    """The dtype and device of the model's first floating-point parameter."""
    for p in model.parameters():
        if p.dtype.is_floating_point:
            return p.dtype, p.device
    raise ValueError(f"{type(model).__name__} has no floating-point parameters to train")


def to_model(x: torch.Tensor, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """An input batch on the model's device, floating point in the model's dtype."""
    if x.dtype == torch.bool or x.is_complex():
        return x.to(device)  # left for the model to reject
    return x.to(device=device, dtype=dtype)


class Samples(Dataset):
    """(X, y) indexed by lists of samples along axis ``dim``: ``samples[[3, 1]]`` is the batch of
    samples 3 and 1, drawn whole (one ``index_select`` per tensor)."""

    def __init__(self, X: torch.Tensor, y: torch.Tensor, dim: int = 0):
        if X.shape[dim] != y.shape[dim]:
            raise ValueError(f"X has {X.shape[dim]} samples but y has {y.shape[dim]}")
        self.X, self.y, self.dim = X, y, dim

    def __len__(self) -> int:
        return self.X.shape[self.dim]

    def __getitem__(self, indices: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
        index = torch.as_tensor(indices, dtype=torch.long, device=self.X.device)
        return (
            self.X.index_select(self.dim, index),
            self.y.index_select(self.dim, index.to(self.y.device)),
        )


def make_loader(
    X: torch.Tensor,
    y: torch.Tensor,
    batch_size: int,
    seed: int | None = 0,
    shuffle: bool = True,
    dim: int = 0,
) -> DataLoader:
    """Mini-batches of (X, y) along axis ``dim``, reshuffled every epoch by a ``torch.Generator``
    seeded with ``seed``: the same seed gives the same batches.  The last batch may be smaller.

    Batches are drawn whole (a ``BatchSampler`` indexes the tensors once per batch), so
    ``meshprop.distributed`` can re-index the sampler to give each process its shard.
    """
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
    dataset = Samples(X, y, dim)
    if shuffle:
        generator = torch.Generator().manual_seed(0 if seed is None else int(seed))
        sampler: RandomSampler | SequentialSampler = RandomSampler(dataset, generator=generator)
    else:
        sampler = SequentialSampler(dataset)
    batches = BatchSampler(sampler, batch_size=batch_size, drop_last=False)
    return DataLoader(dataset, sampler=batches, batch_size=None)


def _as_tensor(name: str, value: Any) -> torch.Tensor:
    if isinstance(value, np.ndarray):
        if value.dtype == object or value.dtype.kind not in "biuf":
            raise TypeError(f"{name} must hold numbers, got a NumPy array of dtype {value.dtype}")
        return torch.from_numpy(np.ascontiguousarray(value))
    if isinstance(value, torch.Tensor):
        return value
    raise TypeError(f"{name} must be a NumPy array or a torch tensor, got {type(value).__name__}")


def to_target(
    loss: str | LossFn, y: torch.Tensor, dtype: torch.dtype, device: torch.device | None = None
) -> torch.Tensor:
    """Integer labels to long for cross_entropy, a floating target to the model's dtype
    otherwise (anything else is left for the target check to reject); on ``device``."""
    if loss == "cross_entropy":
        if not (y.dtype.is_floating_point or y.dtype == torch.bool or y.is_complex()):
            return y.to(device=device, dtype=torch.long)
    elif y.dtype.is_floating_point:
        return y.to(device=device, dtype=dtype)
    return y.to(device)


def prepare_data(
    name: str, data: Any, model: nn.Module, loss: str | LossFn, dim: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Check ``data = (X, y)`` for ``model`` and return it as tensors: X in the model's dtype,
    y as long labels (cross_entropy) or in the model's dtype (a floating target).

    The target is validated against the output of one probe sample (shape, dtype, label range,
    finiteness); bad input raises TypeError / ValueError naming ``name`` and what was expected.
    """
    if not (isinstance(data, (tuple, list)) and len(data) == 2):
        raise TypeError(f"{name} must be a pair (X, y), got {type(data).__name__}")
    X, y = _as_tensor(f"{name}: X", data[0]), _as_tensor(f"{name}: y", data[1])
    dtype, device = model_dtype(model)
    if X.dtype == torch.bool or X.is_complex():
        raise TypeError(f"{name}: X must hold real numbers, got dtype {X.dtype}")
    topology = getattr(model, "topology", None)
    if topology is not None and dim == 0 and X.dim() != 2:
        raise ValueError(
            f"{name}: X must have shape (samples, {topology.n_inputs}), got {tuple(X.shape)}"
        )
    if X.dim() <= dim:
        raise ValueError(f"{name}: X must have its samples along axis {dim}, got {tuple(X.shape)}")
    if y.dim() <= dim or y.shape[dim] != X.shape[dim]:
        rows = "rows" if dim == 0 else f"samples (axis {dim})"
        got = y.shape[dim] if y.dim() > dim else f"shape {tuple(y.shape)}"
        raise ValueError(f"{name}: X has {X.shape[dim]} {rows} but y has {got}")
    if X.shape[dim] == 0:
        raise ValueError(f"{name} holds no samples")
    X = X.to(dtype)
    if not torch.isfinite(X).all():
        bad = (~torch.isfinite(X)).nonzero()[0].tolist()
        raise ValueError(f"{name}: X contains NaN or inf (first at index {tuple(bad)})")
    with torch.no_grad():
        out = model(X.narrow(dim, 0, 1).to(device))
    if not isinstance(out, torch.Tensor):
        raise TypeError(
            f"fit trains models with one output tensor; {type(model).__name__} "
            f"returned {type(out).__name__}"
        )
    shape = list(out.shape)
    shape[dim] = X.shape[dim]
    y = to_target(loss, y, dtype)
    validate_target(loss, y, shape)
    return X, y
