"""MeshNet: a mesh neural network as a ``torch.nn.Module`` (paper 000 §2.1, Eq. 3).

``net(x)`` runs the ticks and returns the outputs.  Which engine computes dE/dA when the user calls
``loss.backward()`` is chosen by ``grad``: ``"autograd"`` records an ordinary graph, every other
engine is bound to the dynamics as a :class:`meshprop.protocol.VJPFunction` and bridged by the
protocol's one ``torch.autograd.Function``, whose backward is the engine's own gradient (for FOP:
only the contraction of dE/dy with the sensitivities carried forward).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from . import protocol
from .activations import NeuronActivations, resolve_activations
from .dynamics import Dynamics
from .engines import GradientEngine, bind, bind_guarded, check_memory, get_engine
from .engines.autograd import differentiable_output
from .engines.edge_ops import edge_index_of, propagate, sparse_output
from .engines.sequence import SequenceState, unroll_states
from .engines.sparse_layout import bind_sparse, differentiable_sparse_output, get_sparse
from .losses import LossFn, check_target
from .memory import check_fits, format_bytes
from .topology import Topology

__all__ = ["LAYOUTS", "MeshNet", "gradient"]

#: how a MeshNet stores its weights: an N×N matrix ``A`` or one weight per edge ``weight``.
LAYOUTS = ("dense", "sparse")


def engine_output(
    engine: GradientEngine, dyn: Dynamics, A: torch.Tensor, x: torch.Tensor
) -> torch.Tensor:
    """y through ``engine`` as a differentiable function of A (and of x where the engine can)."""
    function = bind_guarded(engine, dyn)  # the memory guard runs in the bridge, on plain tensors
    if x.requires_grad and not function.provides_input_grad:
        raise ValueError(
            f"the {engine.name!r} engine computes dE/dA only, but x requires grad; use "
            "grad='bptt' or grad='autograd' for input gradients, or pass x.detach()"
        )
    return protocol.apply(function, {"A": A}, x)


class MeshNet(nn.Module):
    """A mesh neural network with adjacency matrix ``A`` over the neurons of ``topology``.

    Args:
        topology: which edges exist (``meshprop.Topology``).
        ticks: T, the number of state transitions S_n = φ̂(S_{n-1}A) (Eq. 3).
        activation: one name for every non-input neuron, or N names (one per neuron).
        output_activation: overrides the output neurons' activation (e.g. "identity" for
            logits).
        grad: the engine ``loss.backward()`` uses: any name of ``meshprop.GRADIENT_METHODS``.
        dtype, device: of the parameter A.
        seed: seeds the initial weights (default: torch's global generator).
        layout: ``"dense"`` (default) keeps the N×N matrix ``net.A``; ``"sparse"`` keeps one
            weight per edge in ``net.weight`` (shape (P,), in ``topology.edges`` order) and runs
            every tick as a sparse product (``engines/edge_ops.py``): nothing of size N×N is
            allocated, so meshes of 10⁵ neurons fit.  There ``net.A`` raises AttributeError
            (``net.dense_weights()`` materialises the N×N matrix, memory-guarded), gradients
            are per edge, and the engines are those of ``engines/sparse_layout.py`` (``fop`` is
            the sparse FOP; ``fop_factored`` and ``reference`` go through an N×N matrix).

    Weights start uniform in ±1/√(in-degree) per target neuron (PyTorch's ``nn.Linear``
    default); entries outside the mask are 0 and stay exactly 0: the forward pass reads A
    through the mask and a gradient hook zeroes their gradient.
    """

    mask: torch.Tensor  # the topology's mask on A's device (a non-persistent buffer)

    def __init__(
        self,
        topology: Topology,
        ticks: int = 3,
        activation: str | Sequence[str] = "relu",
        output_activation: str | None = None,
        grad: str = "fop",
        dtype: torch.dtype | None = None,
        device: torch.device | str | None = None,
        seed: int | None = None,
        layout: str = "dense",
    ) -> None:
        super().__init__()
        if not isinstance(topology, Topology):
            raise TypeError(f"topology must be a meshprop.Topology, got {type(topology).__name__}")
        if layout not in LAYOUTS:
            raise ValueError(f"layout must be one of {LAYOUTS}, got {layout!r}")
        self.layout = layout
        names = resolve_activations(
            activation,
            topology.n_neurons,
            topology.n_clamped,
            topology.n_outputs,
            output_activation,
        )
        self.topology = topology
        self.activation = activation if isinstance(activation, str) else tuple(activation)
        self.output_activation = output_activation
        self.dynamics = Dynamics(topology, ticks, NeuronActivations(names))
        self.grad = grad
        if layout == "sparse":
            self.weight = nn.Parameter(torch.zeros(topology.n_edges, dtype=dtype, device=device))
            self.reset_parameters(seed)
            return
        itemsize = torch.empty(0, dtype=dtype).element_size()
        _check_dense(topology, itemsize)
        self.register_buffer("mask", topology.mask, persistent=False)
        A = torch.zeros(topology.n_neurons, topology.n_neurons, dtype=dtype, device=device)
        self.A = nn.Parameter(A)
        self.reset_parameters(seed)
        self.A.register_hook(self._mask_gradient)

    def __getattr__(self, name: str):
        if name in ("A", "mask") and self.__dict__.get("layout") == "sparse":
            raise AttributeError(
                f"a MeshNet with layout='sparse' has no N×N {name!r}: its weights are "
                f"net.weight, one per edge ({self.topology.n_edges},) in topology.edges order; "
                "net.dense_weights() builds the N×N matrix when it fits in memory"
            )
        return super().__getattr__(name)

    @property
    def parameter(self) -> torch.Tensor:
        """The weights as stored: ``A`` (dense layout) or ``weight`` (sparse layout)."""
        return self.weight if self.layout == "sparse" else self.A

    def dense_weights(self) -> torch.Tensor:
        """The N×N weight matrix A (a copy in the sparse layout; memory-guarded)."""
        if self.layout == "dense":
            return self.A.detach()
        _check_dense(self.topology, self.weight.element_size())
        N = self.topology.n_neurons
        A = torch.zeros(N, N, dtype=self.weight.dtype, device=self.weight.device)
        src, dst = self.topology.edges.to(A.device).unbind(1)
        A[src, dst] = self.weight.detach()
        return A

    # ---------------------------------------------------------------- set-up
    @property
    def ticks(self) -> int:
        return self.dynamics.ticks

    @ticks.setter
    def ticks(self, value: int) -> None:
        self.dynamics = Dynamics(self.topology, value, self.dynamics.activations)

    @property
    def grad(self) -> str:
        return self._grad

    @grad.setter
    def grad(self, method: str) -> None:
        if self.__dict__.get("layout") == "sparse":
            get_sparse(method)  # validates the name
        else:
            get_engine(method)
        self._grad = method

    def with_topology(self, topology: Topology) -> MeshNet:
        """A new MeshNet on ``topology`` (same neuron counts) with the same ticks, activations,
        engine, dtype and device, whose ``A`` keeps the weights of the edges both topologies
        share; edges only in ``topology`` start at exactly 0 (so the function the network
        computes is unchanged until they are trained), edges only in ``self.topology`` are
        dropped."""
        if not isinstance(topology, Topology):
            raise TypeError(f"topology must be a meshprop.Topology, got {type(topology).__name__}")
        old = self.topology
        if (topology.n_inputs, topology.n_hidden, topology.n_outputs, topology.bias) != (
            old.n_inputs,
            old.n_hidden,
            old.n_outputs,
            old.bias,
        ):
            raise ValueError(
                f"with_topology keeps the neurons: expected counts of {old!r}, got {topology!r}"
            )
        new = MeshNet(
            topology,
            ticks=self.ticks,
            activation=self.activation,
            output_activation=self.output_activation,
            grad=self.grad,
            dtype=self.parameter.dtype,
            device=self.parameter.device,
            layout=self.layout,
        )
        with torch.no_grad():
            if self.layout == "sparse":
                N = topology.n_neurons
                old_keys = old.edges[:, 0] * N + old.edges[:, 1]  # sorted (row-major)
                new_keys = topology.edges[:, 0] * N + topology.edges[:, 1]
                at = torch.searchsorted(old_keys, new_keys).clamp(max=max(len(old_keys) - 1, 0))
                shared = (
                    old_keys[at] == new_keys if len(old_keys) else torch.zeros_like(new_keys) > 0
                )
                weight = torch.zeros_like(new.weight)
                weight[shared.to(weight.device)] = self.weight.detach()[at[shared]]
                new.weight.copy_(weight)
            else:
                new.A.copy_(self.A.detach() * new.mask.to(self.A.dtype))
        return new

    @property
    def n_parameters(self) -> int:
        """Trainable weights: the edges of the topology."""
        return self.topology.n_edges

    def reset_parameters(self, seed: int | None = None) -> None:
        generator = None if seed is None else torch.Generator().manual_seed(int(seed))
        if self.layout == "sparse":  # the same law per edge, drawn for the P edges only
            dst = self.topology.edges[:, 1]
            fan_in = torch.bincount(dst, minlength=self.topology.n_neurons)
            bound = 1.0 / fan_in.clamp(min=1).to(torch.float64).sqrt()[dst]
            uniform = torch.rand(len(dst), generator=generator, dtype=torch.float64)
            with torch.no_grad():
                self.weight.copy_((2 * uniform - 1) * bound)
            return
        fan_in = self.mask.sum(dim=0).cpu().clamp(min=1).to(torch.float64)
        bound = (1.0 / fan_in.sqrt()).expand(self.topology.n_neurons, -1)
        uniform = torch.rand(self.A.shape, generator=generator, dtype=torch.float64)
        weights = (2 * uniform - 1) * bound * self.mask.cpu()
        with torch.no_grad():
            self.A.copy_(weights.to(self.A.dtype))

    def _mask_gradient(self, grad: torch.Tensor) -> torch.Tensor:
        return grad * self.mask.to(grad.dtype)

    # --------------------------------------------------------------- forward
    def prepare_input(self, x: torch.Tensor) -> torch.Tensor:
        """Validate x and move it to the weights' dtype and device (``Dynamics.check_input``)."""
        return self.dynamics.check_input(x, self.parameter.dtype, self.parameter.device)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """The outputs y = S_T[outputs], shape (B, O), for x of shape (B, I) or (T, B, I)."""
        requires_x_grad = isinstance(x, torch.Tensor) and x.requires_grad
        x = self.prepare_input(x)
        if self.layout == "sparse":
            return self._sparse_forward(x, requires_x_grad)
        if not torch.is_grad_enabled() or not (self.A.requires_grad or requires_x_grad):
            return self.dynamics.output(self.A, x)
        if self.grad == "autograd":
            check_memory(get_engine("autograd"), self.dynamics, x.shape[-2], x.element_size())
            return differentiable_output(self.dynamics, self.A, x)
        return engine_output(get_engine(self.grad), self.dynamics, self.A, x)

    def _sparse_forward(self, x: torch.Tensor, requires_x_grad: bool) -> torch.Tensor:
        w, dyn = self.weight, self.dynamics
        if not torch.is_grad_enabled() or not (w.requires_grad or requires_x_grad):
            return sparse_output(dyn, w, x)
        engine = get_sparse(self.grad)
        engine.check_memory(dyn, dyn.batch_size(x), w.element_size())
        if self.grad == "autograd":
            return differentiable_sparse_output(dyn, w, x)
        return protocol.apply(bind_sparse(engine, dyn), {"weight": w}, x)

    def prepare_sequence(self, x: torch.Tensor) -> torch.Tensor:
        """Validate a sequence x of shape (L, B, I) and move it to A's dtype and device."""
        I = self.topology.n_inputs
        if not isinstance(x, torch.Tensor):
            raise TypeError(f"x must be a torch.Tensor, got {type(x).__name__}")
        if x.dim() != 3 or x.shape[2] != I or x.shape[0] < 1:
            raise ValueError(
                f"a sequence x must have shape (L, B, {I}) with L >= 1 (L elements, a batch of B, "
                f"{I} inputs), got {tuple(x.shape)}"
            )
        L, B = x.shape[0], x.shape[1]
        flat = self.dynamics.check_input(x.reshape(L * B, I), self.A.dtype, self.A.device)
        return flat.reshape(L, B, I)

    def unroll(
        self, x: torch.Tensor, state: torch.Tensor | SequenceState | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Run a sequence x (L, B, I): ``ticks`` ticks per element, the hidden and output states
        carried over from element to element.  Returns y (L, B, O), the outputs after each
        element, and the state h (B, F) of the free neurons after the last one; passing it back
        as ``state`` continues the stream exactly (default: h = 0).  With gradients enabled and
        A requiring grad, y is differentiable by autograd (an ordinary graph); for the
        forward-only or reciprocal gradient use ``meshprop.sequence_gradient``."""
        x = self.prepare_sequence(x)
        B, F = x.shape[1], self.topology.n_free
        if isinstance(state, SequenceState):
            state = state.h
        if state is None:
            h = torch.zeros(B, F, dtype=self.A.dtype, device=self.A.device)
        elif not isinstance(state, torch.Tensor) or tuple(state.shape) != (B, F):
            got = tuple(state.shape) if isinstance(state, torch.Tensor) else type(state).__name__
            raise ValueError(
                f"state must be the (B, F) = ({B}, {F}) free-neuron state returned by unroll, "
                f"got {got}"
            )
        else:
            h = state.to(device=self.A.device, dtype=self.A.dtype)
        if torch.is_grad_enabled() and self.A.requires_grad:
            return unroll_states(self.dynamics, self.A, x, h)
        with torch.no_grad():
            return unroll_states(self.dynamics, self.A, x, h)

    @torch.no_grad()
    def trajectory(self, x: torch.Tensor) -> torch.Tensor:
        """Every state S_0..S_T of the whole network, shape (T+1, B, N)."""
        x = self.prepare_input(x)
        if self.layout == "dense":
            return self.dynamics.trajectory(self.A, x)
        dyn, w = self.dynamics, self.weight
        index = edge_index_of(self.topology, w.device)
        h = torch.zeros(dyn.batch_size(x), dyn.n_free, dtype=w.dtype, device=w.device)
        states = []
        for n in range(1, dyn.ticks + 1):
            states.append(torch.cat([dyn.clamped_state(x, n), h], dim=1))
            h, _ = dyn.activations(propagate(index, w, states[-1]))
        states.append(torch.cat([dyn.clamped_state(x, dyn.ticks), h], dim=1))
        return torch.stack(states)

    def extra_repr(self) -> str:
        act = self.activation if isinstance(self.activation, str) else "per-neuron"
        return (
            f"{self.topology!r}, ticks={self.ticks}, activation={act!r}, "
            f"output_activation={self.output_activation!r}, grad={self.grad!r}"
            + ("" if self.layout == "dense" else ", layout='sparse'")
        )


def dense_layout_bytes(n_neurons: int, itemsize: int) -> int:
    """Memory of the dense layout's N×N tensors: A, its gradient and the boolean mask."""
    return n_neurons * n_neurons * (2 * itemsize + 1)


def _check_dense(topology: Topology, itemsize: int) -> None:
    """Refuse an N×N layout that cannot fit: the memory guard's error, before allocating."""
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


def gradient(
    net: MeshNet,
    x: torch.Tensor,
    target: torch.Tensor,
    loss: str | LossFn = "cross_entropy",
    method: str | GradientEngine | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The loss and dE/dA (N×N, zero outside the mask) of ``net`` on a batch, by ``method``;
    for a sparse-layout net, dE/dweight of shape (P,) in ``topology.edges`` order.

    ``method`` defaults to ``net.grad``.  ``net.A.grad`` is left untouched.  The engine's memory
    is checked against ``meshprop.memory``'s limit first (``MemoryLimitError`` when it does not
    fit).  With ``method="auto"`` the engine used is logged and kept in
    ``meshprop.get_engine("auto").last_choice``.
    """
    if net.layout == "sparse":
        sparse = get_sparse(net.grad if method is None else method)  # type: ignore[arg-type]
        x = net.prepare_input(x)
        check_target(loss, target, net.dynamics.batch_size(x), net.topology.n_outputs)
        target = target.to(net.weight.device)
        sparse.check_memory(net.dynamics, net.dynamics.batch_size(x), net.weight.element_size())
        value, grads = protocol.value_and_grad(
            bind_sparse(sparse, net.dynamics), {"weight": net.weight}, x, target, loss
        )
        return value, grads["weight"]
    engine = get_engine(net.grad if method is None else method)
    x = net.prepare_input(x)
    check_target(loss, target, net.dynamics.batch_size(x), net.topology.n_outputs)
    target = target.to(net.A.device)
    check_memory(engine, net.dynamics, net.dynamics.batch_size(x), net.A.element_size())
    value, grads = protocol.value_and_grad(
        bind(engine, net.dynamics), {"A": net.A}, x, target, loss
    )
    return value, grads["A"]
