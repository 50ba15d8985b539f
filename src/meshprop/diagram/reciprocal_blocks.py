"""Blocks that appear in reciprocal networks (paper 004 §2, rules 3–6).

The reciprocal network is a linear, time-varying system that runs backward in time: the
simulator steps k = T−1, …, 0.  Seen from that reversed clock a unit advance q⁺¹ is an ordinary
unit delay, so ``Advance`` simply reuses ``Delay``'s step.  Time-varying gains (φ′(a(k)), F′(k)ᵀ)
read the forward signals a(k) from the trace of the forward run, bound with ``bind(trace)``.
Blocks that stand for a trainable forward block accumulate its parameter gradient
Σ_k (forward signal into the block at k) × (reciprocal signal at its output at k) (Eq. 1).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch

from .blocks import Block, Constant, Delay, Input, Output, TappedDelayLine

if TYPE_CHECKING:
    from .simulate import Trace

__all__ = [
    "Advance",
    "DerivativeGain",
    "Discard",
    "ErrorInput",
    "InputGradient",
    "ReciprocalBlock",
    "TappedAdvanceLine",
    "TransposedDiagGain",
    "TransposedGain",
    "TransposedJacobian",
    "TransposedProduct",
    "ZeroSource",
]


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


class Discard(Output):
    """What flows back into a constant source is not needed: a sink."""

    kind = "discard"

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


class Advance(Delay):
    """Unit advance q⁺¹ (rule 5): δ_i(k) = δ_j(k+1), zero beyond the last step.  On the
    reciprocal network's reversed clock it steps exactly like a unit delay."""

    kind = "advance"

    def reciprocal(self) -> Block:
        return Delay(self.in_widths[0])

    @property
    def label(self) -> str:
        return "q⁺¹"


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

    def init_state(self, batch, dtype, device, initial=None):
        super().init_state(batch, dtype, device, initial)
        return torch.zeros(batch, self.out_widths[0] * self.taps, dtype=dtype, device=device)

    def outputs(self, inputs, state, k):
        w = self.out_widths[0]
        return [inputs[0][:, :w] + state[:, :w]] if self.taps else [inputs[0]]

    def update(self, inputs, state, k):
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


class ReciprocalBlock(Block):
    """A reciprocal block standing for forward block ``forward_block``, reading its stored
    signals from the trace of the forward run."""

    def __init__(self, forward_block: Block) -> None:
        super().__init__(forward_block.out_widths, forward_block.in_widths)
        self.__dict__["forward_block"] = forward_block  # not a submodule: no parameter copies
        self.__dict__["trace"] = None
        self.grads: dict[str, torch.Tensor] = {}

    def bind(self, trace: Trace) -> None:
        """Attach the forward run whose signals the time-varying gains use; zero the grads."""
        self.__dict__["trace"] = trace
        self.grads = {}

    def forward_input(self, port: int, k: int) -> torch.Tensor:
        if self.trace is None:
            raise RuntimeError(
                f"reciprocal block {self.name!r} is not bound to a forward run; "
                "use Diagram.gradient(..., method='reciprocal')"
            )
        return self.trace.input(self.forward_block.name, port, k)

    def accumulate(self, key: str, value: torch.Tensor) -> None:
        self.grads[key] = value if key not in self.grads else self.grads[key] + value

    def reciprocal(self) -> Block:
        raise NotImplementedError(
            f"{self.kind} is a reciprocal block; take the reciprocal of the forward diagram"
        )


class TransposedGain(ReciprocalBlock):
    """Rule 3 for a weight: δ_in(k) = δ_out(k) Wᵀ; ∂J/∂W += x(k)ᵀ δ_out(k) (Eq. 1)."""

    kind = "gain_t"
    rule = "3"

    def outputs(self, inputs, state, k):
        fwd = self.forward_block
        delta = inputs[0]
        if fwd.trainable:
            g = self.forward_input(0, k).transpose(0, 1) @ delta
            self.accumulate("weight", g if fwd.mask is None else g * fwd.mask)
        return [delta @ fwd.effective().transpose(0, 1)]

    @property
    def label(self) -> str:
        return self.forward_block.label + "ᵀ"


class TransposedDiagGain(ReciprocalBlock):
    """Rule 3 for an elementwise gain: δ_in = δ_out ⊙ g; ∂J/∂g += Σ_b x(k) ⊙ δ_out(k)."""

    kind = "diag_gain_t"
    rule = "3"

    def outputs(self, inputs, state, k):
        delta = inputs[0]
        self.accumulate("weight", (self.forward_input(0, k) * delta).sum(0))
        return [delta * self.forward_block.weight]

    @property
    def label(self) -> str:
        return "g⊙"


class DerivativeGain(ReciprocalBlock):
    """Rule 3: a univariate function becomes the time-varying gain φ′(a(k))."""

    kind = "derivative"
    rule = "3"

    def outputs(self, inputs, state, k):
        return [self.forward_block.derivative(self.forward_input(0, k)) * inputs[0]]

    @property
    def label(self) -> str:
        return f"{self.forward_block.label}′(k)"


class TransposedJacobian(ReciprocalBlock):
    """Rule 4: a multivariate function becomes its transposed Jacobian, δ_in(k) = F′(k)ᵀ δ_out(k),
    evaluated as a vector–Jacobian product of the block alone at its stored inputs; the same
    product gives the block's parameter gradient contribution at k."""

    kind = "jacobian_t"
    rule = "4"

    def outputs(self, inputs, state, k):
        fwd = self.forward_block
        n_in = len(fwd.in_widths)
        xs = [self.forward_input(i, k).detach().requires_grad_(True) for i in range(n_in)]
        params = fwd.trainable_parameters()
        with torch.enable_grad():
            y = fwd.call(xs)
            grads = torch.autograd.grad(
                y, xs + list(params.values()), grad_outputs=inputs[0], allow_unused=True
            )
        for (name, p), g in zip(params.items(), grads[n_in:], strict=True):
            self.accumulate("module." + name, torch.zeros_like(p) if g is None else g)
        return [
            torch.zeros_like(x) if g is None else g for x, g in zip(xs, grads[:n_in], strict=True)
        ]

    @property
    def label(self) -> str:
        return f"{self.forward_block.label}′(k)ᵀ"


class TransposedProduct(ReciprocalBlock):
    """Rule 4 for a product junction: δ_1 = x_2(k) ⊙ δ, δ_2 = x_1(k) ⊙ δ."""

    kind = "product_t"
    rule = "4"

    def outputs(self, inputs, state, k):
        delta = inputs[0]
        return [self.forward_input(1, k) * delta, self.forward_input(0, k) * delta]

    @property
    def label(self) -> str:
        return "×ᵀ(k)"
