"""Rule 6 — outputs become inputs (paper 004 §2): the sources and sinks of a network.

An output y(k) of the forward network becomes an input of the reciprocal network, fed at every
step with ∂L/∂y(k) (−2e(k) for the squared error); read the other way, an input x(k) becomes an
output collecting ∂J/∂x(k).  A constant source (e.g. the bias 1) becomes a sink that discards
what reaches it, and an output port that feeds nothing becomes a zero source (no error reaches
it).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from .block import Block, Slots, check_width

__all__ = ["Constant", "Discard", "ErrorInput", "Input", "InputGradient", "Output", "ZeroSource"]


class Input(Block):
    """An external input x(k) of the network; its values come from the run's inputs."""

    kind = "input"
    rule = "6"

    def __init__(self, width: int) -> None:
        super().__init__([], [width])

    def outputs(self, p, inputs, state, k):  # pragma: no cover - the simulator feeds inputs
        raise RuntimeError("Input blocks are fed by the simulator")

    def reciprocal(self) -> Block:
        return InputGradient(self.out_widths[0])

    @property
    def label(self) -> str:
        return self.name


class Output(Block):
    """A network output y(k): a sink whose signal a run returns."""

    kind = "output"
    rule = "6"
    is_result = True

    def __init__(self, width: int) -> None:
        super().__init__([width], [])

    def outputs(self, p, inputs, state, k):
        return []

    def tangents(self, p, inputs, tangents, state, tstate, slots: Slots):
        return []

    def reciprocal(self) -> Block:
        return ErrorInput(self.in_widths[0])

    @property
    def label(self) -> str:
        return self.name


class ErrorInput(Input):
    """Rule 6: an output y of the forward network becomes this input, fed with ∂L/∂y(k)."""

    kind = "error_input"

    def reciprocal(self) -> Block:
        return Output(self.out_widths[0])

    @property
    def label(self) -> str:
        return f"∂L/∂{self.name}"


class InputGradient(Output):
    """Rule 6 read backward: a forward input x becomes an output collecting ∂J/∂x(k)."""

    kind = "input_gradient"

    def reciprocal(self) -> Block:
        return Input(self.in_widths[0])

    @property
    def label(self) -> str:
        return f"∂J/∂{self.name}"


class Constant(Block):
    """A constant signal c (e.g. the bias 1).  Its reciprocal discards what reaches it."""

    kind = "constant"
    rule = "6"
    value: torch.Tensor

    def __init__(
        self, value: float | Sequence[float] | torch.Tensor, width: int | None = None
    ) -> None:
        value = torch.as_tensor(value, dtype=torch.float64).reshape(-1)
        if width is not None:
            check_width(width, "width")
            if value.numel() == 1:
                value = value.expand(width).clone()
            elif value.numel() != width:
                raise ValueError(f"constant has {value.numel()} values but width={width}")
        super().__init__([], [value.numel()])
        self.register_buffer("value", value)

    def init_state(self, batch, dtype, device, initial=None):
        super().init_state(batch, dtype, device, initial)
        return self.value.to(dtype=dtype, device=device).expand(batch, -1)

    def outputs(self, p, inputs, state, k):
        return [state]

    def tangents(self, p, inputs, tangents, state, tstate, slots: Slots):
        return [state.new_zeros(state.shape[0], self.out_widths[0], slots.size)]

    def reciprocal(self) -> Block:
        return Discard(self.out_widths[0])

    @property
    def label(self) -> str:
        v = self.value
        return f"{float(v[0]):g}" if bool((v == v[0]).all()) else "c"


class Discard(Output):
    """What flows back into a constant source is not needed: a sink whose signal is dropped."""

    kind = "discard"
    is_result = False

    def reciprocal(self) -> Block:
        return ZeroSource(self.in_widths[0])

    @property
    def label(self) -> str:
        return "⊥"


class ZeroSource(Constant):
    """A zero signal: the reciprocal of an unconnected forward output (no error reaches it)."""

    kind = "zero"

    def __init__(self, width: int) -> None:
        super().__init__(0.0, width)

    def reciprocal(self) -> Block:
        return Discard(self.out_widths[0])
