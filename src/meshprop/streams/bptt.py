"""Method "bptt": the reciprocal network of paper 004 run backwards over the stored stream.

:meth:`BPTTCarry.advance` stores the trajectory S_{n-1}, φ′(T_n) of every tick of every element
(memory O(L·T·B·N)) and the dE/dy fed after each element; :meth:`BPTTCarry.gradient` runs the
recursion backwards,

    δ ← δ + [0 … 0, dE/dy_l] after element l,   e_n = δ ⊙ φ′(T_n),   dE/dθ += S_{n-1}ᵀ e_n,
    δ ← e_n A_fᵀ,

so the loss of every element enters the reciprocal network at its own time (rule 6) and the
delays become advances (rule 5); rules 3 and 4 are the slope and the transposed gain.  The
products are the storage's :class:`~meshprop.layout.Transition` (``back``, ``add_gradient``):
no N×N tensor on the sparse layout.  The state entering the stream is a constant.
"""

from __future__ import annotations

from typing import Any

import torch

from ..dynamics import Dynamics
from ..layout import Layout, Transition
from .protocol import StateCarry, StreamMethod

__all__ = ["BPTT", "BPTTCarry", "Element", "reciprocal", "record"]

#: one element as stored: the (S_{n-1}, φ′(T_n)) of each of its ticks, and dE/dy fed after it
Element = tuple[list[tuple[torch.Tensor, torch.Tensor]], "torch.Tensor | None"]


def record(
    dyn: Dynamics, tr: Transition, x: torch.Tensor, h: torch.Tensor
) -> tuple[torch.Tensor, list[tuple[torch.Tensor, torch.Tensor]]]:
    """Element x (B, I) from state h for ``dyn.ticks`` ticks of Eq. 3: (h after it, the
    (S_{n-1}, D_n = φ′(T_n)) of every tick)."""
    c = dyn.clamped_state(x, 1)
    drive = tr.drive(c)  # the same at every tick of an element
    ticks = []
    for _ in range(dyn.ticks):
        S_prev = torch.cat([c, h], dim=1)
        h, D = dyn.activations(tr.pre_activation(drive, h))
        ticks.append((S_prev, D))
    return h, ticks


def reciprocal(dyn: Dynamics, tr: Transition, elements: list[Element], grad: torch.Tensor) -> None:
    """The reciprocal network backwards over ``elements`` (module docstring): grad (storage
    shape) += dE/dθ, in place, read through the transition (entries off the edges may be
    touched on the dense layout: project afterwards)."""
    C, F, O = dyn.n_clamped, dyn.n_free, dyn.n_outputs
    delta: torch.Tensor | None = None
    for ticks, fed in reversed(elements):
        if fed is not None:  # rule 6: the output of element l becomes an input of dE/dy_l
            if delta is None:
                delta = fed.new_zeros(fed.shape[0], F)
            delta[:, F - O :] += fed
        if delta is None:  # nothing fed after this element or later: no gradient flows yet
            continue
        for S_prev, D in reversed(ticks):
            e = delta * D  # rule 3
            tr.add_gradient(grad, S_prev, e)
            delta = tr.back(e)[:, C:]  # rules 4 and 5


class BPTTCarry(StateCarry):
    """A stored stream (module docstring)."""

    def __init__(self, dyn: Dynamics, storage: Layout, theta: torch.Tensor, batch: int) -> None:
        super().__init__(dyn, storage, batch, theta)
        self.elements: list[Element] = []

    def enter(self, h, sensitivities=None):
        self.enter_state(h)

    def reset(self) -> None:
        self.enter_state(None)

    def advance(self, theta, x):
        tr = self.storage.transition(self.dyn, theta.detach())
        h, ticks = record(self.dyn, tr, x, self._h)
        self.set_state(h)
        self.elements.append((ticks, None))
        return self.y

    def feed(self, theta, grad_y):
        ticks, fed = self.elements[-1]
        self.elements[-1] = (ticks, grad_y.clone() if fed is None else fed + grad_y)

    def gradient(self, theta, out=None):
        theta = theta.detach()
        grad = torch.zeros(self.storage.shape, dtype=theta.dtype, device=theta.device)
        reciprocal(self.dyn, self.storage.transition(self.dyn, theta), self.elements, grad)
        self.elements = []
        grad = self.storage.project(grad)
        if out is None:
            return grad
        return out.copy_(grad)

    def state_dict(self) -> dict[str, Any]:
        return {
            "h": self._h.clone(),
            "elements": [
                ([(S.clone(), D.clone()) for S, D in ticks], None if fed is None else fed.clone())
                for ticks, fed in self.elements
            ],
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self._restore("h", self._h, state["h"])
        self.elements = [
            ([(S.clone(), D.clone()) for S, D in ticks], None if fed is None else fed.clone())
            for ticks, fed in state["elements"]
        ]


class BPTT(StreamMethod):
    """ "bptt": the whole stream stored, the reciprocal network backwards (module docstring).
    Not online: its memory grows with the stream (``sequence_gradient``)."""

    name = "bptt"
    online = False

    def start(self, dyn, storage, theta, batch):
        return BPTTCarry(dyn, storage, theta, batch)

    def estimate_bytes(self, dyn, storage, batch, itemsize, length=1):
        topo = dyn.topology
        per_element = dyn.ticks * batch * (topo.n_neurons + topo.n_free) + batch * topo.n_outputs
        weights = 1
        for size in storage.shape:
            weights *= size
        return itemsize * (length * per_element + 4 * batch * topo.n_neurons + 3 * weights)
