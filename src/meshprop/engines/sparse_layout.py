"""Engines of the sparse layout: one weight per edge (``MeshNet(..., layout="sparse")``).

The parameter is ``weight`` (P,), in ``topo.edges`` order; every engine here is bound to its
dynamics as a :class:`meshprop.protocol.VJPFunction` of ``{"weight": w}`` (:func:`bind_sparse`)
and returns dE/dw of shape (P,).  No N×N tensor is ever allocated by ``bptt``, ``autograd`` or
``fop`` here:

- ``bptt``: the reciprocal network of paper 004 (as ``engines/bptt.py``) with the products of
  ``edge_ops`` (dE/dw by one SDDMM per tick), tick n restricted to the edges into R_n
  (``edge_ops.tick_edges``: exact) — memory O(T·B·N + P);
- ``autograd``: PyTorch autograd over the ticks written with gather / ``index_add``;
- ``fop``: the sparse FOP of ``engines/fop_sparse.py`` (Eq. 13 over reachable pairs);
- ``fop_factored`` and ``reference``: the dense engines on A = scatter(w), memory-guarded (they
  need N×N matrices: only for small meshes);
- ``auto``: the cheapest forward-only engine (``fop`` here, or ``fop_factored`` through the dense
  bridge) by the cost model of ``engines/auto.py``, cached per (topology, ticks, batch, dtype).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any

import torch

from ..dynamics import Dynamics
from ..memory import MemoryLimitError, format_bytes, get_memory_limit
from .auto import choice_key, predict_seconds
from .base import BoundEngine, GradientEngine
from .edge_ops import (
    edge_grad,
    edge_index_of,
    propagate,
    sparse_step_autograd,
    tick_edges,
    transpose_product,
)
from .fop_sparse import sparse_fop_backward, sparse_fop_bytes, sparse_fop_flops, sparse_fop_forward
from .registry import get_engine

__all__ = ["SPARSE_ENGINES", "SparseEngine", "bind_sparse", "get_sparse"]


class SparseEngine(ABC):
    """A gradient engine over the edge weights w (P,)."""

    name: str
    provides_input_grad: bool = False

    @abstractmethod
    def forward(self, dyn: Dynamics, w: torch.Tensor, x: torch.Tensor) -> tuple[torch.Tensor, Any]:
        """y (B, O) and what ``backward`` needs."""

    @abstractmethod
    def backward(
        self, dyn: Dynamics, w: torch.Tensor, x: torch.Tensor, saved: Any, grad_y: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(dE/dw (P,), dE/dx or None)."""

    @abstractmethod
    def estimate_bytes(self, dyn: Dynamics, batch: int, itemsize: int) -> int:
        """Bytes one step allocates (a model)."""

    @abstractmethod
    def estimate_flops(self, dyn: Dynamics, batch: int) -> int:
        """Operations of one step (a model)."""

    def check_memory(self, dyn: Dynamics, batch: int, itemsize: int) -> int:
        """Raise :class:`MemoryLimitError` when the step would not fit the limit."""
        estimate = int(self.estimate_bytes(dyn, batch, itemsize))
        limit = get_memory_limit()
        if limit is not None and estimate > limit:
            topo = dyn.topology
            raise MemoryLimitError(
                f"the {self.name!r} engine of the sparse layout would need about "
                f"{format_bytes(estimate)} for one step (batch {batch}, {dyn.ticks} ticks, "
                f"{topo.n_neurons} neurons, {topo.n_edges} edges) but the memory limit is "
                f"{format_bytes(limit)}; use grad='bptt' or grad='fop' (no N×N matrix), a "
                "smaller batch or fewer ticks, or raise the limit (meshprop.set_memory_limit)",
                self.name,
                estimate,
                limit,
                "bptt" if self.name != "bptt" else None,
            )
        return estimate

    def __repr__(self) -> str:
        return f"<sparse {self.name!r} engine>"


def _state_bytes(dyn: Dynamics, batch: int, itemsize: int) -> int:
    """S, T, h, φ′ of one tick and the permuted weights of the CSR product."""
    return itemsize * (6 * batch * dyn.topology.n_neurons + 2 * dyn.topology.n_edges)


class SparseBPTT(SparseEngine):
    """Paper 004's reciprocal network over the edge list (``engines/bptt.py``, sparse Aᵀ)."""

    name = "bptt"
    provides_input_grad = True

    def forward(self, dyn, w, x):
        ticks = tick_edges(dyn.topology, dyn.ticks, w.device)
        h = torch.zeros(dyn.batch_size(x), dyn.n_free, dtype=w.dtype, device=w.device)
        history = []
        for n in range(1, dyn.ticks + 1):
            ids, index = ticks[n - 1]  # tick n on R_n only: exact for y (tick_edges)
            w_n = w if ids is None else w[ids]
            S_prev = torch.cat([dyn.clamped_state(x, n), h], dim=1)
            h, D = dyn.activations(propagate(index, w_n, S_prev))  # Eq. 3
            history.append((S_prev, D))
        return h[:, dyn.n_free - dyn.n_outputs :], history

    def backward(self, dyn, w, x, saved, grad_y):
        ticks = tick_edges(dyn.topology, dyn.ticks, w.device)
        C, F, I = dyn.n_clamped, dyn.n_free, dyn.topology.n_inputs
        delta = torch.zeros(grad_y.shape[0], F, dtype=w.dtype, device=w.device)
        delta[:, F - dyn.n_outputs :] = grad_y
        dw = torch.zeros_like(w)
        grad_x = torch.zeros_like(x)
        for n in range(dyn.ticks, 0, -1):
            ids, index = ticks[n - 1]
            S_prev, D = saved[n - 1]
            e = delta * D  # through φ′ (rule 3); zero outside R_n
            if ids is None:
                dw += edge_grad(index, S_prev, e)  # Σ_b S_{n-1}ᵀ e_n at the edges
                back = transpose_product(index, w, e)  # e Aᵀ (rules 4, 5), every neuron
            else:  # only the edges into R_n carry a non-zero term
                dw.index_add_(0, ids, edge_grad(index, S_prev, e))
                back = transpose_product(index, w[ids], e)
            if x.dim() == 3:
                grad_x[n - 1] = back[:, :I]
            else:
                grad_x += back[:, :I]
            delta = back[:, C:]
        return dw, grad_x

    def estimate_bytes(self, dyn, batch, itemsize):
        T, N, F, P = dyn.ticks, dyn.topology.n_neurons, dyn.n_free, dyn.topology.n_edges
        # the saved states; dw and edge_grad's SDDMM (pattern values, result values and the
        # copies of its CSR indices)
        return (
            itemsize * (T * batch * (N + F) + 4 * P)
            + 8 * (P + N + 1)
            + _state_bytes(dyn, batch, itemsize)
            + 2048 * T
        )

    def estimate_flops(self, dyn, batch):
        return 3 * dyn.ticks * 2 * batch * dyn.topology.n_edges


class SparseAutograd(SparseEngine):
    """PyTorch autograd over the ticks written with gather / ``index_add`` (the oracle)."""

    name = "autograd"
    provides_input_grad = True

    def forward(self, dyn, w, x):
        with torch.enable_grad():
            w_leaf = w.detach().requires_grad_(True)
            x_leaf = x.detach().requires_grad_(True)
            y = differentiable_sparse_output(dyn, w_leaf, x_leaf)
        return y.detach(), (w_leaf, x_leaf, y)

    def backward(self, dyn, w, x, saved, grad_y):
        w_leaf, x_leaf, y = saved
        dw, dx = torch.autograd.grad(y, (w_leaf, x_leaf), grad_y)
        return dw, dx

    def estimate_bytes(self, dyn, batch, itemsize):
        P, N = dyn.topology.n_edges, dyn.topology.n_neurons
        return itemsize * dyn.ticks * batch * (3 * P + 6 * N) + _state_bytes(dyn, batch, itemsize)

    def estimate_flops(self, dyn, batch):
        return GATHER * 3 * dyn.ticks * 2 * batch * dyn.topology.n_edges


#: a gathered/scattered multiply-add against a dense GEMM flop, for the cost model.
GATHER = 8


def differentiable_sparse_output(dyn: Dynamics, w: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """y = S_T[outputs] from differentiable operations over the edge list (Eq. 3 unrolled)."""
    index = edge_index_of(dyn.topology, w.device)
    h = torch.zeros(dyn.batch_size(x), dyn.n_free, dtype=w.dtype, device=w.device)
    for n in range(1, dyn.ticks + 1):
        S_prev = torch.cat([dyn.clamped_state(x, n), h], dim=1)
        h = dyn.activations.value(sparse_step_autograd(index, w, S_prev))
    return h[:, dyn.n_free - dyn.n_outputs :]


class SparseFOP(SparseEngine):
    """Sparse FOP (``engines/fop_sparse.py``): exact, forward-only, dE/dw only."""

    name = "fop"

    def forward(self, dyn, w, x):
        return sparse_fop_forward(dyn, w, x)

    def backward(self, dyn, w, x, saved, grad_y):
        return sparse_fop_backward(dyn, saved, grad_y).to(w.dtype), None

    def estimate_bytes(self, dyn, batch, itemsize):
        return sparse_fop_bytes(dyn, batch, itemsize)

    def estimate_flops(self, dyn, batch):
        return sparse_fop_flops(dyn, batch)


class DenseBridge(SparseEngine):
    """A dense engine on A = scatter(w) (N×N: small meshes only); dE/dw = dE/dA at the edges."""

    def __init__(self, engine: str) -> None:
        self.name = engine
        self.dense: GradientEngine = get_engine(engine)
        self.provides_input_grad = self.dense.provides_input_grad

    def _A(self, dyn: Dynamics, w: torch.Tensor) -> torch.Tensor:
        N = dyn.topology.n_neurons
        src, dst = dyn.topology.edges.to(w.device).unbind(1)
        A = torch.zeros(N, N, dtype=w.dtype, device=w.device)
        A[src, dst] = w
        return A

    def forward(self, dyn, w, x):
        A = self._A(dyn, w)
        y, saved = self.dense.forward(dyn, A, x)
        return y, (A, saved)

    def backward(self, dyn, w, x, saved, grad_y):
        A, inner = saved
        dA, dx = self.dense.backward(dyn, A, x, inner, grad_y)
        src, dst = dyn.topology.edges.to(w.device).unbind(1)
        return dA[src, dst], dx

    def estimate_bytes(self, dyn, batch, itemsize):
        N = dyn.topology.n_neurons
        return self.dense.estimate_bytes(dyn, batch, itemsize) + 2 * itemsize * N * N

    def estimate_flops(self, dyn, batch):
        return self.dense.estimate_flops(dyn, batch)


class SparseAuto(SparseEngine):
    """The cheapest exact forward-only engine of the sparse layout, by the cost model of
    ``engines/auto.py``; the choice is cached per (topology, ticks, batch, dtype, limit
    setting), so a training step costs what the chosen engine costs."""

    name = "auto"

    def __init__(self, candidates: tuple[str, ...] = ("fop", "fop_factored")) -> None:
        self.candidates = candidates
        self.last_choice: str | None = None
        self._cache: dict[tuple, str] = {}

    def choose(self, dyn: Dynamics, batch: int, itemsize: int) -> str:
        key = choice_key(dyn, batch, itemsize)
        if key not in self._cache:
            limit = get_memory_limit()
            costs = {}
            for name in self.candidates:
                engine = SPARSE_ENGINES[name]
                nbytes = engine.estimate_bytes(dyn, batch, itemsize)
                if limit is None or nbytes <= limit:
                    costs[name] = predict_seconds(engine.estimate_flops(dyn, batch), nbytes)
            if not costs:
                SPARSE_ENGINES["fop"].check_memory(dyn, batch, itemsize)  # raises
            self._cache[key] = min(costs, key=costs.__getitem__)
        return self._cache[key]

    def forward(self, dyn, w, x):
        name = self.choose(dyn, dyn.batch_size(x), w.element_size())
        self.last_choice = name
        engine = SPARSE_ENGINES[name]
        y, saved = engine.forward(dyn, w, x)
        return y, (engine, saved)

    def backward(self, dyn, w, x, saved, grad_y):
        engine, inner = saved
        dw, _ = engine.backward(dyn, w, x, inner, grad_y)
        return dw, None

    def estimate_bytes(self, dyn, batch, itemsize):
        return SPARSE_ENGINES[self.choose(dyn, batch, itemsize)].estimate_bytes(
            dyn, batch, itemsize
        )

    def estimate_flops(self, dyn, batch):
        return min(SPARSE_ENGINES[n].estimate_flops(dyn, batch) for n in self.candidates)


SPARSE_ENGINES: dict[str, SparseEngine] = {
    engine.name: engine
    for engine in (
        SparseFOP(),
        SparseBPTT(),
        SparseAutograd(),
        DenseBridge("reference"),
        DenseBridge("fop_factored"),
        SparseAuto(),
    )
}


def get_sparse(method: str) -> SparseEngine:
    """The sparse-layout engine for the gradient method ``method``."""
    if method not in SPARSE_ENGINES:
        raise ValueError(
            f"unknown gradient method {method!r} for the sparse layout; expected one of "
            f"{tuple(SPARSE_ENGINES)}"
        )
    return SPARSE_ENGINES[method]


def bind_sparse(engine: str | SparseEngine, dynamics: Dynamics) -> BoundEngine:
    """``engine`` (a sparse-layout engine or its name) as a VJP function of ``{"weight": w}``."""
    chosen = get_sparse(engine) if isinstance(engine, str) else engine
    return BoundEngine(chosen, dynamics, parameter="weight")
