"""A diagram's three gradient methods, each a :class:`meshprop.protocol.VJPFunction`.

The function is y = D(θ, x): x the diagram's inputs over T steps, (T, B, Σ input widths) with
the inputs side by side in the order of ``input_names``; y its outputs, (T, B, Σ output widths)
likewise; θ the diagram's parameters keyed as ``named_parameters()`` names them ("block.param").

* ``"reciprocal"`` (paper 004): the forward run keeps what every reciprocal block needs
  (``Block.record``); the backward pass feeds ∂L/∂y(k) into the reciprocal network (rule 6) and
  runs it backward in time (the causal implementation of the advances, §3.2); every weight's
  gradient is Σ_k x(k)ᵀ δ(k) (Eq. 1), accumulated by the reciprocal blocks, and the reciprocal
  network's outputs are ∂J/∂x(k).  Memory O(T · signals).
* ``"forward"``: the sensitivities ∂s(k)/∂θ of every signal carried forward with the state (RTRL;
  paper 000's forward-only idea applied to a diagram); the forward pass keeps ∂y(k)/∂θ of the
  outputs and the backward pass contracts them with ∂L/∂y(k).  Parameter gradients only.
  Memory O(B · P · (signals + T · outputs)).
* ``"autograd"``: PyTorch autograd over the unrolled simulation: the oracle.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import torch

from .block import Block, Params, ReciprocalBlock, Slots, Tape
from .graph import Graph
from .simulate import simulate, stack, walk

__all__ = [
    "DIAGRAM_METHODS",
    "AutogradMethod",
    "DiagramFunction",
    "ForwardMethod",
    "ReciprocalMethod",
    "bind",
    "pack",
    "unpack",
]

DIAGRAM_METHODS = ("reciprocal", "autograd", "forward")


def pack(signals: Mapping[str, torch.Tensor], names: Sequence[str]) -> torch.Tensor:
    """The signals (T, B, width, …) named ``names`` side by side on the width axis."""
    if len(names) == 1:
        return signals[names[0]]
    return torch.cat([signals[n] for n in names], dim=2)


def unpack(x: torch.Tensor, names: Sequence[str], widths: Sequence[int]) -> dict[str, torch.Tensor]:
    """The inverse of :func:`pack`."""
    if len(names) == 1:
        return {names[0]: x}
    return dict(zip(names, torch.split(x, list(widths), dim=2), strict=True))


class DiagramFunction:
    """A diagram (with optional initial states) as a function y = D(θ, x) of packed signals."""

    name: ClassVar[str]
    #: whether ``backward`` also returns dE/dx.
    provides_input_grad: bool

    def __init__(
        self, diagram: Graph, initial_states: Mapping[str, torch.Tensor] | None = None
    ) -> None:
        self.diagram = diagram
        self.initial_states = initial_states

    def feeds(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        d = self.diagram
        return unpack(x, d.input_names, d.input_widths())

    def outputs(self, y: torch.Tensor) -> dict[str, torch.Tensor]:
        d = self.diagram
        return unpack(y, d.output_names, d.output_widths())

    def forward(self, params: Params, x: torch.Tensor) -> tuple[torch.Tensor, Any]:
        raise NotImplementedError

    def backward(
        self, params: Params, x: torch.Tensor, saved: Any, grad_y: torch.Tensor
    ) -> tuple[dict[str, torch.Tensor], torch.Tensor | None]:
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"<diagram gradient method {self.name!r}>"


class ReciprocalMethod(DiagramFunction):
    """Paper 004: the reciprocal network run backward in time."""

    name = "reciprocal"
    provides_input_grad = True

    def forward(self, params, x):
        d = self.diagram
        with torch.no_grad():
            outs, saved = simulate(
                d, self.feeds(x), d.block_params(params), self.initial_states, record=True
            )
        return pack(outs, d.output_names), saved

    def backward(self, params, x, saved, grad_y):
        d = self.diagram
        r = d.reciprocal()
        block_params = d.block_params(params)
        tapes = {
            n: Tape(block_params[n], saved.get(n, ()))
            for n, b in r.blocks.items()
            if isinstance(b, ReciprocalBlock)
        }
        with torch.no_grad():  # rule 6: the outputs become inputs, fed with ∂L/∂y(k)
            deltas, _ = simulate(r, self.outputs(grad_y), tapes, reverse=True)
        grads = {key: torch.zeros_like(p) for key, p in params.items()}
        keys = d.parameter_keys()
        for n, tape in tapes.items():
            for local, g in tape.grads.items():
                key = keys[n][local]
                if key in grads:
                    grads[key] += g
        return grads, pack(deltas, d.input_names)


class AutogradMethod(DiagramFunction):
    """PyTorch autograd over the unrolled simulation (the oracle)."""

    name = "autograd"
    provides_input_grad = True

    def forward(self, params, x):
        d = self.diagram
        with torch.enable_grad():
            leaves = {key: p.detach().requires_grad_(True) for key, p in params.items()}
            x_leaf = x.detach().requires_grad_(True)
            outs, _ = simulate(d, self.feeds(x_leaf), d.block_params(leaves), self.initial_states)
            y = pack(outs, d.output_names)
        return y.detach(), (y, x_leaf, leaves)

    def backward(self, params, x, saved, grad_y):
        y, x_leaf, leaves = saved
        wrt = [x_leaf, *leaves.values()]
        grads = torch.autograd.grad(y, wrt, grad_y, allow_unused=True) if y.requires_grad else None
        if grads is None:  # y depends on neither x nor θ
            grads = [None] * len(wrt)
        zeros_if_none = [
            torch.zeros_like(t) if g is None else g for t, g in zip(wrt, grads, strict=True)
        ]
        return dict(zip(leaves, zeros_if_none[1:], strict=True)), zeros_if_none[0]


@dataclass
class Tangents:
    """Steps of the forward method: every signal is a pair (s(k), ∂s(k)/∂θ of shape (B, w, P))."""

    feeds: Mapping[str, torch.Tensor]
    args: Mapping[str, Params]
    slots: Mapping[str, Slots]
    size: int

    def init(self, name, block: Block, batch, dtype, device, initial):
        state = block.init_state(batch, dtype, device, initial)
        if state is None:
            return None
        return state, block.init_tangent(batch, self.size, dtype, device)

    def feed(self, name, k):
        x = self.feeds[name][k]
        return x, x.new_zeros(*x.shape, self.size)

    def placeholder(self, width, batch, dtype, device):
        value = torch.zeros(batch, width, dtype=dtype, device=device)
        return value, value.new_zeros(batch, width, self.size)

    def outputs(self, name, block: Block, inputs, state, k, final=True):
        values, tangents = _unzip(inputs)
        s, ts = state if state is not None else (None, None)
        outs, touts = block.tangent_outputs(
            self.args[name], values, tangents, s, ts, k, self.slots[name]
        )
        return list(zip(outs, touts, strict=True))

    def update(self, name, block: Block, inputs, state, k):
        values, tangents = _unzip(inputs)
        s, ts = state
        p = self.args[name]
        return block.update(p, values, s, k), block.tangent_update(p, values, tangents, s, ts, k)


def _unzip(pairs):
    if pairs is None:
        return None, None
    return [v for v, _ in pairs], [t for _, t in pairs]


class ForwardMethod(DiagramFunction):
    """Sensitivities carried forward in time (RTRL), contracted with ∂L/∂y(k) afterwards."""

    name = "forward"
    provides_input_grad = False

    def slots(self, params: Params) -> tuple[dict[str, Slots], int]:
        offsets, size = {}, 0
        for key, p in params.items():
            offsets[key] = size
            size += p.numel()
        per_block = {
            bn: Slots({local: offsets[key] for local, key in keys.items() if key in offsets}, size)
            for bn, keys in self.diagram.parameter_keys().items()
        }
        return per_block, size

    def forward(self, params, x):
        d = self.diagram
        slots, size = self.slots(params)
        with torch.no_grad():
            stepper = Tangents(self.feeds(x), d.block_params(params), slots, size)
            results = walk(d, stepper.feeds, stepper, self.initial_states)
        values = stack({n: [v for v, _ in pairs] for n, pairs in results.items()})
        tangents = stack({n: [t for _, t in pairs] for n, pairs in results.items()})
        return pack(values, d.output_names), pack(tangents, d.output_names)

    def backward(self, params, x, saved, grad_y):
        flat = torch.einsum("tbi,tbip->p", grad_y, saved)
        grads, offset = {}, 0
        for key, p in params.items():
            grads[key] = flat[offset : offset + p.numel()].reshape(p.shape).clone()
            offset += p.numel()
        return grads, None


_METHODS: dict[str, type[DiagramFunction]] = {
    "reciprocal": ReciprocalMethod,
    "autograd": AutogradMethod,
    "forward": ForwardMethod,
}


def check_method(method: object) -> str:
    """``method`` if it names a diagram gradient method, else a ValueError listing them."""
    if not isinstance(method, str) or method not in _METHODS:
        raise ValueError(f"unknown method {method!r}; expected one of {DIAGRAM_METHODS}")
    return method


def bind(
    diagram: Graph, method: str, initial_states: Mapping[str, torch.Tensor] | None = None
) -> DiagramFunction:
    """``diagram``'s gradient ``method`` as a VJP function of its parameters."""
    return _METHODS[check_method(method)](diagram, initial_states)
