"""Bridges that serve an engine on the layout it was not written for.

- :class:`DenseOnSparse`: a dense engine (on A) for a weight vector w: A = w scattered into an
  N×N matrix, dE/dw = dE/dA read at the edges.  It allocates N×N matrices: its memory estimate
  says so, and the memory guard refuses it where they do not fit.
- :class:`SparseOnDense`: an edge-vector engine (on w) for a matrix A: w = A at the edges
  (row-major, ``topo.edges`` order), dE/dA = dE/dw scattered back (exactly 0 off the edges).
"""

from __future__ import annotations

import torch

from ..dynamics import Dynamics
from .base import GradientEngine

__all__ = ["DenseOnSparse", "SparseOnDense", "edge_values", "scatter_edges"]


def scatter_edges(dyn: Dynamics, w: torch.Tensor) -> torch.Tensor:
    """The N×N matrix with w at the topology's edges and 0 elsewhere."""
    N = dyn.topology.n_neurons
    src, dst = dyn.topology.edges.to(w.device).unbind(1)
    A = w.new_zeros(N, N)
    A[src, dst] = w
    return A


def edge_values(dyn: Dynamics, A: torch.Tensor) -> torch.Tensor:
    """A read at the topology's edges, shape (P,), in ``topo.edges`` order."""
    src, dst = dyn.topology.edges.to(A.device).unbind(1)
    return A[src, dst]


class DenseOnSparse(GradientEngine):
    """A dense-layout engine served on the sparse layout through A = scatter(w)."""

    layout = "sparse"

    def __init__(self, engine: GradientEngine) -> None:
        self.inner = engine
        self.name = engine.name  # type: ignore[misc]
        self.provides_input_grad = engine.provides_input_grad  # type: ignore[misc]

    def forward(self, dyn, w, x):
        A = scatter_edges(dyn, w)
        y, saved = self.inner.forward(dyn, A, x)
        return y, (A, saved)

    def backward(self, dyn, w, x, saved, grad_y):
        A, inner = saved
        dA, dx = self.inner.backward(dyn, A, x, inner, grad_y)
        return edge_values(dyn, dA), dx

    def estimate_bytes(self, dyn, batch, itemsize):
        N = dyn.topology.n_neurons
        return self.inner.estimate_bytes(dyn, batch, itemsize) + 2 * itemsize * N * N

    def estimate_flops(self, dyn, batch):
        return self.inner.estimate_flops(dyn, batch)

    def __getattr__(self, name: str):  # e.g. ``last_choice`` of a bridged selector
        if name == "inner":
            raise AttributeError(name)
        return getattr(self.inner, name)

    def __repr__(self) -> str:
        return f"<{self.name!r} engine of the dense layout, bridged to the sparse layout>"


class SparseOnDense(GradientEngine):
    """An edge-vector engine served on the dense layout through w = A at the edges."""

    layout = "dense"

    def __init__(self, engine: GradientEngine) -> None:
        self.inner = engine
        self.name = engine.name  # type: ignore[misc]
        self.provides_input_grad = engine.provides_input_grad  # type: ignore[misc]

    def forward(self, dyn, A, x):
        return self.inner.forward(dyn, edge_values(dyn, A), x)

    def backward(self, dyn, A, x, saved, grad_y):
        dw, dx = self.inner.backward(dyn, edge_values(dyn, A), x, saved, grad_y)
        return scatter_edges(dyn, dw), dx

    def estimate_bytes(self, dyn, batch, itemsize):
        N, P = dyn.topology.n_neurons, dyn.topology.n_edges
        return self.inner.estimate_bytes(dyn, batch, itemsize) + itemsize * (N * N + P)

    def estimate_flops(self, dyn, batch):
        return self.inner.estimate_flops(dyn, batch)

    def __getattr__(self, name: str):
        if name == "inner":
            raise AttributeError(name)
        return getattr(self.inner, name)

    def __repr__(self) -> str:
        return f"<{self.name!r} engine of the sparse layout, bridged to the dense layout>"
