"""The block interface shared by a discrete-time network and its reciprocal (paper 004 §2).

A block maps the signals on its input ports at time k to the signals on its output ports at time
k; a signal is a tensor of shape (B, width).  A block with ``feedthrough = False`` (the unit delay)
computes its outputs from its state alone, which is what lets a loop through it be simulated.

Every block provides, for the one stepping loop of :mod:`meshprop.diagram.simulate`:

* ``outputs(p, inputs, state, k)`` and ``update(...)``: one step of the simulation (outputs at k,
  then the state for k+1), ``p`` being the block's parameters by local name (the names of the
  block's own ``named_parameters()``);
* ``record(...)``: the same step, also returning what the block's reciprocal needs at k (the input
  x(k) of a weight for Eq. 1, φ′(a(k)) for rule 3, the vector–Jacobian product of F at k for rule
  4), so that the reciprocal pass never runs a forward again;
* ``tangent_outputs(...)`` and ``tangent_update(...)``: the step applied to the sensitivities
  ∂s(k)/∂θ of shape (B, width, P) (the "forward" gradient method, RTRL on a diagram);
* ``reciprocal()``: the block that replaces it in the reciprocal network.  Each group of paper
  004's six rules lives in one module with the blocks it maps onto each other.

A :class:`ReciprocalBlock` stands for a forward block in the reciprocal network.  During the
backward run its ``p`` is a :class:`Tape`: the forward block's parameters, what its ``record``
saved at every step, and the parameter gradients it accumulates, Σ_k x(k)ᵀ δ(k) (Eq. 1).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar, NamedTuple

import torch
from torch import nn

__all__ = ["Block", "Params", "Port", "ReciprocalBlock", "Slots", "Tape", "check_width"]

#: parameters by name: "block.param" for a diagram, the local name for one block.
Params = Mapping[str, torch.Tensor]
#: the signals on a block's input ports at one step (None for a block without feedthrough).
Inputs = Sequence[torch.Tensor] | None


class Port(NamedTuple):
    """Output port ``index`` of block ``block``."""

    block: str
    index: int = 0  # type: ignore[assignment]  # the field shadows tuple.index


def check_width(value: object, what: str) -> int:
    """``value`` as a port width (an int ≥ 1), or a TypeError/ValueError naming ``what``."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{what} must be an integer, got {type(value).__name__}")
    if value < 1:
        raise ValueError(f"{what} must be >= 1, got {value}")
    return value


@dataclass(frozen=True)
class Slots:
    """Where a block's parameters sit on the flat sensitivity axis of size ``size`` (P)."""

    offsets: Mapping[str, int]
    size: int

    def of(self, local: str) -> int | None:
        """The offset of the block's parameter ``local``, or None when it is not differentiated."""
        return self.offsets.get(local)


@dataclass
class Tape:
    """What a reciprocal block reads and writes during the backward run: its forward block's
    parameters, what the forward block's ``record`` saved at every step, and the gradients of
    the forward block's parameters accumulated over the steps (local names)."""

    params: Params
    saved: Sequence[Any] = ()
    grads: dict[str, torch.Tensor] = field(default_factory=dict)

    def at(self, k: int) -> Any:
        """What was saved at step k (None when the forward block saved nothing)."""
        return self.saved[k] if self.saved else None

    def accumulate(self, key: str, value: torch.Tensor) -> None:
        self.grads[key] = value if key not in self.grads else self.grads[key] + value


class Block(nn.Module):
    """A block with ``in_widths`` input ports and ``out_widths`` output ports."""

    kind: ClassVar[str] = "block"
    feedthrough: ClassVar[bool] = True
    #: the construction rule of paper 004 §2 that produces this block's reciprocal.
    rule: ClassVar[str] = ""
    #: True for the sinks whose signal a run returns (outputs, and ∂J/∂x in a reciprocal).
    is_result: ClassVar[bool] = False

    def __init__(self, in_widths: Sequence[int], out_widths: Sequence[int]) -> None:
        super().__init__()
        self.in_widths = tuple(check_width(w, "port width") for w in in_widths)
        self.out_widths = tuple(check_width(w, "port width") for w in out_widths)
        self.name = ""  # set by Diagram.add

    def channel_dependencies(self) -> list[tuple[int, int, int, int]] | None:
        """Which output channels depend on which input channels *at the same step*, as
        (in port, in channel, out port, out channel) tuples; None (the default) means every
        output channel on every input channel (when ``feedthrough``).  Blocks that only move
        channels (a tapped delay line's tap 0, split, concat) say exactly which, so that a loop
        through their other channels is not mistaken for an algebraic loop."""
        return None

    # --------------------------------------------------------------- simulation
    def init_state(
        self,
        batch: int,
        dtype: torch.dtype,
        device: torch.device,
        initial: torch.Tensor | None = None,
    ) -> Any:
        """The state at the first step (None for a block without state)."""
        if initial is not None:
            raise ValueError(f"block {self.name!r} ({self.kind}) has no state to initialise")
        return None

    def outputs(self, p: Any, inputs: Inputs, state: Any, k: int) -> list[torch.Tensor]:
        """The signals on the output ports at step k (differentiable by autograd)."""
        raise NotImplementedError

    def update(self, p: Any, inputs: Inputs, state: Any, k: int) -> Any:
        """The state for step k+1."""
        return state

    def record(self, p: Any, inputs: Inputs, state: Any, k: int) -> tuple[list[torch.Tensor], Any]:
        """``outputs`` and what the reciprocal block needs at step k (None: nothing)."""
        return self.outputs(p, inputs, state, k), None

    # ----------------------------------------------- forward sensitivities (RTRL)
    def init_tangent(self, batch: int, size: int, dtype: torch.dtype, device: torch.device) -> Any:
        """∂state/∂θ at the first step (None for a block without state)."""
        return None

    def tangents(
        self,
        p: Params,
        inputs: Inputs,
        tangents: Inputs,
        state: Any,
        tstate: Any,
        slots: Slots,
    ) -> list[torch.Tensor]:
        """∂(outputs at k)/∂θ, shape (B, width, P) per output port, from those of the inputs."""
        raise NotImplementedError(f"{self.kind} blocks have no forward sensitivities")

    def tangent_outputs(
        self,
        p: Params,
        inputs: Inputs,
        tangents: Inputs,
        state: Any,
        tstate: Any,
        k: int,
        slots: Slots,
    ) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        """The outputs at step k and their sensitivities."""
        outs = self.outputs(p, inputs, state, k)
        return outs, self.tangents(p, inputs, tangents, state, tstate, slots)

    def tangent_update(
        self, p: Params, inputs: Inputs, tangents: Inputs, state: Any, tstate: Any, k: int
    ) -> Any:
        """∂(state for k+1)/∂θ."""
        return tstate

    # ---------------------------------------------------------------- reciprocal
    def reciprocal(self) -> Block:
        """The block that replaces this one in the reciprocal network."""
        raise NotImplementedError

    @property
    def label(self) -> str:
        return self.kind

    def extra_repr(self) -> str:
        return f"in={list(self.in_widths)}, out={list(self.out_widths)}"


class ReciprocalBlock(Block):
    """A block of the reciprocal network standing for ``forward_block``: its input ports carry
    δ for the forward block's output ports and vice versa; its ``p`` is a :class:`Tape`."""

    def __init__(self, forward_block: Block) -> None:
        super().__init__(forward_block.out_widths, forward_block.in_widths)
        self.__dict__["forward_block"] = forward_block  # not a submodule: no parameter copies

    @property
    def forward_block(self) -> Block:
        return self.__dict__["forward_block"]

    def reciprocal(self) -> Block:
        raise NotImplementedError(
            f"{self.kind} is a reciprocal block; take the reciprocal of the forward diagram"
        )
