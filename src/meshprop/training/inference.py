"""Outputs of a model on a whole split without gradients, in chunks of a bounded size.

Evaluation (``evaluate``, ``fit``'s per-epoch ``train_*``/``val_*`` metrics, ``meshprop train``'s
test metrics, ``meshprop evaluate`` and ``predict``, the scikit-learn estimators' predictions)
runs the model under ``torch.no_grad()`` — no autograd graph, no saved states — on at most
:func:`chunk_size` samples at a time and concatenates the outputs, so the memory of an
evaluation does not grow with the split: a state tensor of a 10⁶-neuron mesh is 4 MB per sample
(float32), 40 GB for a split of 10⁴ samples in one batch.

Each sample's output does not depend on the other samples of its batch, so the metrics computed
on the concatenated outputs are those of the whole split in one batch.  The chunk size is a
function of the model alone (never of the RAM available when it runs), so two runs of the same
configuration evaluate in the same chunks and give bit-identical metrics.
"""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["CHUNK_NUMBERS", "CHUNK_SAMPLES", "chunk_size", "outputs"]

#: the most samples one forward pass of an evaluation takes.
CHUNK_SAMPLES = 4096
#: the most numbers (samples × neurons) of one state tensor of an evaluation's forward pass:
#: 2²⁵ numbers are 128 MiB in float32 (33 samples at a time for a mesh of 10⁶ neurons).
CHUNK_NUMBERS = 2**25


def chunk_size(model: nn.Module) -> int:
    """Samples per forward pass: :data:`CHUNK_SAMPLES`, fewer for a mesh (a model with a
    ``topology``) so that a state of N neurons holds at most :data:`CHUNK_NUMBERS` numbers."""
    topology = getattr(model, "topology", None)
    neurons = getattr(topology, "n_neurons", None)
    if not isinstance(neurons, int) or neurons < 1:
        return CHUNK_SAMPLES
    return max(1, min(CHUNK_SAMPLES, CHUNK_NUMBERS // neurons))


def outputs(
    model: nn.Module, X: torch.Tensor, dim: int = 0, chunk: int | None = None
) -> torch.Tensor:
    """``model(X)`` without gradients, computed on chunks of at most ``chunk`` samples along
    axis ``dim`` (default :func:`chunk_size`) and concatenated along the same axis (a model's
    output keeps its input's samples axis)."""
    size = chunk_size(model) if chunk is None else int(chunk)
    if size < 1:
        raise ValueError(f"chunk must be a positive number of samples, got {chunk!r}")
    with torch.no_grad():
        n = X.shape[dim]
        if n <= size:
            return model(X)
        parts = [model(X.narrow(dim, start, min(size, n - start))) for start in range(0, n, size)]
        return torch.cat(parts, dim=dim)
