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
from .engines import GradientEngine, bind, check_memory, get_engine
from .engines.autograd import differentiable_output
from .engines.sequence import SequenceState, unroll_states
from .losses import LossFn, check_target
from .topology import Topology

__all__ = ["MeshNet", "gradient"]


def engine_output(
    engine: GradientEngine, dyn: Dynamics, A: torch.Tensor, x: torch.Tensor
) -> torch.Tensor:
    """y through ``engine`` as a differentiable function of A (and of x where the engine can)."""
    function = bind(engine, dyn)
    if x.requires_grad and not function.provides_input_grad:
        raise ValueError(
            f"the {engine.name!r} engine computes dE/dA only, but x requires grad; use "
            "grad='bptt' or grad='autograd' for input gradients, or pass x.detach()"
        )
    check_memory(engine, dyn, dyn.batch_size(x), A.element_size())  # before any allocation
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
    ) -> None:
        super().__init__()
        if not isinstance(topology, Topology):
            raise TypeError(f"topology must be a meshprop.Topology, got {type(topology).__name__}")
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
        self.register_buffer("mask", topology.mask, persistent=False)
        A = torch.zeros(topology.n_neurons, topology.n_neurons, dtype=dtype, device=device)
        self.A = nn.Parameter(A)
        self.reset_parameters(seed)
        self.A.register_hook(self._mask_gradient)

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
        get_engine(method)  # validates the name
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
            dtype=self.A.dtype,
            device=self.A.device,
        )
        with torch.no_grad():
            new.A.copy_(self.A.detach() * new.mask.to(self.A.dtype))
        return new

    @property
    def n_parameters(self) -> int:
        """Trainable weights: the edges of the topology."""
        return self.topology.n_edges

    def reset_parameters(self, seed: int | None = None) -> None:
        generator = None if seed is None else torch.Generator().manual_seed(int(seed))
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
        """Validate x and move it to A's dtype and device (see ``Dynamics.check_input``)."""
        return self.dynamics.check_input(x, self.A.dtype, self.A.device)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """The outputs y = S_T[outputs], shape (B, O), for x of shape (B, I) or (T, B, I)."""
        requires_x_grad = isinstance(x, torch.Tensor) and x.requires_grad
        x = self.prepare_input(x)
        if not torch.is_grad_enabled() or not (self.A.requires_grad or requires_x_grad):
            return self.dynamics.output(self.A, x)
        if self.grad == "autograd":
            check_memory(get_engine("autograd"), self.dynamics, x.shape[-2], x.element_size())
            return differentiable_output(self.dynamics, self.A, x)
        return engine_output(get_engine(self.grad), self.dynamics, self.A, x)

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
        return self.dynamics.trajectory(self.A, self.prepare_input(x))

    def extra_repr(self) -> str:
        act = self.activation if isinstance(self.activation, str) else "per-neuron"
        return (
            f"{self.topology!r}, ticks={self.ticks}, activation={act!r}, "
            f"output_activation={self.output_activation!r}, grad={self.grad!r}"
        )


def gradient(
    net: MeshNet,
    x: torch.Tensor,
    target: torch.Tensor,
    loss: str | LossFn = "cross_entropy",
    method: str | GradientEngine | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The loss and dE/dA (N×N, zero outside the mask) of ``net`` on a batch, by ``method``.

    ``method`` defaults to ``net.grad``.  ``net.A.grad`` is left untouched.  The engine's memory
    is checked against ``meshprop.memory``'s limit first (``MemoryLimitError`` when it does not
    fit).  With ``method="auto"`` the engine used is logged and kept in
    ``meshprop.get_engine("auto").last_choice``.
    """
    engine = get_engine(net.grad if method is None else method)
    x = net.prepare_input(x)
    check_target(loss, target, net.dynamics.batch_size(x), net.topology.n_outputs)
    target = target.to(net.A.device)
    check_memory(engine, net.dynamics, net.dynamics.batch_size(x), net.A.element_size())
    value, grads = protocol.value_and_grad(
        bind(engine, net.dynamics), {"A": net.A}, x, target, loss
    )
    return value, grads["A"]
