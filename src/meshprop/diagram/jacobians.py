"""Rule 4 — multivariate functions become their transposed Jacobians (paper 004 §2).

A block a_out(k) = F(a_in(k); θ) becomes δ_in(k) = F′(k)ᵀ δ_out(k) with F′(k) = ∂a_out/∂a_in at
the forward signals of step k; the same vector–Jacobian product gives the block's parameter
gradient at k (summed over k, as Eq. 1 sums a weight's).  As the paper notes after Eq. 4, the
product is "a standard backpropagation of δ(k) through the network at time k": the forward run
evaluates F once per step and keeps that evaluation's autograd graph, the reciprocal pass
backpropagates δ(k) through it (no second forward).

Summing junctions and univariate functions are special cases; so are the product junction of
sigma-pi units (δ_1 = x_2 ⊙ δ, δ_2 = x_1 ⊙ δ) and concatenation, whose transposed Jacobian is the
split into pieces (and vice versa).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import nn

from .block import Block, Params, ReciprocalBlock, Slots, Tape, check_width

__all__ = [
    "Concat",
    "Multivariate",
    "Product",
    "Split",
    "TransposedJacobian",
    "TransposedProduct",
]

_MODULE = "module."


class Multivariate(Block):
    """Any differentiable map y(k) = F(x_1(k), …, x_n(k); θ) of one time step: a whole MLP or
    MeshNet may be one block.  ``fn`` is a callable or an ``nn.Module`` (whose parameters become
    the block's trainable parameters, "module.<name>").  Rule 4: its reciprocal is the transposed
    Jacobian F′(k)ᵀ, applied as a vector–Jacobian product at the stored inputs.

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
        self.module: nn.Module | None
        if isinstance(fn, nn.Module):
            self.module = fn
        else:
            self.module = None
            self._fn = fn
        self.display = name
        #: whether torch.func can transform F (None until the forward method first tries).
        self.vmappable: bool | None = None

    def call(self, inputs: Sequence[torch.Tensor], params: Params | None = None) -> torch.Tensor:
        """F(inputs), with the module's parameters replaced by ``params`` (the module's own
        names) when given."""
        if self.module is None:
            return self._fn(*inputs)
        if params is None:
            return self.module(*inputs)
        return torch.func.functional_call(self.module, dict(params), tuple(inputs))

    def trainable_parameters(self) -> dict[str, nn.Parameter]:
        """The module's parameters that require a gradient, by the module's own names."""
        if self.module is None:
            return {}
        return {n: p for n, p in self.module.named_parameters() if p.requires_grad}

    def evaluate(self, p: Params, inputs: Sequence[torch.Tensor]) -> torch.Tensor:
        """F(inputs) with the block's parameters ``p`` ("module.<name>"), shape checked."""
        own = {n.removeprefix(_MODULE): v for n, v in p.items()} if self.module else None
        y = self.call(inputs, own)
        expected = (inputs[0].shape[0], self.out_widths[0])
        if not isinstance(y, torch.Tensor) or tuple(y.shape) != expected:
            shape = tuple(y.shape) if isinstance(y, torch.Tensor) else type(y).__name__
            raise ValueError(f"block {self.name!r} returned shape {shape}, expected {expected}")
        return y

    def outputs(self, p, inputs, state, k):
        return [self.evaluate(p, inputs)]

    def record(self, p, inputs, state, k):
        """One evaluation of F at step k whose graph the reciprocal backpropagates δ(k) through."""
        xs = [x.detach().requires_grad_(True) for x in inputs]
        ps = {n: v.detach().requires_grad_(True) for n, v in p.items()}
        with torch.enable_grad():
            y = self.evaluate(ps, xs)
        return [y.detach()], (y, xs, ps)

    # ----------------------------------------------------- the forward method (RTRL)
    def jacobians(
        self, p: Params, inputs: Sequence[torch.Tensor]
    ) -> tuple[torch.Tensor, list[torch.Tensor], dict[str, torch.Tensor]]:
        """F′(k) sample by sample: (y, [∂y/∂x_i (B, out, in_i)], {param: ∂y/∂θ (B, out, numel)}).

        One evaluation of F per step, with ``torch.func.jacrev`` vectorised over the batch by
        ``torch.func.vmap``.  Functions torch.func cannot transform (Python control flow on
        values, ``.item()`` inside the function) fall back to one evaluation per sample
        and one backward per output."""
        if self.vmappable is not False:
            try:
                result = self._jacobians_vmap(p, inputs)
            except RuntimeError:
                if self.vmappable:
                    raise
                self.vmappable = False
            else:
                self.vmappable = True
                return result
        return self._jacobians_per_sample(p, inputs)

    def _jacobians_vmap(self, p, inputs):
        n_in = len(inputs)

        def one_sample(params, *xs):
            y = self.evaluate(params, [x.unsqueeze(0) for x in xs]).squeeze(0)
            return y, y

        jac = torch.func.jacrev(one_sample, argnums=tuple(range(n_in + 1)), has_aux=True)
        (J_p, *J_x), y = torch.func.vmap(jac, in_dims=(None, *[0] * n_in))(dict(p), *inputs)
        B, n_out = y.shape
        return y, list(J_x), {n: J.reshape(B, n_out, -1) for n, J in J_p.items()}

    def _jacobians_per_sample(self, p, inputs):
        B, n_out = inputs[0].shape[0], self.out_widths[0]
        J_x = [x.new_zeros(B, n_out, x.shape[1]) for x in inputs]
        J_p = {n: inputs[0].new_zeros(B, n_out, v.numel()) for n, v in p.items()}
        ys = []
        for b in range(B):
            xs = [x[b : b + 1].detach().requires_grad_(True) for x in inputs]
            ps = {n: v.detach().requires_grad_(True) for n, v in p.items()}
            with torch.enable_grad():
                y = self.evaluate(ps, xs)
                for j in range(n_out):
                    grads = torch.autograd.grad(
                        y[0, j],
                        xs + list(ps.values()),
                        retain_graph=j < n_out - 1,
                        allow_unused=True,
                    )
                    for i, g in enumerate(grads[: len(xs)]):
                        if g is not None:
                            J_x[i][b, j] = g[0]
                    for n, g in zip(ps, grads[len(xs) :], strict=True):
                        if g is not None:
                            J_p[n][b, j] = g.reshape(-1)
            ys.append(y.detach())
        return torch.cat(ys), J_x, J_p

    def tangent_outputs(self, p, inputs, tangents, state, tstate, k, slots: Slots):
        """y′(k) = Σ_i F′_i(k) x_i′(k) + ∂F/∂θ(k): the block's local Jacobians (rule 4)."""
        y, J_x, J_p = self.jacobians(p, inputs)
        out = y.new_zeros(y.shape[0], self.out_widths[0], slots.size)
        for J, t in zip(J_x, tangents, strict=True):
            out += torch.bmm(J, t)
        for name, J in J_p.items():
            slot = slots.of(name)
            if slot is not None:
                out[:, :, slot : slot + J.shape[2]] += J
        return [y], [out]

    def reciprocal(self) -> Block:
        return TransposedJacobian(self)

    @property
    def label(self) -> str:
        return self.display


class TransposedJacobian(ReciprocalBlock):
    """Rule 4: δ_in(k) = F′(k)ᵀ δ_out(k), one backpropagation of δ_out(k) through the graph of
    the forward evaluation at step k; the same product gives ∂J/∂θ's contribution at k."""

    kind = "jacobian_t"
    rule = "4"

    def outputs(self, p: Tape, inputs, state, k):
        y, xs, ps = p.at(k)
        if not y.requires_grad:  # F does not depend on its inputs or parameters
            return [torch.zeros_like(x) for x in xs]
        grads = torch.autograd.grad(
            y, [*xs, *ps.values()], grad_outputs=inputs[0], allow_unused=True
        )
        for name, g in zip(ps, grads[len(xs) :], strict=True):
            if g is not None:
                p.accumulate(name, g)
        return [
            torch.zeros_like(x) if g is None else g
            for x, g in zip(xs, grads[: len(xs)], strict=True)
        ]

    @property
    def label(self) -> str:
        return f"{self.forward_block.label}′(k)ᵀ"


class Product(Block):
    """Product junction (sigma-pi units): y(k) = x_1(k) ⊙ x_2(k), a multivariate function whose
    transposed Jacobian (rule 4) is δ_1 = x_2 ⊙ δ, δ_2 = x_1 ⊙ δ."""

    kind = "product"
    rule = "4"

    def __init__(self, width: int) -> None:
        super().__init__([width, width], [width])

    def outputs(self, p, inputs, state, k):
        return [inputs[0] * inputs[1]]

    def record(self, p, inputs, state, k):
        return self.outputs(p, inputs, state, k), (inputs[0], inputs[1])

    def tangents(self, p, inputs, tangents, state, tstate, slots: Slots):
        return [tangents[0] * inputs[1][..., None] + tangents[1] * inputs[0][..., None]]

    def reciprocal(self) -> Block:
        return TransposedProduct(self)

    @property
    def label(self) -> str:
        return "×"


class TransposedProduct(ReciprocalBlock):
    """Rule 4 for a product junction: δ_1 = x_2(k) ⊙ δ, δ_2 = x_1(k) ⊙ δ."""

    kind = "product_t"
    rule = "4"

    def outputs(self, p: Tape, inputs, state, k):
        x1, x2 = p.at(k)
        delta = inputs[0]
        return [x2 * delta, x1 * delta]

    @property
    def label(self) -> str:
        return "×ᵀ(k)"


class Concat(Block):
    """Stacks signals into one vector [x_1 | … | x_n]; a linear multivariate map whose
    transposed Jacobian (rule 4) is ``Split``."""

    kind = "concat"
    rule = "4"

    def __init__(self, widths: Sequence[int]) -> None:
        super().__init__(widths, [sum(check_width(w, "width") for w in widths)])

    def channel_dependencies(self):
        pairs, offset = [], 0
        for port, width in enumerate(self.in_widths):
            pairs += [(port, c, 0, offset + c) for c in range(width)]
            offset += width
        return pairs

    def outputs(self, p, inputs, state, k):
        return [torch.cat(list(inputs), dim=1)]

    def tangents(self, p, inputs, tangents, state, tstate, slots: Slots):
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
        super().__init__([sum(check_width(w, "width") for w in widths)], widths)

    def channel_dependencies(self):
        pairs, offset = [], 0
        for port, width in enumerate(self.out_widths):
            pairs += [(0, offset + c, port, c) for c in range(width)]
            offset += width
        return pairs

    def outputs(self, p, inputs, state, k):
        return list(torch.split(inputs[0], list(self.out_widths), dim=1))

    def tangents(self, p, inputs, tangents, state, tstate, slots: Slots):
        return list(torch.split(tangents[0], list(self.out_widths), dim=1))

    def reciprocal(self) -> Block:
        return Concat(self.out_widths)

    @property
    def label(self) -> str:
        return "]·["
