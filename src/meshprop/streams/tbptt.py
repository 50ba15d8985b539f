"""Method "tbptt": truncated BPTT through a sliding window of the last ``truncation`` elements.

The carry keeps, for each of the last k = ``truncation`` elements, its input and the state h
that entered it.  The dE/dy fed after element t is backpropagated by the reciprocal network
(paper 004, :func:`meshprop.streams.bptt.reciprocal`) through elements t−k+1 … t, recomputed
forward from the state that entered element t−k+1, a constant (the cut).  Memory O(k·T·B·N),
flat in the stream's length; the gradient of element t reaches back exactly k elements.

(``sequence_gradient(..., method="tbptt")`` cuts a *stored* sequence into fixed windows
[0, k), [k, 2k), … instead: a fold over method "bptt", one carry per window.)
"""

from __future__ import annotations

from collections import deque
from typing import Any

import torch

from ..dynamics import Dynamics
from ..layout import Layout
from .bptt import reciprocal, record
from .protocol import StateCarry, StreamMethod

__all__ = ["TBPTT", "TBPTTCarry"]


class TBPTTCarry(StateCarry):
    """A sliding window of the last ``truncation`` elements (module docstring)."""

    def __init__(
        self, dyn: Dynamics, storage: Layout, theta: torch.Tensor, batch: int, truncation: int
    ) -> None:
        super().__init__(dyn, storage, batch, theta)
        self.truncation = truncation
        self.window: deque[tuple[torch.Tensor, torch.Tensor]] = deque(maxlen=truncation)
        self.grad = torch.zeros(storage.shape, dtype=theta.dtype, device=theta.device)

    def enter(self, h, sensitivities=None):
        self.enter_state(h)
        self.window.clear()

    def reset(self) -> None:
        self.enter_state(None)
        self.window.clear()

    def advance(self, theta, x):
        tr = self.storage.transition(self.dyn, theta.detach())
        self.window.append((x.clone(), self._h))
        h, _ = record(self.dyn, tr, x, self._h)
        self.set_state(h)
        return self.y

    def feed(self, theta, grad_y):
        """dE/dy of the last element backwards through the window (recomputed forward with the
        current weights from the window's entering state)."""
        tr = self.storage.transition(self.dyn, theta.detach())
        h = self.window[0][1]
        elements = []
        for x, _ in self.window:
            h, ticks = record(self.dyn, tr, x, h)
            elements.append((ticks, None))
        elements[-1] = (elements[-1][0], grad_y)
        reciprocal(self.dyn, tr, elements, self.grad)

    def gradient(self, theta, out=None):
        if out is None:
            out = torch.empty_like(self.grad)
        out.copy_(self.storage.project(self.grad))  # project may return its argument
        self.grad.zero_()
        return out

    def state_dict(self) -> dict[str, Any]:
        return {
            "h": self._h.clone(),
            "grad": self.grad.clone(),
            "window": [[x.clone(), h.clone()] for x, h in self.window],
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self._restore("h", self._h, state["h"])
        self._restore("grad", self.grad, state["grad"])
        self.window.clear()
        for x, h in state["window"]:
            if tuple(h.shape) != tuple(self._h.shape):
                raise ValueError(
                    f"the saved window state has shape {tuple(h.shape)}, expected "
                    f"{tuple(self._h.shape)}"
                )
            self.window.append((x.clone(), h.to(self._h).clone()))


class TBPTT(StreamMethod):
    """ "tbptt": BPTT through the last ``truncation`` elements (module docstring)."""

    name = "tbptt"
    online = True
    options = ("truncation",)

    def __init__(self, truncation: int | None = None) -> None:
        if isinstance(truncation, bool) or not isinstance(truncation, int) or truncation < 1:
            raise ValueError(
                f"method 'tbptt' needs truncation=k, an integer >= 1 (the window length), "
                f"got {truncation!r}"
            )
        super().__init__(truncation=truncation)
        self.truncation = truncation

    def start(self, dyn, storage, theta, batch):
        return TBPTTCarry(dyn, storage, theta, batch, self.truncation)

    def estimate_bytes(self, dyn, storage, batch, itemsize, length=1):
        topo = dyn.topology
        window = self.truncation * (
            batch * (topo.n_inputs + topo.n_free)
            + dyn.ticks * batch * (topo.n_neurons + topo.n_free)
        )
        weights = 1
        for size in storage.shape:
            weights *= size
        return itemsize * (window + 3 * weights + 4 * batch * topo.n_neurons)
