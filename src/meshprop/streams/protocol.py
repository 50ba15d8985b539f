"""The stream protocol: how a gradient method consumes a sequence one element at a time.

A sequence presents element l for ``dyn.ticks`` ticks of paper 000 Eq. 3 (inputs clamped to
x_l); the free neurons' state h carries over from element to element.  A *stream method*
(:class:`StreamMethod`, registered in :mod:`meshprop.streams.registry`) computes dE/dθ of a loss
E = Σ_l E(y_l) fed element by element, in the storage's shape ((N, N) dense, (P,) sparse):

- ``method.start(dyn, storage, theta, batch)`` → a :class:`StreamCarry` for one batch of
  streams (h = 0, nothing accumulated), after the memory guard (``estimate_bytes``);
- ``carry.advance(theta, x_t)`` → y_t (B, O), the outputs after element t's ticks;
- ``carry.feed(theta, grad_y)`` adds dE/dy_t of the element just advanced;
- ``carry.gradient(theta)`` → the gradient accumulated since the last call (and resets it);
- ``carry.state_dict()`` / ``load_state_dict`` save and restore everything it carries.

``sequence_gradient`` is a fold over this protocol and ``OnlineLearner`` a loop around it: a
method registered here serves both (online methods — ``online = True`` — serve the learner).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any, ClassVar

import torch

from ..dynamics import Dynamics
from ..layout import Layout

__all__ = ["SequenceState", "StateCarry", "StreamCarry", "StreamMethod", "take_edge_gradient"]


@dataclass
class SequenceState:
    """The state a stream carries between calls of ``sequence_gradient``: the free neurons'
    state h (B, F) and, for FOP, the sensitivities Z (B, P, F) of h to every edge (None: h is
    a constant)."""

    h: torch.Tensor | None = None
    sensitivities: torch.Tensor | None = None


class StreamCarry(ABC):
    """What a stream method carries from element to element for one batch (module docstring).

    ``y`` returned by :meth:`advance` (also kept as :attr:`y`) may be a view of the carry's
    buffers: valid until the next :meth:`advance`."""

    #: the outputs (B, O) after the last element advanced
    y: torch.Tensor

    def __init__(self, dyn: Dynamics, storage: Layout, batch: int) -> None:
        self.dyn, self.storage, self.batch = dyn, storage, batch

    # ---------------------------------------------------------------- state
    @property
    @abstractmethod
    def h(self) -> torch.Tensor:
        """The free neurons' state (B, F) after the last element."""

    @property
    def sensitivities(self) -> torch.Tensor | None:
        """Z = ∂h/∂θ_p (B, P, F) where the method carries it (RTRL), else None."""
        return None

    @abstractmethod
    def enter(self, h: torch.Tensor | None, sensitivities: torch.Tensor | None = None) -> None:
        """Set the state entering the next element: h (B, F) (None: 0) and, for methods that
        carry them, the sensitivities of h (None: h is a constant)."""

    @abstractmethod
    def reset(self) -> None:
        """A new stream: h and whatever the method carries about the past back to 0; the
        gradient accumulated so far is kept."""

    # ---------------------------------------------------------------- steps
    @abstractmethod
    def advance(self, theta: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """Present element x (B, I) for ``dyn.ticks`` ticks (Eq. 3); return y (B, O)."""

    @abstractmethod
    def feed(self, theta: torch.Tensor, grad_y: torch.Tensor) -> None:
        """Add dE/dy (B, O) of the element just advanced to the accumulated gradient."""

    def feed_mse(
        self, theta: torch.Tensor, target: torch.Tensor, mask: torch.Tensor | None, scale: float
    ) -> float:
        """mse of the element just advanced: feed dE/dy = scale · 2 (y − t)/O on the masked
        samples (``mask`` (B,) bool, None: all) and return Σ over them of mean_o (y − t)².
        Methods may override it with a fused version (same quantities)."""
        y = self.y
        err = y - target
        if mask is not None:
            err = err * mask.unsqueeze(1)
        O = y.shape[1]
        self.feed(theta, err * (2.0 * scale / O))
        return float((err * err).sum()) / O

    @abstractmethod
    def gradient(self, theta: torch.Tensor, out: torch.Tensor | None = None) -> torch.Tensor:
        """The gradient accumulated since the last call, in the storage's shape (zero off the
        edges), written into ``out`` when given (a buffer of that shape whose entries off the
        edges are 0); the accumulator is reset."""

    def finite(self) -> bool:
        """Whether what the carry holds about the past is finite (inf/NaN: a chaotic network)."""
        return True

    # ---------------------------------------------------------------- saving
    @abstractmethod
    def state_dict(self) -> dict[str, Any]:
        """Copies of every tensor the carry holds (continue the stream elsewhere)."""

    @abstractmethod
    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore :meth:`state_dict`; ValueError naming a tensor whose shape differs."""

    @staticmethod
    def _restore(name: str, buffer: torch.Tensor, value: torch.Tensor) -> None:
        if tuple(value.shape) != tuple(buffer.shape):
            raise ValueError(
                f"the saved {name} has shape {tuple(value.shape)}, expected "
                f"{tuple(buffer.shape)} for this network"
            )
        buffer.copy_(value)


class StateCarry(StreamCarry):
    """A carry whose state is the one tensor h (B, F) that :meth:`advance` replaces: the ``h``
    property, entering a state (:meth:`enter_state`) and the outputs ``y``, a view of h's output
    columns, kept in step with it (:meth:`set_state`)."""

    def __init__(self, dyn: Dynamics, storage: Layout, batch: int, like: torch.Tensor) -> None:
        super().__init__(dyn, storage, batch)
        self.set_state(torch.zeros(batch, dyn.n_free, dtype=like.dtype, device=like.device))

    @property
    def h(self) -> torch.Tensor:
        return self._h

    def set_state(self, h: torch.Tensor) -> None:
        """h becomes the state after the last element, y its output columns."""
        self._h = h
        self.y = h[:, self.dyn.n_free - self.dyn.n_outputs :]

    def enter_state(self, h: torch.Tensor | None) -> None:
        """The stream continues from h (a copy; None: h = 0)."""
        self.set_state(torch.zeros_like(self._h) if h is None else h.to(self._h).detach().clone())


def take_edge_gradient(
    storage: Layout, grad_edges: torch.Tensor, out: torch.Tensor | None
) -> torch.Tensor:
    """An accumulated per-edge gradient ``grad_edges`` (P,) in the storage's shape — written
    into ``out`` when given, else into a new zero buffer — and the accumulator reset: the
    ``gradient()`` of a carry that accumulates on the edge vector."""
    if out is None:
        out = torch.zeros(storage.shape, dtype=grad_edges.dtype, device=grad_edges.device)
    storage.write_edge_values(out, grad_edges)
    grad_edges.zero_()
    return out


class StreamMethod(ABC):
    """A gradient method over streams (module docstring); options come as keywords."""

    #: the registered name
    name: ClassVar[str]
    #: whether it learns from an unbounded stream in bounded memory (serves ``OnlineLearner``)
    online: ClassVar[bool]
    #: the keyword options it takes (of ``truncation``, ``order``, ``seed``)
    options: ClassVar[tuple[str, ...]] = ()

    def __init__(self, **options: Any) -> None:
        """``options``: this method's own (:attr:`options`; the registry refuses the others)."""
        self.settings = {key: options.get(key) for key in self.options}

    @abstractmethod
    def start(self, dyn: Dynamics, storage: Layout, theta: torch.Tensor, batch: int) -> StreamCarry:
        """A carry for ``batch`` streams from h = 0 (call :func:`check_stream_memory` first)."""

    @abstractmethod
    def estimate_bytes(
        self, dyn: Dynamics, storage: Layout, batch: int, itemsize: int, length: int = 1
    ) -> int:
        """Bytes the carry allocates for ``batch`` streams (``length`` elements stored, for
        methods that store the stream)."""
