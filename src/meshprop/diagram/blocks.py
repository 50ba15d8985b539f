"""The building blocks of a discrete-time network (paper 004 §2).

Every block maps the signals on its input ports at time k to the signals on its output ports at
time k; a signal is a tensor of shape (B, width).  A block with ``feedthrough = False`` (the unit
delay) computes its outputs from its state alone, which is what lets a loop through it be
simulated: such blocks break cycles.

Each block provides three things:

* ``outputs`` / ``update``: the simulation (outputs at k, then the state for k+1);
* ``tangent_outputs`` / ``tangent_update``: the same step applied to parameter sensitivities
  ∂signal/∂θ of shape (B, width, P) (the "forward" gradient method, FOP/RTRL on diagrams);
* ``reciprocal()``: the block that replaces it in the reciprocal network (the six rules, see
  ``meshprop.diagram.reciprocal_blocks``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, ClassVar

import torch
from torch import nn

from ..activations import ACTIVATIONS, NeuronActivations

__all__ = [
    "Block",
    "Branch",
    "Concat",
    "Constant",
    "Delay",
    "DiagGain",
    "Function",
    "Gain",
    "Input",
    "Multivariate",
    "Output",
    "Product",
    "Split",
    "Sum",
    "TappedDelayLine",
]


def _width(value: object, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{what} must be an integer, got {type(value).__name__}")
    if value < 1:
        raise ValueError(f"{what} must be >= 1, got {value}")
    return value


class TangentContext:
    """Where each trainable parameter sits in the flat sensitivity axis of size P."""

    def __init__(self, params: Sequence[torch.Tensor]) -> None:
        self.offsets: dict[int, int] = {}
        offset = 0
        for p in params:
            self.offsets[id(p)] = offset
            offset += p.numel()
        self.size = offset

    def slot(self, p: torch.Tensor) -> int | None:
        return self.offsets.get(id(p))


class Block(nn.Module):
    """A block with ``in_widths`` input ports and ``out_widths`` output ports."""

    kind: ClassVar[str] = "block"
    feedthrough: ClassVar[bool] = True
    #: the construction rule of paper 004 §2 that produces this block's reciprocal.
    rule: ClassVar[str] = ""

    def __init__(self, in_widths: Sequence[int], out_widths: Sequence[int]) -> None:
        super().__init__()
        self.in_widths = tuple(_width(w, "port width") for w in in_widths)
        self.out_widths = tuple(_width(w, "port width") for w in out_widths)
        self.name = ""  # set by Diagram.add

    # --------------------------------------------------------------- simulation
    def init_state(self, batch: int, dtype: torch.dtype, device: torch.device, initial=None):
        if initial is not None:
            raise ValueError(f"block {self.name!r} ({self.kind}) has no state to initialise")
        return None

    def outputs(self, inputs: list[torch.Tensor], state: Any, k: int) -> list[torch.Tensor]:
        raise NotImplementedError

    def update(self, inputs: list[torch.Tensor], state: Any, k: int) -> Any:
        return state

    # ----------------------------------------------- forward sensitivities (RTRL)
    def init_tangent(self, batch: int, P: int, dtype, device) -> Any:
        return None

    def tangent_outputs(self, inputs, tangents, state, tstate, k, ctx: TangentContext):
        raise NotImplementedError

    def tangent_update(self, inputs, tangents, state, tstate, k, ctx: TangentContext):
        return tstate

    # ---------------------------------------------------------------- reciprocal
    def reciprocal(self) -> Block:
        raise NotImplementedError

    @property
    def label(self) -> str:
        return self.kind

    def extra_repr(self) -> str:
        return f"in={list(self.in_widths)}, out={list(self.out_widths)}"


# ============================================================ sources and sinks
class Input(Block):
    """An external input x(k) of the network; its values come from ``run``'s inputs."""

    kind = "input"
    rule = "6"

    def __init__(self, width: int) -> None:
        super().__init__([], [width])

    def outputs(self, inputs, state, k):  # pragma: no cover - the simulator feeds inputs
        raise RuntimeError("Input blocks are fed by the simulator")

    def tangent_outputs(self, inputs, tangents, state, tstate, k, ctx):
        raise RuntimeError("Input blocks are fed by the simulator")

    def reciprocal(self) -> Block:
        from .reciprocal_blocks import InputGradient

        return InputGradient(self.out_widths[0])

    @property
    def label(self) -> str:
        return self.name


class Output(Block):
    """A network output y(k): a sink whose signal ``run`` returns (rule 6: it becomes an input
    of the reciprocal network, fed with ∂L/∂y(k))."""

    kind = "output"
    rule = "6"

    def __init__(self, width: int) -> None:
        super().__init__([width], [])

    def outputs(self, inputs, state, k):
        return []

    def tangent_outputs(self, inputs, tangents, state, tstate, k, ctx):
        return []

    def reciprocal(self) -> Block:
        from .reciprocal_blocks import ErrorInput

        return ErrorInput(self.in_widths[0])

    @property
    def label(self) -> str:
        return self.name


class Constant(Block):
    """A constant signal c (e.g. the bias 1).  Its reciprocal discards what reaches it."""

    kind = "constant"
    rule = "6"

    def __init__(self, value: float | Sequence[float] | torch.Tensor, width: int | None = None):
        value = torch.as_tensor(value, dtype=torch.float64).reshape(-1)
        if width is not None:
            _width(width, "width")
            if value.numel() == 1:
                value = value.expand(width).clone()
            elif value.numel() != width:
                raise ValueError(f"constant has {value.numel()} values but width={width}")
        super().__init__([], [value.numel()])
        self.register_buffer("value", value)

    def init_state(self, batch, dtype, device, initial=None):
        super().init_state(batch, dtype, device, initial)
        return self.value.to(dtype=dtype, device=device).expand(batch, -1)

    def outputs(self, inputs, state, k):
        return [state]

    def tangent_outputs(self, inputs, tangents, state, tstate, k, ctx):
        return [state.new_zeros(state.shape[0], self.out_widths[0], ctx.size)]

    def reciprocal(self) -> Block:
        from .reciprocal_blocks import Discard

        return Discard(self.out_widths[0])

    @property
    def label(self) -> str:
        v = self.value
        return f"{float(v[0]):g}" if bool((v == v[0]).all()) else "c"


# ====================================================== junctions (rules 1 and 2)
class Sum(Block):
    """Summing junction: y = x_1 + … + x_n (rule 1: becomes a branching point)."""

    kind = "sum"
    rule = "1"

    def __init__(self, n: int, width: int) -> None:
        super().__init__([width] * _width(n, "n"), [width])

    def outputs(self, inputs, state, k):
        total = inputs[0]
        for x in inputs[1:]:
            total = total + x
        return [total]

    def tangent_outputs(self, inputs, tangents, state, tstate, k, ctx):
        return self.outputs(tangents, None, k)

    def reciprocal(self) -> Block:
        return Branch(len(self.in_widths), self.out_widths[0])

    @property
    def label(self) -> str:
        return "Σ"


class Branch(Block):
    """Branching point: y_1 = … = y_n = x (rule 2: becomes a summing junction)."""

    kind = "branch"
    rule = "2"

    def __init__(self, n: int, width: int) -> None:
        super().__init__([width], [width] * _width(n, "n"))

    def outputs(self, inputs, state, k):
        return [inputs[0]] * len(self.out_widths)

    def tangent_outputs(self, inputs, tangents, state, tstate, k, ctx):
        return [tangents[0]] * len(self.out_widths)

    def reciprocal(self) -> Block:
        return Sum(len(self.out_widths), self.in_widths[0])

    @property
    def label(self) -> str:
        return "•"


# ================================================================ gains (rule 3)
class Gain(Block):
    """A weight matrix: y(k) = x(k) (W ⊙ M), W of shape (in, out), M an optional fixed 0/1 mask.
    Blocks are created in float64; ``diagram.to(dtype)`` converts a whole diagram.

    A synaptic weight is rule 3's special case: its reciprocal is the same gain transposed, and
    its gradient is ∂J/∂W = Σ_k x(k)ᵀ δ(k) with δ(k) the reciprocal signal at the gain's output
    (paper 004 Eq. 1).  ``trainable=False`` makes W a fixed buffer (e.g. a selection matrix).
    """

    kind = "gain"
    rule = "3"

    def __init__(
        self,
        in_width: int,
        out_width: int,
        weight: torch.Tensor | None = None,
        trainable: bool = True,
        mask: torch.Tensor | None = None,
        seed: int | None = None,
        label: str | None = None,
    ) -> None:
        super().__init__([in_width], [out_width])
        self.display = label
        shape = (self.in_widths[0], self.out_widths[0])
        if weight is None:
            g = None if seed is None else torch.Generator().manual_seed(int(seed))
            bound = 1.0 / shape[0] ** 0.5
            weight = (2 * torch.rand(shape, generator=g, dtype=torch.float64) - 1) * bound
        weight = torch.as_tensor(weight).detach().to(torch.float64)  # d.to(dtype) converts
        if weight.dim() == 0 and shape == (1, 1):
            weight = weight.reshape(1, 1)
        if tuple(weight.shape) != shape:
            raise ValueError(f"gain weight must have shape {shape}, got {tuple(weight.shape)}")
        if mask is not None:
            mask = torch.as_tensor(mask).to(torch.float64)
            if tuple(mask.shape) != shape:
                raise ValueError(f"gain mask must have shape {shape}, got {tuple(mask.shape)}")
            weight = weight * mask
        self.register_buffer("mask", mask)
        if trainable:
            self.weight = nn.Parameter(weight.clone())
        else:
            self.register_buffer("weight", weight.clone())

    @property
    def trainable(self) -> bool:
        return isinstance(self.weight, nn.Parameter)

    def effective(self) -> torch.Tensor:
        return self.weight if self.mask is None else self.weight * self.mask

    def outputs(self, inputs, state, k):
        return [inputs[0] @ self.effective()]

    def tangent_outputs(self, inputs, tangents, state, tstate, k, ctx):
        W = self.effective()
        out = torch.einsum("bip,io->bop", tangents[0], W)
        slot = ctx.slot(self.weight) if self.trainable else None
        if slot is not None:
            x = inputs[0]
            n_in, n_out = W.shape
            eye = torch.eye(n_out, dtype=x.dtype, device=x.device)
            part = x[:, None, :, None] * eye[None, :, None, :]  # ∂y_j/∂W_ij = x_i
            if self.mask is not None:
                part = part * self.mask[None, None]
            out = out.clone()
            out[:, :, slot : slot + n_in * n_out] += part.reshape(x.shape[0], n_out, -1)
        return [out]

    def reciprocal(self) -> Block:
        from .reciprocal_blocks import TransposedGain

        return TransposedGain(self)

    @property
    def label(self) -> str:
        if self.display:
            return self.display
        if self.weight.numel() == 1:
            return f"w={float(self.weight):.2g}" if not self.trainable else "w"
        return "W" if self.trainable else "G"


class DiagGain(Block):
    """An elementwise gain y(k) = x(k) ⊙ g: one scalar weight per channel (rule 3, its own
    transpose)."""

    kind = "diag_gain"
    rule = "3"

    def __init__(self, width: int, weight: torch.Tensor | None = None, seed: int | None = None):
        super().__init__([width], [width])
        if weight is None:
            g = None if seed is None else torch.Generator().manual_seed(int(seed))
            weight = 2 * torch.rand(width, generator=g, dtype=torch.float64) - 1
        weight = torch.as_tensor(weight).detach().to(torch.float64).reshape(-1)
        if weight.numel() != width:
            raise ValueError(f"diagonal gain needs {width} weights, got {weight.numel()}")
        self.weight = nn.Parameter(weight.clone())

    def outputs(self, inputs, state, k):
        return [inputs[0] * self.weight]

    def tangent_outputs(self, inputs, tangents, state, tstate, k, ctx):
        out = tangents[0] * self.weight[None, :, None]
        slot = ctx.slot(self.weight)
        if slot is not None:
            w = self.in_widths[0]
            out = out.clone()
            out[:, :, slot : slot + w] += torch.diag_embed(inputs[0])  # ∂y_i/∂g_i = x_i
        return [out]

    def reciprocal(self) -> Block:
        from .reciprocal_blocks import TransposedDiagGain

        return TransposedDiagGain(self)

    @property
    def label(self) -> str:
        return "g⊙"


# ======================================================== univariate functions (rule 3)
class Function(Block):
    """A univariate function applied per channel: y(k) = φ(a(k)) (an activation).

    ``activation`` is one name of ``meshprop.ACTIVATIONS`` for every channel or one name per
    channel.  Rule 3: its reciprocal is the time-varying gain φ′(a(k)).
    """

    kind = "function"
    rule = "3"

    def __init__(self, activation: str | Sequence[str], width: int) -> None:
        super().__init__([width], [width])
        names = [activation] * width if isinstance(activation, str) else list(activation)
        if len(names) != width:
            raise ValueError(f"need one activation per channel ({width}), got {len(names)}")
        for n in names:
            if n not in ACTIVATIONS:
                raise ValueError(f"unknown activation {n!r}; expected one of {sorted(ACTIVATIONS)}")
        self.activations = NeuronActivations(tuple(names))

    def outputs(self, inputs, state, k):
        return [self.activations.value(inputs[0])]

    def derivative(self, a: torch.Tensor) -> torch.Tensor:
        """φ′(a), written by hand in ``meshprop.activations``."""
        return self.activations(a)[1]

    def tangent_outputs(self, inputs, tangents, state, tstate, k, ctx):
        return [tangents[0] * self.derivative(inputs[0])[..., None]]

    def reciprocal(self) -> Block:
        from .reciprocal_blocks import DerivativeGain

        return DerivativeGain(self)

    @property
    def label(self) -> str:
        return self.activations.uniform or "φ̂"


# ===================================================== multivariate functions (rule 4)
class Multivariate(Block):
    """Any differentiable map y(k) = F(x_1(k), …, x_n(k); θ) of one time step: a whole MLP or
    MeshNet may be one block.  ``fn`` is a callable or an ``nn.Module`` (whose parameters become
    the block's trainable parameters).  Rule 4: its reciprocal is the transposed Jacobian
    F′(k)ᵀ, applied as a vector–Jacobian product at the stored inputs.

    F must treat the samples of a batch independently.  A ``MeshNet`` block needs
    ``grad="bptt"`` or ``"autograd"`` (the reciprocal needs ∂F/∂x, which "fop" does not give).
    """

    kind = "multivariate"
    rule = "4"

    def __init__(
        self,
        fn: Callable[..., torch.Tensor] | nn.Module,
        in_widths: Sequence[int],
        out_width: int,
        name: str = "N",
    ) -> None:
        super().__init__(in_widths, [out_width])
        if not callable(fn):
            raise TypeError(f"fn must be callable or an nn.Module, got {type(fn).__name__}")
        if isinstance(fn, nn.Module):
            self.module = fn
        else:
            self.module = None
            self._fn = fn
        self.display = name

    def call(self, inputs: Sequence[torch.Tensor], params: dict | None = None) -> torch.Tensor:
        if self.module is None:
            return self._fn(*inputs)
        if params is None:
            return self.module(*inputs)
        return torch.func.functional_call(self.module, params, tuple(inputs))

    def trainable_parameters(self) -> dict[str, nn.Parameter]:
        if self.module is None:
            return {}
        return {n: p for n, p in self.module.named_parameters() if p.requires_grad}

    def outputs(self, inputs, state, k):
        y = self.call(inputs)
        if y.shape != (inputs[0].shape[0], self.out_widths[0]):
            raise ValueError(
                f"block {self.name!r} returned shape {tuple(y.shape)}, expected "
                f"({inputs[0].shape[0]}, {self.out_widths[0]})"
            )
        return [y]

    def local_jacobians(self, inputs: Sequence[torch.Tensor]):
        """Rule 4's F′(k), sample by sample: ([(B, out, in_i)], {param: (B, out, numel)}).

        One fresh forward per sample and output, then one backward: this works for blocks
        whose backward may run only once (a MeshNet bridged to a meshprop engine)."""
        params = self.trainable_parameters()
        B, n_out = inputs[0].shape[0], self.out_widths[0]
        J_x = [x.new_zeros(B, n_out, x.shape[1]) for x in inputs]
        J_p = {n: inputs[0].new_zeros(B, n_out, p.numel()) for n, p in params.items()}
        for b in range(B):
            for j in range(n_out):
                xs = [x[b : b + 1].detach().requires_grad_(True) for x in inputs]
                with torch.enable_grad():
                    y = self.call(xs)
                    grads = torch.autograd.grad(
                        y[0, j], xs + list(params.values()), allow_unused=True
                    )
                for i, g in enumerate(grads[: len(xs)]):
                    if g is not None:
                        J_x[i][b, j] = g[0]
                for n, g in zip(params, grads[len(xs) :], strict=True):
                    if g is not None:
                        J_p[n][b, j] = g.reshape(-1)
        return J_x, J_p

    def tangent_outputs(self, inputs, tangents, state, tstate, k, ctx):
        """y′(k) = Σ_i F′_i(k) x_i′(k) + ∂F/∂θ(k): the block's local Jacobians (rule 4)."""
        J_x, J_p = self.local_jacobians(inputs)
        out = inputs[0].new_zeros(inputs[0].shape[0], self.out_widths[0], ctx.size)
        for J, t in zip(J_x, tangents, strict=True):
            out = out + torch.bmm(J, t)
        for name, p in self.trainable_parameters().items():
            slot = ctx.slot(p)
            if slot is not None:
                out[:, :, slot : slot + p.numel()] += J_p[name]
        return [out]

    def reciprocal(self) -> Block:
        from .reciprocal_blocks import TransposedJacobian

        return TransposedJacobian(self)

    @property
    def label(self) -> str:
        return self.display


class Product(Block):
    """Product junction (sigma-pi units): y(k) = x_1(k) ⊙ x_2(k), a multivariate function whose
    transposed Jacobian (rule 4) is δ_1 = x_2 ⊙ δ, δ_2 = x_1 ⊙ δ."""

    kind = "product"
    rule = "4"

    def __init__(self, width: int) -> None:
        super().__init__([width, width], [width])

    def outputs(self, inputs, state, k):
        return [inputs[0] * inputs[1]]

    def tangent_outputs(self, inputs, tangents, state, tstate, k, ctx):
        return [tangents[0] * inputs[1][..., None] + tangents[1] * inputs[0][..., None]]

    def reciprocal(self) -> Block:
        from .reciprocal_blocks import TransposedProduct

        return TransposedProduct(self)

    @property
    def label(self) -> str:
        return "×"


class Concat(Block):
    """Stacks signals into one vector [x_1 | … | x_n]; a linear multivariate map whose
    transposed Jacobian (rule 4) is ``Split``."""

    kind = "concat"
    rule = "4"

    def __init__(self, widths: Sequence[int]) -> None:
        super().__init__(widths, [sum(_width(w, "width") for w in widths)])

    def outputs(self, inputs, state, k):
        return [torch.cat(list(inputs), dim=1)]

    def tangent_outputs(self, inputs, tangents, state, tstate, k, ctx):
        return [torch.cat(list(tangents), dim=1)]

    def reciprocal(self) -> Block:
        return Split(self.in_widths)

    @property
    def label(self) -> str:
        return "[·]"


class Split(Block):
    """Cuts a vector into consecutive pieces of ``widths``; transposed Jacobian: ``Concat``."""

    kind = "split"
    rule = "4"

    def __init__(self, widths: Sequence[int]) -> None:
        super().__init__([sum(_width(w, "width") for w in widths)], widths)

    def outputs(self, inputs, state, k):
        return list(torch.split(inputs[0], list(self.out_widths), dim=1))

    def tangent_outputs(self, inputs, tangents, state, tstate, k, ctx):
        return list(torch.split(tangents[0], list(self.out_widths), dim=1))

    def reciprocal(self) -> Block:
        return Concat(self.out_widths)

    @property
    def label(self) -> str:
        return "]·["


# ================================================================ delays (rule 5)
class Delay(Block):
    """Unit delay q⁻¹: y(k) = x(k−1), y(0) = the initial state (zero unless given).
    Rule 5: its reciprocal is the unit advance q⁺¹."""

    kind = "delay"
    feedthrough = False
    rule = "5"

    def __init__(self, width: int) -> None:
        super().__init__([width], [width])

    def init_state(self, batch, dtype, device, initial=None):
        w = self.in_widths[0]
        if initial is None:
            return torch.zeros(batch, w, dtype=dtype, device=device)
        initial = torch.as_tensor(initial).to(dtype=dtype, device=device)
        if tuple(initial.shape) != (batch, w):
            raise ValueError(
                f"initial state of {self.name!r} must have shape ({batch}, {w}), "
                f"got {tuple(initial.shape)}"
            )
        return initial

    def outputs(self, inputs, state, k):
        return [state]

    def update(self, inputs, state, k):
        return inputs[0]

    def init_tangent(self, batch, P, dtype, device):
        return torch.zeros(batch, self.in_widths[0], P, dtype=dtype, device=device)

    def tangent_outputs(self, inputs, tangents, state, tstate, k, ctx):
        return [tstate]

    def tangent_update(self, inputs, tangents, state, tstate, k, ctx):
        return tangents[0]

    def reciprocal(self) -> Block:
        from .reciprocal_blocks import Advance

        return Advance(self.in_widths[0])

    @property
    def label(self) -> str:
        return "q⁻¹"


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

    def init_state(self, batch, dtype, device, initial=None):
        w, K = self.in_widths[0], self.taps
        if initial is None:
            return torch.zeros(batch, w * K, dtype=dtype, device=device)
        initial = torch.as_tensor(initial).to(dtype=dtype, device=device)
        if tuple(initial.shape) != (batch, w * K):
            raise ValueError(
                f"initial state of {self.name!r} must have shape ({batch}, {w * K}) "
                f"= [x(-1) | … | x(-K)], got {tuple(initial.shape)}"
            )
        return initial

    def outputs(self, inputs, state, k):
        return [torch.cat([inputs[0], state], dim=1)]

    def update(self, inputs, state, k):
        w = self.in_widths[0]
        return torch.cat([inputs[0], state], dim=1)[:, : w * self.taps]

    def init_tangent(self, batch, P, dtype, device):
        return torch.zeros(batch, self.in_widths[0] * self.taps, P, dtype=dtype, device=device)

    def tangent_outputs(self, inputs, tangents, state, tstate, k, ctx):
        return [torch.cat([tangents[0], tstate], dim=1)]

    def tangent_update(self, inputs, tangents, state, tstate, k, ctx):
        return torch.cat([tangents[0], tstate], dim=1)[:, : self.in_widths[0] * self.taps]

    def reciprocal(self) -> Block:
        from .reciprocal_blocks import TappedAdvanceLine

        return TappedAdvanceLine(self.in_widths[0], self.taps)

    @property
    def label(self) -> str:
        return f"TDL({self.taps})"
