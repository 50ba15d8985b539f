"""The edge-vector implementations of the built-in engines: one weight per edge.

Each engine here has ``layout = "sparse"``: it differentiates w (P,), in ``topo.edges`` order,
and returns dE/dw of shape (P,); it is registered under the same name as its dense twin (see
``engines/__init__.py``), so ``MeshNet(..., layout="sparse")`` finds it through the one registry.
No N×N tensor is ever allocated by ``bptt``, ``autograd`` or ``fop`` here:

- ``bptt``: the reciprocal network of paper 004 (as ``engines/bptt.py``) with the products of
  ``edge_ops`` (dE/dw by one SDDMM per tick), tick n restricted to the edges into R_n
  (``edge_ops.tick_edges``: exact) — memory O(T·B·N + P);
- ``autograd``: PyTorch autograd over the ticks written with gather / ``index_add``;
- ``fop``: the sparse FOP of ``engines/fop_sparse.py`` (Eq. 13 over reachable pairs);
- ``fop_factored``, ``reference`` and any engine registered for the dense layout only: served
  by the registry's bridge (A = scatter(w), memory-guarded: N×N, small meshes only);
- ``auto``: the cheapest forward-only engine (``fop`` here, or ``fop_factored`` through the dense
  bridge) by the cost model of ``engines/auto.py``, cached per (topology, ticks, batch, dtype).
"""

from __future__ import annotations

import torch

from ..dynamics import Dynamics
from ..memory import get_memory_limit
from .auto import choice_key, predict_seconds
from .base import GradientEngine
from .edge_ops import (
    edge_grad,
    edge_index_of,
    input_edges,
    joined_state,
    propagate,
    sparse_step_autograd,
    tick_edge_counts,
    tick_edges,
    transpose_product,
)
from .fop_sparse import sparse_fop_bytes, sparse_fop_carry, sparse_fop_flops, sparse_fop_gradient
from .guard import check_memory
from .registry import get_engine

__all__ = [
    "EDGE_ENGINES",
    "SparseAuto",
    "SparseAutograd",
    "SparseBPTT",
    "SparseFOP",
    "bptt_row_operations",
    "differentiable_sparse_output",
]


class SparseEngine(GradientEngine):
    """A gradient engine over the edge weights w (P,)."""

    layout = "sparse"


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
            w_n = w if ids is None else w.index_select(0, ids)
            S_prev = joined_state(dyn.clamped_state(x, n), h)
            h, D = dyn.activations(propagate(index, w_n, S_prev))  # Eq. 3
            history.append((S_prev, D))
        return h[:, dyn.n_free - dyn.n_outputs :], history

    def backward(self, dyn, w, x, saved, grad_y):
        ticks = tick_edges(dyn.topology, dyn.ticks, w.device)
        C, F, I = dyn.n_clamped, dyn.n_free, dyn.topology.n_inputs
        # neuron-major (δᵀ contiguous), the layout of every later δ and of the CSR products
        delta = torch.zeros(F, grad_y.shape[0], dtype=w.dtype, device=w.device).T
        delta[:, F - dyn.n_outputs :] = grad_y
        dw = torch.zeros_like(w)
        grad_x = torch.zeros_like(x)
        for n in range(dyn.ticks, 0, -1):
            ids, index = ticks[n - 1]
            S_prev, D = saved[n - 1]
            e = delta * D  # through φ′ (rule 3); zero outside R_n
            w_n = w if ids is None else w.index_select(0, ids)
            if ids is None:
                dw += edge_grad(index, S_prev, e)  # Σ_b S_{n-1}ᵀ e_n at the edges
            else:  # only the edges into R_n carry a non-zero term
                dw.index_add_(0, ids, edge_grad(index, S_prev, e))
            if n == 1:  # δ_0 only feeds dE/dx: e Aᵀ over the edges out of the inputs
                ids, index = input_edges(dyn.topology, dyn.ticks, w.device)
                w_n = w.index_select(0, ids)
            back = transpose_product(index, w_n, e)  # e Aᵀ (rules 4, 5), every neuron
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
        return int(GATHER * 2 * batch * bptt_row_operations(dyn))


def bptt_row_operations(dyn: Dynamics) -> float:
    """Row operations of one sparse ``bptt`` step, the unit of the cost model shared with the
    sparse FOP (``fop_sparse.sparse_fop_row_operations``): per tick n the forward product and
    the per-edge gradient over the edges into R_n, the transposed product over them (tick 1:
    over the edges out of the inputs only)."""
    into, from_inputs = tick_edge_counts(dyn.topology, dyn.ticks)
    return float(2 * sum(into) + sum(into[1:]) + from_inputs)


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
        return sparse_fop_carry(dyn, w, x)

    def backward(self, dyn, w, x, saved, grad_y):
        return sparse_fop_gradient(dyn, w, saved, grad_y), None

    def estimate_bytes(self, dyn, batch, itemsize):
        return sparse_fop_bytes(dyn, batch, itemsize)

    def estimate_flops(self, dyn, batch):
        return sparse_fop_flops(dyn, batch)


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
                engine = get_engine(name, "sparse")
                nbytes = engine.estimate_bytes(dyn, batch, itemsize)
                if limit is None or nbytes <= limit:
                    costs[name] = predict_seconds(engine.estimate_flops(dyn, batch), nbytes)
            if not costs:
                check_memory(get_engine("fop", "sparse"), dyn, batch, itemsize)  # raises
            self._cache[key] = min(costs, key=costs.__getitem__)
        return self._cache[key]

    def forward(self, dyn, w, x):
        name = self.choose(dyn, dyn.batch_size(x), w.element_size())
        self.last_choice = name
        engine = get_engine(name, "sparse")
        y, saved = engine.forward(dyn, w, x)
        return y, (engine, saved)

    def backward(self, dyn, w, x, saved, grad_y):
        engine, inner = saved
        dw, _ = engine.backward(dyn, w, x, inner, grad_y)
        return dw, None

    def estimate_bytes(self, dyn, batch, itemsize):
        chosen = get_engine(self.choose(dyn, batch, itemsize), "sparse")
        return chosen.estimate_bytes(dyn, batch, itemsize)

    def estimate_flops(self, dyn, batch):
        return min(get_engine(n, "sparse").estimate_flops(dyn, batch) for n in self.candidates)


#: the edge-vector implementations registered beside the dense engines of the same names.
EDGE_ENGINES: tuple[GradientEngine, ...] = (
    SparseFOP(),
    SparseBPTT(),
    SparseAutograd(),
    SparseAuto(),
)
