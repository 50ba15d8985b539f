"""Rule 3 for synaptic weights — a gain becomes its transpose (paper 004 §2 and Eq. 1).

A weight a_j = w_ij a_i is rule 3's special case: the reciprocal gain is the same weight read
backward, δ_i(k) = w_ij δ_j(k), i.e. δ_in(k) = δ_out(k) Wᵀ for a weight matrix.  Its gradient is
Eq. 1 summed over time, ∂J/∂W = Σ_k x(k)ᵀ δ(k): the input x(k) is kept by the forward run, δ(k)
is the reciprocal signal at the gain's output.
"""

from __future__ import annotations

import torch
from torch import nn

from .block import Block, Params, ReciprocalBlock, Slots, Tape

__all__ = ["DiagGain", "Gain", "TransposedDiagGain", "TransposedGain"]


class Gain(Block):
    """A weight matrix: y(k) = x(k) (W ⊙ M), W of shape (in, out), M an optional fixed 0/1 mask.
    Blocks are created in float64; ``diagram.to(dtype)`` converts a whole diagram.

    Its reciprocal is the same gain transposed, and its gradient is ∂J/∂W = Σ_k x(k)ᵀ δ(k) with
    δ(k) the reciprocal signal at the gain's output (Eq. 1).  ``trainable=False`` makes W a fixed
    buffer (e.g. a selection matrix).
    """

    kind = "gain"
    rule = "3"
    weight: torch.Tensor
    mask: torch.Tensor | None

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

    def effective(self, p: Params | None = None) -> torch.Tensor:
        """W ⊙ M, with W taken from ``p`` when it holds the weight."""
        W = p["weight"] if p is not None and "weight" in p else self.weight
        return W if self.mask is None else W * self.mask

    def outputs(self, p, inputs, state, k):
        return [inputs[0] @ self.effective(p)]

    def record(self, p, inputs, state, k):
        return self.outputs(p, inputs, state, k), inputs[0] if self.trainable else None

    def tangents(self, p, inputs, tangents, state, tstate, slots: Slots):
        W = self.effective(p)
        out = W.transpose(0, 1) @ tangents[0]  # (out, in) @ (B, in, P)
        slot = slots.of("weight")
        if slot is not None:
            x = inputs[0]
            n_in, n_out = W.shape
            eye = torch.eye(n_out, dtype=x.dtype, device=x.device)
            part = x[:, None, :, None] * eye[None, :, None, :]  # ∂y_j/∂W_ij = x_i
            if self.mask is not None:
                part = part * self.mask[None, None]
            out[:, :, slot : slot + n_in * n_out] += part.reshape(x.shape[0], n_out, -1)
        return [out]

    def reciprocal(self) -> Block:
        return TransposedGain(self)

    @property
    def label(self) -> str:
        if self.display:
            return self.display
        if self.weight.numel() == 1:
            return f"w={float(self.weight):.2g}" if not self.trainable else "w"
        return "W" if self.trainable else "G"


class TransposedGain(ReciprocalBlock):
    """Rule 3 for a weight: δ_in(k) = δ_out(k) Wᵀ; ∂J/∂W += x(k)ᵀ δ_out(k) (Eq. 1)."""

    kind = "gain_t"
    rule = "3"

    def outputs(self, p: Tape, inputs, state, k):
        fwd = self.forward_block
        assert isinstance(fwd, Gain)
        delta = inputs[0]
        x = p.at(k)
        if x is not None:
            g = x.transpose(0, 1) @ delta
            p.accumulate("weight", g if fwd.mask is None else g * fwd.mask)
        return [delta @ fwd.effective(p.params).transpose(0, 1)]

    @property
    def label(self) -> str:
        return self.forward_block.label + "ᵀ"


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

    def outputs(self, p, inputs, state, k):
        return [inputs[0] * p["weight"]]

    def record(self, p, inputs, state, k):
        return self.outputs(p, inputs, state, k), inputs[0]

    def tangents(self, p, inputs, tangents, state, tstate, slots: Slots):
        out = tangents[0] * p["weight"][None, :, None]
        slot = slots.of("weight")
        if slot is not None:
            w = self.in_widths[0]
            out[:, :, slot : slot + w] += torch.diag_embed(inputs[0])  # ∂y_i/∂g_i = x_i
        return [out]

    def reciprocal(self) -> Block:
        return TransposedDiagGain(self)

    @property
    def label(self) -> str:
        return "g⊙"


class TransposedDiagGain(ReciprocalBlock):
    """Rule 3 for an elementwise gain: δ_in = δ_out ⊙ g; ∂J/∂g += Σ_b x(k) ⊙ δ_out(k)."""

    kind = "diag_gain_t"
    rule = "3"

    def outputs(self, p: Tape, inputs, state, k):
        delta = inputs[0]
        p.accumulate("weight", (p.at(k) * delta).sum(0))
        return [delta * p.params["weight"]]

    @property
    def label(self) -> str:
        return "g⊙"
