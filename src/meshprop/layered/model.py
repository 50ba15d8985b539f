"""MLP: a layered network A[N_0, …, N_L] (paper 002 §2) as a ``torch.nn.Module``.

``mlp.weights[h-1]`` is W_h, an nn.Parameter of shape N_h × (N_{h−1}+1) whose last column is the
bias (paper 002 Remark 1).  ``mlp(x)`` runs the two-step forward rule Y_h = W_h X_{h−1},
X_h = σ_h(Y_h) on a batch; ``loss.backward()`` reaches the weights through the rule named by
``grad`` (a ``torch.autograd.Function`` whose backward is that rule), or through ordinary
autograd with ``grad="autograd"``.  ``mlp.gradient`` calls a rule directly.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn

from .. import protocol
from ..activations import ACTIVATIONS, NeuronActivations
from ..losses import LossFn, check_target
from ..mesh import MeshNet
from ..topology import Topology
from .conversion import adjacency_to_weights, check_layered, infer_layer_sizes, weights_to_adjacency
from .rules import RULES, bind, get_rule, weight_names

__all__ = ["GRAD_MODES", "MLP"]

#: what ``MLP(grad=...)`` accepts: every layered rule, or PyTorch autograd.
GRAD_MODES: tuple[str, ...] = (*RULES, "autograd")


def _layer_activations(
    activation: str | Sequence[str], output_activation: str | None, depth: int
) -> tuple[str, ...]:
    if isinstance(activation, str):
        names = [activation] * depth
    else:
        names = list(activation)
        if len(names) != depth:
            raise ValueError(
                f"activation must be one name or one name per layer (L={depth}), "
                f"got {len(names)} names"
            )
    if output_activation is not None:
        names[-1] = output_activation
    for h, name in enumerate(names, start=1):
        if not isinstance(name, str) or name not in ACTIVATIONS:
            raise ValueError(
                f"unknown activation {name!r} for layer {h}; expected one of {sorted(ACTIVATIONS)}"
            )
    return tuple(names)


def _check_sizes(sizes: Sequence[int]) -> tuple[int, ...]:
    if isinstance(sizes, (str, bytes)) or not isinstance(sizes, Sequence):
        raise TypeError(f"sizes must be a sequence of integers [N_0, …, N_L], got {sizes!r}")
    out = []
    for k, s in enumerate(sizes):
        if isinstance(s, bool) or not isinstance(s, int):
            raise TypeError(f"sizes[{k}] must be an integer, got {type(s).__name__} {s!r}")
        if s < 1:
            raise ValueError(f"sizes[{k}] must be >= 1, got {s}")
        out.append(int(s))
    if len(out) < 2:
        raise ValueError(f"an MLP needs at least an input and an output size, got {list(sizes)}")
    return tuple(out)


class MLP(nn.Module):
    """A fully connected layered network A[N_0, …, N_L].

    Args:
        sizes: [N_0, …, N_L], input size first, output size last.
        activation: one name for every layer, or L names (layers 1..L).
        output_activation: overrides layer L's activation (e.g. "identity" for logits).
        bias: append the bias column to every W_h (paper 002 Remark 1).
        grad: what ``loss.backward()`` uses: "two_step", "tensor_batch" or "autograd".
        dtype, device: of the weights.
        seed: seeds the initial weights (default: torch's global generator).

    Weights start uniform in ±1/√(N_{h−1}+1) (nn.Linear's default, the same law as MeshNet's
    in-degree rule on ``Topology.layered``).
    """

    def __init__(
        self,
        sizes: Sequence[int],
        activation: str | Sequence[str] = "relu",
        output_activation: str | None = None,
        bias: bool = True,
        grad: str = "two_step",
        dtype: torch.dtype | None = None,
        device: torch.device | str | None = None,
        seed: int | None = None,
    ) -> None:
        super().__init__()
        if not isinstance(bias, bool):
            raise TypeError(f"bias must be a bool, got {type(bias).__name__}")
        self.sizes = _check_sizes(sizes)
        self.activations = _layer_activations(activation, output_activation, self.depth)
        self.activation = activation if isinstance(activation, str) else tuple(activation)
        self.output_activation = output_activation
        self.bias = bias
        self._topology = Topology.layered(list(self.sizes), bias=bias)
        self.grad = grad
        self.weights = nn.ParameterList(
            nn.Parameter(torch.empty(n_out, n_in + int(bias), dtype=dtype, device=device))
            for n_in, n_out in zip(self.sizes[:-1], self.sizes[1:], strict=True)
        )
        self.reset_parameters(seed)

    # ---------------------------------------------------------------- set-up
    @property
    def depth(self) -> int:
        """L: the number of weight layers."""
        return len(self.sizes) - 1

    @property
    def grad(self) -> str:
        return self._grad

    @grad.setter
    def grad(self, mode: str) -> None:
        if mode not in GRAD_MODES:
            raise ValueError(f"unknown grad {mode!r} for an MLP; expected one of {GRAD_MODES}")
        self._grad = mode

    @property
    def n_parameters(self) -> int:
        """Trainable weights: Σ_h N_h (N_{h−1} + bias), the edges of ``to_mesh()``'s topology."""
        return sum(W.numel() for W in self.weights)

    def reset_parameters(self, seed: int | None = None) -> None:
        generator = None if seed is None else torch.Generator().manual_seed(int(seed))
        with torch.no_grad():
            for W in self.weights:
                bound = 1.0 / math.sqrt(W.shape[1])
                uniform = torch.rand(W.shape, generator=generator, dtype=torch.float64)
                W.copy_(((2 * uniform - 1) * bound).to(W.dtype))

    # --------------------------------------------------------------- forward
    def prepare_input(self, x: torch.Tensor) -> torch.Tensor:
        """Validate x of shape (B, N_0) and move it to the weights' dtype and device."""
        if not isinstance(x, torch.Tensor):
            raise TypeError(f"x must be a torch.Tensor, got {type(x).__name__}")
        if x.dim() != 2 or x.shape[1] != self.sizes[0]:
            raise ValueError(
                f"x must have shape (B, {self.sizes[0]}) for an MLP with {self.sizes[0]} inputs, "
                f"got {tuple(x.shape)}"
            )
        if x.shape[0] < 1:
            raise ValueError("x holds an empty batch (B = 0)")
        if x.dtype == torch.bool or x.is_complex():
            raise TypeError(f"x must hold real numbers, got dtype {x.dtype}")
        W = self.weights[0]
        x = x.to(device=W.device, dtype=W.dtype)
        if not torch.isfinite(x).all():
            bad = (~torch.isfinite(x)).nonzero()[0].tolist()
            raise ValueError(f"x contains NaN or inf (first at index {tuple(bad)})")
        return x

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """The outputs X_L, shape (B, N_L), by the two-step forward rule (paper 002 Eq. 1)."""
        x = self.prepare_input(x)
        weights = tuple(self.weights)
        needs_grad = torch.is_grad_enabled() and (
            x.requires_grad or any(W.requires_grad for W in weights)
        )
        if not needs_grad:
            return RULES["two_step"].forward(weights, x, self.activations, self.bias)[0]
        if self.grad == "autograd":
            return self._autograd_forward(x)
        function = bind(self.grad, self.activations, self.bias)
        return protocol.apply(function, dict(self.named_parameters()), x)

    def _autograd_forward(self, x: torch.Tensor) -> torch.Tensor:
        """The same forward from plain differentiable torch operations (the autograd oracle)."""
        X = x
        for W, name in zip(self.weights, self.activations, strict=True):
            Y = X @ W[:, : X.shape[1]].T
            if self.bias:
                Y = Y + W[:, -1]
            X = NeuronActivations((name,) * W.shape[0]).value(Y)
        return X

    def gradient(
        self,
        x: torch.Tensor,
        target: torch.Tensor,
        loss: str | LossFn = "cross_entropy",
        rule: str | None = None,
    ) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """The loss and [dE/dW_1, …, dE/dW_L] on a batch, by ``rule`` (default: ``self.grad``
        when it names a rule, else "two_step").  Gradients in ``weights`` are left untouched.

        dE/dy comes from ``meshprop.losses.loss_and_grad``, so a loss means the same thing for
        an MLP and a MeshNet.
        """
        if rule is None:
            rule = self.grad if self.grad in RULES else "two_step"
        chosen = get_rule(rule)
        x = self.prepare_input(x)
        check_target(loss, target, x.shape[0], self.sizes[-1])
        target = target.to(self.weights[0].device)
        function = bind(chosen.name, self.activations, self.bias)
        value, grads = protocol.value_and_grad(
            function, dict(self.named_parameters()), x, target, loss
        )
        return value, [grads[name] for name in weight_names(self.depth)]

    # ------------------------------------------------------------ two views
    @property
    def topology(self) -> Topology:
        """``Topology.layered(sizes, bias)``: this network as a mesh mask (also gives
        ``n_inputs`` / ``n_outputs`` the way a MeshNet's topology does)."""
        return self._topology

    def to_mesh(self, grad: str = "fop") -> MeshNet:
        """The MeshNet computing the same outputs: ``Topology.layered``, ticks = L, the same
        activations, W_h in the blocks of A and the bias column on the bias neuron's row."""
        topo = self.topology
        hidden, last = set(self.activations[:-1]), self.activations[-1]
        if len(hidden) <= 1:  # one hidden activation: store it as MeshNet's two names
            activation: str | list[str] = hidden.pop() if hidden else last
            output_activation = None if activation == last else last
        else:  # one name per neuron; clamped neurons' entries are ignored by MeshNet
            activation = ["identity"] * topo.n_clamped + [
                name
                for size, name in zip(self.sizes[1:], self.activations, strict=True)
                for _ in range(size)
            ]
            output_activation = None
        W0 = self.weights[0]
        net = MeshNet(
            topo,
            ticks=self.depth,
            activation=activation,
            output_activation=output_activation,
            grad=grad,
            dtype=W0.dtype,
            device=W0.device,
        )
        with torch.no_grad():
            A = weights_to_adjacency([W.detach() for W in self.weights], self.sizes, self.bias)
            net.A.copy_(A)
        return net

    @classmethod
    def from_mesh(cls, net: MeshNet, grad: str = "two_step") -> MLP:
        """The MLP whose ``to_mesh()`` is ``net``.  Raises ValueError, naming an offending edge,
        when the mask is not a fully connected layered network, and when ticks ≠ L or a layer
        mixes activations."""
        if not isinstance(net, MeshNet):
            raise TypeError(f"expected a meshprop.MeshNet, got {type(net).__name__}")
        topo = net.topology
        sizes = infer_layer_sizes(topo)
        check_layered(topo, sizes)
        depth = len(sizes) - 1
        if net.ticks != depth:
            raise ValueError(
                f"the mesh is layered with L={depth} layers but runs {net.ticks} ticks; "
                f"an MLP view needs ticks = L = {depth}"
            )
        names = net.dynamics.activations.names  # one per free neuron, in neuron order
        layer_names: list[str] = []
        start = 0
        for h, size in enumerate(sizes[1:], start=1):
            block = set(names[start : start + size])
            if len(block) != 1:
                raise ValueError(
                    f"layer {h} of the mesh mixes activations {sorted(block)}; an MLP has one "
                    "activation per layer"
                )
            layer_names.append(block.pop())
            start += size
        A = net.A.detach()
        mlp = cls(
            sizes, activation=layer_names, bias=topo.bias, grad=grad, dtype=A.dtype, device=A.device
        )
        with torch.no_grad():
            for W, W_h in zip(mlp.weights, adjacency_to_weights(A, sizes, topo.bias), strict=True):
                W.copy_(W_h)
        return mlp

    def extra_repr(self) -> str:
        return (
            f"sizes={list(self.sizes)}, activations={list(self.activations)}, bias={self.bias}, "
            f"grad={self.grad!r}"
        )
