"""MeshNet: a mesh neural network as a ``torch.nn.Module`` (paper 000 §2.1, Eq. 3).

``net(x)`` runs the ticks and returns the outputs.  How the weights are stored — the N×N matrix
``A`` or one weight per edge — is the network's :class:`~meshprop.layout.Layout`; everything here
goes through it, so every method means the same on both.  Which engine computes the gradient when
the user calls ``loss.backward()`` is chosen by ``grad``: ``"autograd"`` records an ordinary graph,
every other engine is bound to the dynamics as a :class:`meshprop.protocol.VJPFunction` and
bridged by the protocol's one ``torch.autograd.Function``, whose backward is the engine's own
gradient (for FOP: only the contraction of dE/dy with the sensitivities carried forward).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from . import protocol
from .activations import NeuronActivations, resolve_activations
from .dynamics import Dynamics
from .engines import GradientEngine
from .layout import LAYOUTS, Layout, dense_layout_bytes, layout_of, shared_edge_values
from .losses import LossFn, check_target
from .topology import Topology

__all__ = ["LAYOUTS", "MeshNet", "carry_optimizer_state", "dense_layout_bytes", "gradient"]


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
        storage = layout_of(layout, topology)
        names = resolve_activations(
            activation,
            topology.n_neurons,
            topology.n_clamped,
            topology.n_outputs,
            output_activation,
        )
        self.topology = topology
        self.storage: Layout = storage
        self.activation = activation if isinstance(activation, str) else tuple(activation)
        self.output_activation = output_activation
        self.dynamics = Dynamics(topology, ticks, NeuronActivations(names))
        self.grad = grad
        storage.check_fits(torch.empty(0, dtype=dtype).element_size())
        for name, buffer in storage.buffers().items():
            self.register_buffer(name, buffer.to(device), persistent=False)
        weights = storage.initial(dtype, device, seed)
        self.register_parameter(storage.parameter, nn.Parameter(weights))
        self.parameter.register_hook(self._project_gradient)

    def _project_gradient(self, grad: torch.Tensor) -> torch.Tensor:
        """The parameter's gradient hook: entries off the current topology's edges get 0."""
        return self.storage.project(grad)

    def __getattr__(self, name: str):
        try:
            return super().__getattr__(name)
        except AttributeError:
            storage = self.__dict__.get("storage")
            if storage is None or name not in ("A", "mask", "weight"):
                raise
        if name == "weight":
            raise AttributeError(
                "this MeshNet keeps its weights as the N×N matrix net.A "
                "(MeshNet(..., layout='sparse') keeps one weight per edge in net.weight)"
            )
        raise AttributeError(
            f"a MeshNet with layout={storage.name!r} has no N×N {name!r}: its weights are "
            f"net.{storage.parameter}, one per edge ({self.topology.n_edges},) in "
            "topology.edges order; net.dense_weights() builds the N×N matrix when it fits "
            "in memory"
        )

    @property
    def layout(self) -> str:
        """How the weights are stored: ``"dense"`` (``net.A``) or ``"sparse"`` (``net.weight``)."""
        return self.storage.name

    @property
    def parameter(self) -> nn.Parameter:
        """The weights as stored: ``A`` (dense layout) or ``weight`` (sparse layout)."""
        return getattr(self, self.storage.parameter)

    def dense_weights(self) -> torch.Tensor:
        """The N×N weight matrix A (a detached tensor; memory-guarded in the sparse layout)."""
        return self.storage.dense(self.parameter.detach())

    def edge_weights(self) -> torch.Tensor:
        """The weights of the P edges, shape (P,), in ``topology.edges`` order (a new tensor)."""
        return self.storage.edge_values(self.parameter.detach()).clone()

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
        self.storage.engine(method)  # validates the name
        self._grad = method

    def with_topology(self, topology: Topology) -> MeshNet:
        """A new MeshNet on ``topology`` (same neuron counts) with the same ticks, activations,
        engine, dtype, device and layout, whose weights keep those of the edges both topologies
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
        values = shared_edge_values(old, topology, self.edge_weights())
        with torch.no_grad():
            new.parameter.copy_(new.storage.from_edge_values(values))
        return new

    def rewire_(self, topology: Topology, optimizer: torch.optim.Optimizer | None = None) -> None:
        """Move this network onto ``topology`` (same neuron counts) in place, as one operation.

        The weights follow the edges as in :meth:`with_topology` (kept edges keep their weight,
        new edges start at 0, removed edges are gone), and so do their ``.grad`` and the
        per-weight state of ``optimizer`` (Adam's moments, momentum buffers, ...): kept edges
        keep theirs, new edges start at the optimizer's initial value (0; Adagrad's
        ``initial_accumulator_value``).  Where the stored shape stays (the dense layout) the
        parameter object stays; where it changes (the sparse layout: (P,) → (P_new,)) the
        network gets a new parameter and ``optimizer`` is made to hold it in place of the old
        one — pass every optimizer that trains this network.  Caches are keyed on the topology
        value, so every engine and learner sees the new one.
        """
        old_storage = self.storage
        with torch.random.fork_rng(devices=[]):  # with_topology initialises, then overwrites
            moved = self.with_topology(topology)
        old, new_storage = self.parameter, moved.storage
        grad = None if old.grad is None else new_storage.carry(old.grad, old_storage)
        if tuple(old.shape) == new_storage.shape:
            param = old
            with torch.no_grad():
                param.copy_(moved.parameter)
        else:  # autograd keeps a leaf's shape: a new parameter takes its place
            param = nn.Parameter(moved.parameter.detach(), requires_grad=old.requires_grad)
            param.register_hook(self._project_gradient)
            setattr(self, new_storage.parameter, param)
        param.grad = grad
        if optimizer is not None:
            carry_optimizer_state(optimizer, old, param, old_storage, new_storage)
        self.topology, self.storage, self.dynamics = topology, new_storage, moved.dynamics
        for name, buffer in new_storage.buffers().items():
            setattr(self, name, buffer.to(param.device))

    @property
    def n_parameters(self) -> int:
        """Trainable weights: the edges of the topology."""
        return self.topology.n_edges

    def reset_parameters(self, seed: int | None = None) -> None:
        """Draw the initial weights again (``Layout.initial``; ``seed`` fixes them)."""
        p = self.parameter
        with torch.no_grad():
            p.copy_(self.storage.initial(p.dtype, p.device, seed))

    # --------------------------------------------------------------- forward
    def prepare_input(self, x: torch.Tensor) -> torch.Tensor:
        """Validate x and move it to the weights' dtype and device (``Dynamics.check_input``)."""
        return self.dynamics.check_input(x, self.parameter.dtype, self.parameter.device)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """The outputs y = S_T[outputs], shape (B, O), for x of shape (B, I) or (T, B, I)."""
        requires_x_grad = isinstance(x, torch.Tensor) and x.requires_grad
        x = self.prepare_input(x)
        theta, storage, dyn = self.parameter, self.storage, self.dynamics
        if not torch.is_grad_enabled() or not (theta.requires_grad or requires_x_grad):
            return storage.output(dyn, theta, x)
        engine = storage.engine(self.grad)
        if self.grad == "autograd":  # an ordinary graph: double backward, torch.compile
            storage.check_memory(engine, dyn, dyn.batch_size(x), theta.element_size())
            return storage.differentiable_output(dyn, theta, x)
        if requires_x_grad and not engine.provides_input_grad:
            raise ValueError(
                f"the {engine.name!r} engine computes the weights' gradient only, but x requires "
                "grad; use grad='bptt' or grad='autograd' for input gradients, or pass x.detach()"
            )
        # the memory guard runs inside the bridge (Layout.bind), on plain tensors
        return protocol.apply(storage.bind(engine, dyn), {storage.parameter: theta}, x)

    def prepare_sequence(self, x: torch.Tensor) -> torch.Tensor:
        """Validate a sequence x of shape (L, B, I) and move it to the weights' dtype and
        device."""
        I = self.topology.n_inputs
        if not isinstance(x, torch.Tensor):
            raise TypeError(f"x must be a torch.Tensor, got {type(x).__name__}")
        if x.dim() != 3 or x.shape[2] != I or x.shape[0] < 1:
            raise ValueError(
                f"a sequence x must have shape (L, B, {I}) with L >= 1 (L elements, a batch of B, "
                f"{I} inputs), got {tuple(x.shape)}"
            )
        L, B = x.shape[0], x.shape[1]
        theta = self.parameter
        flat = self.dynamics.check_input(x.reshape(L * B, I), theta.dtype, theta.device)
        return flat.reshape(L, B, I)

    def initial_state(self, batch: int) -> torch.Tensor:
        """h = 0: the free neurons' state before the first element of a stream, (B, F)."""
        theta = self.parameter
        return torch.zeros(batch, self.topology.n_free, dtype=theta.dtype, device=theta.device)

    def unroll(
        self, x: torch.Tensor, state: torch.Tensor | object | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Run a sequence x (L, B, I): ``ticks`` ticks per element, the hidden and output states
        carried over from element to element.  Returns y (L, B, O), the outputs after each
        element, and the state h (B, F) of the free neurons after the last one; passing it back
        as ``state`` continues the stream exactly (default: h = 0; an object with an ``h``
        attribute, such as a ``SequenceState``, passes its h).  With gradients enabled and the
        weights requiring grad, y is differentiable by autograd (an ordinary graph); for the
        forward-only or reciprocal gradient use ``meshprop.sequence_gradient``."""
        x = self.prepare_sequence(x)
        B, F = x.shape[1], self.topology.n_free
        theta = self.parameter
        if state is not None and not isinstance(state, torch.Tensor) and hasattr(state, "h"):
            state = state.h
        if state is None:
            h = self.initial_state(B)
        elif not isinstance(state, torch.Tensor) or tuple(state.shape) != (B, F):
            got = tuple(state.shape) if isinstance(state, torch.Tensor) else type(state).__name__
            raise ValueError(
                f"state must be the (B, F) = ({B}, {F}) free-neuron state returned by unroll, "
                f"got {got}"
            )
        else:
            h = state.to(device=theta.device, dtype=theta.dtype)
        return self.storage.unroll(self.dynamics, theta, x, h)

    @torch.no_grad()
    def trajectory(self, x: torch.Tensor) -> torch.Tensor:
        """Every state S_0..S_T of the whole network, shape (T+1, B, N)."""
        return self.storage.trajectory(self.dynamics, self.parameter, self.prepare_input(x))

    def extra_repr(self) -> str:
        act = self.activation if isinstance(self.activation, str) else "per-neuron"
        return (
            f"{self.topology!r}, ticks={self.ticks}, activation={act!r}, "
            f"output_activation={self.output_activation!r}, grad={self.grad!r}"
            + ("" if self.layout == "dense" else f", layout={self.layout!r}")
        )


#: optimizer state keys whose initial value is not 0, with the param-group option giving it
_INITIAL_STATE = {"sum": "initial_accumulator_value"}  # Adagrad


def carry_optimizer_state(
    optimizer: torch.optim.Optimizer,
    old: torch.Tensor,
    param: torch.Tensor,
    before: Layout,
    after: Layout,
) -> None:
    """Remap ``optimizer``'s per-weight state of ``old`` from storage ``before`` to ``after``,
    as the state of ``param`` (the same tensor, or the one that replaces it, which the
    optimizer is then made to hold).  Kept edges keep their state, new edges get the initial
    value.  Where ``param`` replaced ``old`` and the optimizer already holds it, the state was
    remapped with it (``MeshNet.rewire_`` given this optimizer): nothing to do.  Remapping a
    state that kept its shape twice changes nothing (kept edges keep, others are reset)."""
    if param is not old and any(p is param for g in optimizer.param_groups for p in g["params"]):
        return
    group = next((g for g in optimizer.param_groups if any(p is old for p in g["params"])), None)
    if group is None:
        raise ValueError("the optimizer does not hold this network's weights: cannot remap it")
    if param is not old:
        group["params"] = [param if p is old else p for p in group["params"]]
    state = optimizer.state.pop(old, {})
    kept = None
    for key, value in list(state.items()):
        if not isinstance(value, torch.Tensor) or tuple(value.shape) != before.shape:
            continue  # scalar state (Adam's step) is the optimizer's, not the weights'
        carried = after.carry(value, before)
        initial = float(group.get(_INITIAL_STATE[key], 0.0)) if key in _INITIAL_STATE else 0.0
        if initial:  # new edges start at the initial value, not 0
            if kept is None:
                ones = value.new_ones(before.topology.n_edges)
                kept = after.carry(before.from_edge_values(ones), before)
            every = after.from_edge_values(value.new_ones(after.topology.n_edges))
            carried = carried + initial * (every - kept)
        state[key] = carried
    if state:
        optimizer.state[param] = state


def gradient(
    net: MeshNet,
    x: torch.Tensor,
    target: torch.Tensor,
    loss: str | LossFn = "cross_entropy",
    method: str | GradientEngine | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The loss and its gradient with respect to the stored weights of ``net`` on a batch, by
    ``method``: dE/dA (N×N, zero outside the mask) for the dense layout, dE/dweight (P,) in
    ``topology.edges`` order for the sparse one.

    ``method`` defaults to ``net.grad``.  The parameter's ``.grad`` is left untouched.  The
    engine's memory is checked against ``meshprop.memory``'s limit first (``MemoryLimitError``
    when it does not fit).  With ``method="auto"`` the engine used is logged and kept in
    ``meshprop.get_engine("auto").last_choice``.
    """
    storage, theta = net.storage, net.parameter
    engine = storage.engine(net.grad if method is None else method)
    x = net.prepare_input(x)
    batch = net.dynamics.batch_size(x)
    check_target(loss, target, batch, net.topology.n_outputs)
    target = target.to(theta.device)
    value, grads = protocol.value_and_grad(
        storage.bind(engine, net.dynamics), {storage.parameter: theta}, x, target, loss
    )
    return value, grads[storage.parameter]
