"""How a MeshNet stores its weights — the one module that knows the difference.

A mesh's weights are the values of its P edges (paper 000 §2.1: A is zero outside the mask).
Two storages of the same values exist:

- :class:`DenseLayout` (``"dense"``): the N×N matrix A, parameter ``"A"``; entries outside the
  mask stay exactly 0.  Its products are dense matrix products: fast for small, dense meshes.
- :class:`SparseLayout` (``"sparse"``): the vector w of one weight per edge, parameter
  ``"weight"``, shape (P,), in ``topo.edges`` order; its products are sparse (``engines/edge_ops``)
  and nothing of size N×N is ever allocated, so meshes of 10⁵ neurons and more fit.

Everything else in meshprop speaks to a :class:`Layout`: it converts between the storage and the
edge vector (:meth:`Layout.edge_values`, :meth:`Layout.from_edge_values`), projects gradients on
the edges, builds the :class:`Transition` — the products of Eq. 3 and of the reciprocal network
on the stored weights — and binds gradient engines, which the registry serves on either layout
(``engines/registry.py``).  Gradients have the storage's shape: (N, N) dense, (P,) sparse.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import ClassVar

import torch

from .dynamics import Dynamics
from .engines import GradientEngine, check_memory, get_engine
from .engines.base import LAYOUT_NAMES
from .engines.edge_ops import (
    edge_grad,
    edge_index_of,
    joined_state,
    propagate,
    sparse_step_autograd,
    transpose_product,
)
from .engines.guard import GuardedEngine, bind_guarded
from .memory import check_fits, format_bytes
from .topology import Topology

__all__ = [
    "LAYOUTS",
    "DenseLayout",
    "Layout",
    "SparseLayout",
    "Transition",
    "dense_layout_bytes",
    "layout_class",
    "layout_of",
    "shared_edge_values",
]

#: how a MeshNet stores its weights: an N×N matrix ``A`` or one weight per edge ``weight``.
LAYOUTS = LAYOUT_NAMES


class Transition(ABC):
    """The products of one tick for fixed weights (paper 000 Eq. 3 and its reciprocal network).

    With S_{n-1} = [c | h], T_n = c A_c + h A_f is ``pre_activation(drive(c), h)`` (``drive`` is
    computed once for an input held over several ticks); ``back(e)`` is e A[:, free]ᵀ (B, N)
    (paper 004 rule 4: the transposed gain of the reciprocal network), and
    ``add_gradient(grad, S, e)`` adds Sᵀe read at the edges to a gradient of the storage's shape.
    """

    @abstractmethod
    def drive(self, c: torch.Tensor) -> torch.Tensor:
        """The clamped neurons' contribution c A_c (or what ``pre_activation`` needs of c)."""

    @abstractmethod
    def pre_activation(self, drive: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
        """T_n = c A_c + h A_f, shape (B, F)."""

    @abstractmethod
    def back(self, e: torch.Tensor) -> torch.Tensor:
        """e A[:, free]ᵀ, shape (B, N), for e of shape (B, F)."""

    @abstractmethod
    def add_gradient(self, grad: torch.Tensor, S: torch.Tensor, e: torch.Tensor) -> None:
        """grad += (Sᵀ e) at the edges, in place (grad has the storage's shape)."""


class _DenseTransition(Transition):
    def __init__(self, dyn: Dynamics, A: torch.Tensor) -> None:
        C = dyn.n_clamped
        self.C = C
        self.free = (A * dyn.mask_like(A))[:, C:]  # A[:, free], read through the mask
        self.A_c, self.A_f = self.free[:C], self.free[C:]

    def drive(self, c):
        return c @ self.A_c

    def pre_activation(self, drive, h):
        return drive + h @ self.A_f

    def back(self, e):
        return e @ self.free.T

    def add_gradient(self, grad, S, e):
        grad[:, self.C :] += S.T @ e


class _SparseTransition(Transition):
    def __init__(self, dyn: Dynamics, w: torch.Tensor, differentiable: bool) -> None:
        self.index = edge_index_of(dyn.topology, w.device)
        self.w = w
        self.differentiable = differentiable

    def drive(self, c):
        return c

    def pre_activation(self, drive, h):
        if self.differentiable:
            return sparse_step_autograd(self.index, self.w, torch.cat([drive, h], dim=1))
        return propagate(self.index, self.w, joined_state(drive, h))

    def back(self, e):
        return transpose_product(self.index, self.w, e)

    def add_gradient(self, grad, S, e):
        grad += edge_grad(self.index, S, e)


class Layout(ABC):
    """A weight storage for the mesh of ``topology`` (see the module docstring)."""

    name: ClassVar[str]
    #: the name of the MeshNet parameter that holds the weights
    parameter: ClassVar[str]

    def __init__(self, topology: Topology) -> None:
        self.topology = topology

    # ------------------------------------------------------------- storage
    @abstractmethod
    def check_fits(self, itemsize: int) -> None:
        """Raise ``MemoryLimitError`` before allocating a storage that cannot fit."""

    @abstractmethod
    def initial(
        self, dtype: torch.dtype | None, device: torch.device | str | None, seed: int | None
    ) -> torch.Tensor:
        """Initial weights: uniform in ±1/√(in-degree of the target) per edge (``nn.Linear``'s
        default), 0 off the edges; ``seed`` fixes them (default: torch's global generator)."""

    @abstractmethod
    def edge_values(self, theta: torch.Tensor) -> torch.Tensor:
        """The weights of the P edges, shape (P,), in ``topo.edges`` order (differentiable)."""

    @abstractmethod
    def from_edge_values(self, values: torch.Tensor) -> torch.Tensor:
        """The storage holding ``values`` (P,) at the edges and 0 elsewhere (differentiable)."""

    @property
    @abstractmethod
    def shape(self) -> tuple[int, ...]:
        """The shape of the stored weights: (N, N) or (P,)."""

    def carry(self, values: torch.Tensor, old: Layout) -> torch.Tensor:
        """``values`` stored for ``old`` (weights, a gradient, an optimizer's per-weight state)
        moved onto this storage: kept edges keep their value, new edges get 0."""
        moved = shared_edge_values(old.topology, self.topology, old.edge_values(values))
        return self.from_edge_values(moved)

    @abstractmethod
    def write_edge_values(self, out: torch.Tensor, values: torch.Tensor) -> None:
        """``out`` (storage shape) ← ``values`` (P,) at the edges, in place; entries off the
        edges are left as they are (0 in a buffer that only this method writes)."""

    @abstractmethod
    def edge_grid(self, tensor: torch.Tensor) -> torch.Tensor | None:
        """A view (N, F) of ``tensor`` (storage shape) whose entry (i, j) is edge p = i·F + j,
        when every (neuron, free neuron) pair is an edge (a full mesh: P = N·F, the edge order
        row-major); None otherwise.  Writing it writes the storage in place."""

    @abstractmethod
    def dense(self, theta: torch.Tensor) -> torch.Tensor:
        """The N×N matrix A (memory-guarded: ``MemoryLimitError`` where it cannot fit)."""

    @abstractmethod
    def project(self, grad: torch.Tensor) -> torch.Tensor:
        """``grad`` with every entry off the edges set to 0."""

    @abstractmethod
    def transition(
        self, dyn: Dynamics, theta: torch.Tensor, differentiable: bool = False
    ) -> Transition:
        """The products of a tick on ``theta`` (recorded by autograd if ``differentiable``)."""

    @staticmethod
    @abstractmethod
    def weight_count(n_neurons: int, n_edges: int) -> int:
        """How many numbers the storage holds for a mesh of that size."""

    def buffers(self) -> dict[str, torch.Tensor]:
        """Non-persistent buffers the owning module keeps on its device."""
        return {}

    # ------------------------------------------------------------- dynamics
    def output(self, dyn: Dynamics, theta: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """y = S_T[outputs], shape (B, O), without gradients (Eq. 3, ``dyn.ticks`` ticks)."""
        with torch.no_grad():
            return self._run(dyn, self.transition(dyn, theta.detach()), x, differentiable=False)

    def differentiable_output(
        self, dyn: Dynamics, theta: torch.Tensor, x: torch.Tensor
    ) -> torch.Tensor:
        """y = S_T[outputs] from differentiable torch operations (the autograd engine's graph),
        φ applied by the plain torch functions (``NeuronActivations.value``)."""
        return self._run(dyn, self.transition(dyn, theta, differentiable=True), x, True)

    def _run(
        self, dyn: Dynamics, tr: Transition, x: torch.Tensor, differentiable: bool
    ) -> torch.Tensor:
        h = x.new_zeros(dyn.batch_size(x), dyn.n_free)
        held = tr.drive(dyn.clamped_state(x, 1)) if x.dim() == 2 else None
        for n in range(1, dyn.ticks + 1):
            drive = held if held is not None else tr.drive(dyn.clamped_state(x, n))
            T = tr.pre_activation(drive, h)
            h = dyn.activations.value(T) if differentiable else dyn.activations(T)[0]
        return h[:, dyn.n_free - dyn.n_outputs :]

    def trajectory(self, dyn: Dynamics, theta: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """Every state S_0..S_T, shape (T+1, B, N), without gradients (``Dynamics.trajectory``'s
        convention: S_n's clamped part shows the input of tick n+1)."""
        with torch.no_grad():
            tr = self.transition(dyn, theta.detach())
            h = x.new_zeros(dyn.batch_size(x), dyn.n_free)
            states = []
            for n in range(1, dyn.ticks + 1):
                c = dyn.clamped_state(x, n)
                states.append(torch.cat([c, h], dim=1))
                h, _ = dyn.activations(tr.pre_activation(tr.drive(c), h))
            states.append(torch.cat([dyn.clamped_state(x, dyn.ticks), h], dim=1))
            return torch.stack(states)

    def unroll(
        self, dyn: Dynamics, theta: torch.Tensor, x: torch.Tensor, h: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """A sequence x (L, B, I) from the free state h: (y (L, B, O), h after the last element).
        Differentiable by autograd when ``theta`` (or h) requires grad and grad mode is on."""
        differentiable = torch.is_grad_enabled() and (theta.requires_grad or h.requires_grad)
        tr = self.transition(dyn, theta if differentiable else theta.detach(), differentiable)
        F, O = dyn.n_free, dyn.n_outputs
        ys = []
        for l in range(x.shape[0]):
            drive = tr.drive(dyn.clamped_state(x[l], 1))  # the same at every tick of an element
            for _ in range(dyn.ticks):
                T = tr.pre_activation(drive, h)
                h = dyn.activations.value(T) if differentiable else dyn.activations(T)[0]
            ys.append(h[:, F - O :])
        return torch.stack(ys), h

    # -------------------------------------------------------------- engines
    def engine(self, method: str | GradientEngine) -> GradientEngine:
        """The gradient engine ``method`` for this storage (registry: native or bridged)."""
        return get_engine(method, self.name)

    def bind(self, method: str | GradientEngine, dyn: Dynamics) -> GuardedEngine:
        """``method`` as a VJP function of ``{self.parameter: θ}`` over ``dyn``, whose forward
        checks the memory limit before the engine allocates anything."""
        return bind_guarded(self.engine(method), dyn, self.parameter)

    def check_memory(
        self, method: str | GradientEngine, dyn: Dynamics, batch: int, itemsize: int
    ) -> int:
        """The memory guard for one step of ``method`` (``MemoryLimitError`` above the limit)."""
        return check_memory(self.engine(method), dyn, batch, itemsize)

    def __repr__(self) -> str:
        return f"<{self.name} layout of {self.topology!r}>"


def dense_layout_bytes(n_neurons: int, itemsize: int) -> int:
    """Memory of the dense layout's N×N tensors: A, its gradient and the boolean mask."""
    return n_neurons * n_neurons * (2 * itemsize + 1)


class DenseLayout(Layout):
    """The N×N matrix A (parameter ``"A"``), zero outside the mask."""

    name = "dense"
    parameter = "A"

    def check_fits(self, itemsize: int) -> None:
        topology = self.topology
        N = topology.n_neurons
        need = dense_layout_bytes(N, itemsize)
        check_fits(
            need,
            "dense layout",
            lambda limit: (
                f"the dense layout keeps an N×N weight matrix: {N} neurons need about "
                f"{format_bytes(need)} for A, its gradient and the mask, but the memory limit is "
                f"{format_bytes(limit)}; use MeshNet(..., layout='sparse') (one weight per edge: "
                f"{topology.n_edges} edges), or raise the limit (meshprop.set_memory_limit)"
            ),
        )

    def initial(self, dtype, device, seed):
        generator = None if seed is None else torch.Generator().manual_seed(int(seed))
        mask = self.topology.dense_mask()
        N = self.topology.n_neurons
        fan_in = mask.sum(dim=0).clamp(min=1).to(torch.float64)
        bound = (1.0 / fan_in.sqrt()).expand(N, -1)
        uniform = torch.rand((N, N), generator=generator, dtype=torch.float64)
        weights = (2 * uniform - 1) * bound * mask
        return weights.to(dtype=dtype or torch.get_default_dtype(), device=device)

    @property
    def shape(self):
        return (self.topology.n_neurons, self.topology.n_neurons)

    @staticmethod
    def weight_count(n_neurons, n_edges):
        return n_neurons * n_neurons

    def edge_values(self, theta):
        index = edge_index_of(self.topology, theta.device)
        return theta[index.src, index.dst + self.topology.n_clamped]

    def from_edge_values(self, values):
        index = edge_index_of(self.topology, values.device)
        N = self.topology.n_neurons
        A = values.new_zeros(N, N)
        return A.index_put((index.src, index.dst + self.topology.n_clamped), values)

    def dense(self, theta):
        return theta

    def write_edge_values(self, out, values):
        index = edge_index_of(self.topology, values.device)
        out.index_put_((index.src, index.dst + self.topology.n_clamped), values)

    def edge_grid(self, tensor):
        topo = self.topology
        if topo.n_edges != topo.n_neurons * topo.n_free:
            return None
        return tensor[:, topo.n_clamped :]

    def project(self, grad):
        return grad * self.topology.dense_mask().to(device=grad.device, dtype=grad.dtype)

    def transition(self, dyn, theta, differentiable=False):
        return _DenseTransition(dyn, theta)

    def buffers(self):
        return {"mask": self.topology.mask}


class SparseLayout(Layout):
    """One weight per edge (parameter ``"weight"``, shape (P,), ``topo.edges`` order)."""

    name = "sparse"
    parameter = "weight"

    def check_fits(self, itemsize: int) -> None:
        return None  # P weights: the topology itself is larger

    def initial(self, dtype, device, seed):
        generator = None if seed is None else torch.Generator().manual_seed(int(seed))
        dst = self.topology.edge_targets  # no edge index is built here
        fan_in = torch.bincount(dst, minlength=self.topology.n_neurons)
        bound = 1.0 / fan_in.clamp(min=1).to(torch.float64).sqrt()
        uniform = torch.rand(len(dst), generator=generator, dtype=torch.float64)
        weights = uniform.mul_(2).sub_(1).mul_(bound[dst])  # in place: P-sized temporaries
        return weights.to(dtype=dtype or torch.get_default_dtype(), device=device)

    @property
    def shape(self):
        return (self.topology.n_edges,)

    @staticmethod
    def weight_count(n_neurons, n_edges):
        return n_edges

    def edge_values(self, theta):
        return theta

    def from_edge_values(self, values):
        return values

    def dense(self, theta):
        matrix = DenseLayout(self.topology)
        matrix.check_fits(theta.element_size())
        return matrix.from_edge_values(theta)

    def project(self, grad):
        return grad

    def write_edge_values(self, out, values):
        out.copy_(values)

    def edge_grid(self, tensor):
        topo = self.topology
        if topo.n_edges != topo.n_neurons * topo.n_free:
            return None
        return tensor.view(topo.n_neurons, topo.n_free)

    def transition(self, dyn, theta, differentiable=False):
        return _SparseTransition(dyn, theta, differentiable)


_LAYOUTS: dict[str, type[Layout]] = {"dense": DenseLayout, "sparse": SparseLayout}


def layout_class(name: str) -> type[Layout]:
    """The :class:`Layout` class called ``name`` (``"dense"`` or ``"sparse"``)."""
    if name not in _LAYOUTS:
        raise ValueError(f"layout must be one of {LAYOUTS}, got {name!r}")
    return _LAYOUTS[name]


def layout_of(name: str, topology: Topology) -> Layout:
    """The :class:`Layout` called ``name`` (``"dense"`` or ``"sparse"``) for ``topology``."""
    return layout_class(name)(topology)


def shared_edge_values(old: Topology, new: Topology, values: torch.Tensor) -> torch.Tensor:
    """The edge vector of ``new`` taking ``values`` (the edge vector of ``old``) on the edges
    both share and 0 on the edges only ``new`` has (both edge lists are row-major sorted)."""
    N = new.n_neurons
    old_edges, new_edges = old.edges.to(values.device), new.edges.to(values.device)
    old_keys = old_edges[:, 0] * N + old_edges[:, 1]
    new_keys = new_edges[:, 0] * N + new_edges[:, 1]
    out = values.new_zeros(len(new_keys))
    if len(old_keys) == 0 or len(new_keys) == 0:
        return out
    at = torch.searchsorted(old_keys, new_keys).clamp(max=len(old_keys) - 1)
    shared = old_keys[at] == new_keys
    out[shared] = values[at[shared]]
    return out
