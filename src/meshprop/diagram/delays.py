"""Rule 5 — delay operators become advance operators (paper 004 §2), and tapped delay lines.

The unit delay a_j(k) = q⁻¹ a_i(k) = a_i(k−1) becomes the unit advance δ_i(k) = q⁺¹ δ_j(k) =
δ_j(k+1).  The reciprocal network is therefore non-causal; it is implemented causally by running
it backward in time (k = T−1, …, 0, §3.2), and on that reversed clock an advance steps exactly
like a delay.

A tapped delay line [x(k) | x(k−1) | … | x(k−K)] is a branching point feeding a chain of K unit
delays (Fig. 3, 4a); rules 2 and 5 turn it into the tapped advance line δ_x(k) = Σ_m δ_m(k+m)
(Eq. 7, and the reciprocal FIR filter w(q⁺¹) of Eq. 13, Fig. 4b).
"""

from __future__ import annotations

import torch

from .block import Block, Slots

__all__ = ["Advance", "Delay", "TappedAdvanceLine", "TappedDelayLine"]


def _initial_state(
    block: Block, width: int, batch: int, dtype, device, initial, form: str
) -> torch.Tensor:
    """Zeros (B, width), or ``initial`` checked to be of that shape."""
    if initial is None:
        return torch.zeros(batch, width, dtype=dtype, device=device)
    initial = torch.as_tensor(initial).to(dtype=dtype, device=device)
    if tuple(initial.shape) != (batch, width):
        raise ValueError(
            f"initial state of {block.name!r} must have shape ({batch}, {width}){form}, "
            f"got {tuple(initial.shape)}"
        )
    return initial


class Delay(Block):
    """Unit delay q⁻¹: y(k) = x(k−1), y(0) = the initial state (zero unless given).
    Rule 5: its reciprocal is the unit advance q⁺¹."""

    kind = "delay"
    feedthrough = False
    rule = "5"

    def __init__(self, width: int) -> None:
        super().__init__([width], [width])

    def init_state(self, batch, dtype, device, initial=None):
        return _initial_state(self, self.in_widths[0], batch, dtype, device, initial, "")

    def outputs(self, p, inputs, state, k):
        return [state]

    def update(self, p, inputs, state, k):
        return inputs[0]

    def init_tangent(self, batch, size, dtype, device):
        return torch.zeros(batch, self.in_widths[0], size, dtype=dtype, device=device)

    def tangents(self, p, inputs, tangents, state, tstate, slots: Slots):
        return [tstate]

    def tangent_update(self, p, inputs, tangents, state, tstate, k):
        return tangents[0]

    def reciprocal(self) -> Block:
        return Advance(self.in_widths[0])

    @property
    def label(self) -> str:
        return "q⁻¹"


class Advance(Delay):
    """Unit advance q⁺¹ (rule 5): δ_i(k) = δ_j(k+1), zero beyond the last step.  On the
    reciprocal network's reversed clock it steps exactly like a unit delay."""

    kind = "advance"

    def reciprocal(self) -> Block:
        return Delay(self.in_widths[0])

    @property
    def label(self) -> str:
        return "q⁺¹"


class TappedDelayLine(Block):
    """y(k) = [x(k) | x(k−1) | … | x(k−K)]: a branching point feeding a chain of K unit delays
    (paper 004 Fig. 3, 4a).  Rules 2 and 5 give its reciprocal, the tapped advance line
    δ_x(k) = Σ_m δ_m(k+m)."""

    kind = "tdl"
    rule = "2+5"

    def __init__(self, width: int, taps: int) -> None:
        if isinstance(taps, bool) or not isinstance(taps, int) or taps < 0:
            raise ValueError(f"taps must be an integer >= 0, got {taps!r}")
        super().__init__([width], [width * (taps + 1)])
        self.taps = taps

    def channel_dependencies(self):
        """Only tap 0, x(k), depends on the input at step k; taps 1..K come from the state."""
        return [(0, c, 0, c) for c in range(self.in_widths[0])]

    def init_state(self, batch, dtype, device, initial=None):
        width = self.in_widths[0] * self.taps
        form = " = [x(-1) | … | x(-K)]"
        return _initial_state(self, width, batch, dtype, device, initial, form)

    def outputs(self, p, inputs, state, k):
        return [torch.cat([inputs[0], state], dim=1)]

    def update(self, p, inputs, state, k):
        return torch.cat([inputs[0], state], dim=1)[:, : self.in_widths[0] * self.taps]

    def init_tangent(self, batch, size, dtype, device):
        w = self.in_widths[0] * self.taps
        return torch.zeros(batch, w, size, dtype=dtype, device=device)

    def tangents(self, p, inputs, tangents, state, tstate, slots: Slots):
        return [torch.cat([tangents[0], tstate], dim=1)]

    def tangent_update(self, p, inputs, tangents, state, tstate, k):
        return torch.cat([tangents[0], tstate], dim=1)[:, : self.in_widths[0] * self.taps]

    def reciprocal(self) -> Block:
        return TappedAdvanceLine(self.in_widths[0], self.taps)

    @property
    def label(self) -> str:
        return f"TDL({self.taps})"


class TappedAdvanceLine(Block):
    """Reciprocal of a tapped delay line (rules 2 and 5): δ_x(k) = Σ_{m=0}^{K} δ_m(k+m).

    Run backward in time, the state s holds, for j = 0..K−1, what the taps already seen
    contribute to δ_x(k−j): output δ_x(k) = δ_0(k) + s_0 and s′_j = s_{j+1} + δ_{j+1}(k).
    """

    kind = "tal"
    rule = "2+5"

    def __init__(self, width: int, taps: int) -> None:
        super().__init__([width * (taps + 1)], [width])
        self.taps = taps

    def channel_dependencies(self):
        """δ_x(k) = δ_0(k) + state: only the tap-0 channels are read at step k."""
        return [(0, c, 0, c) for c in range(self.out_widths[0])]

    def init_state(self, batch, dtype, device, initial=None):
        super().init_state(batch, dtype, device, initial)
        return torch.zeros(batch, self.out_widths[0] * self.taps, dtype=dtype, device=device)

    def outputs(self, p, inputs, state, k):
        w = self.out_widths[0]
        return [inputs[0][:, :w] + state[:, :w]] if self.taps else [inputs[0]]

    def update(self, p, inputs, state, k):
        w = self.out_widths[0]
        if not self.taps:
            return state
        shifted = torch.cat([state[:, w:], state.new_zeros(state.shape[0], w)], dim=1)
        return shifted + inputs[0][:, w:]

    def reciprocal(self) -> Block:
        return TappedDelayLine(self.out_widths[0], self.taps)

    @property
    def label(self) -> str:
        return f"TAL({self.taps})"
