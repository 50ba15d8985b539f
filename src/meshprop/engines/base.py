"""The interface every gradient engine implements.

An engine computes the same two things for the same forward semantics (``meshprop.dynamics``):

- ``forward(dyn, A, x)`` → ``(y, saved)``: the outputs y = S_T[outputs] of shape (B, O) and
  whatever the engine keeps for the gradient (FOP: the sensitivities carried forward; BPTT: the
  trajectory; autograd: the graph).
- ``backward(dyn, A, x, saved, grad_y)`` → ``(dE/dA, dE/dx or None)``: dE/dA is (N, N) and exactly
  zero outside the mask.

:func:`bind` fixes the dynamics and turns an engine into a :class:`meshprop.protocol.VJPFunction`
of the one parameter ``"A"``: the protocol's single ``torch.autograd.Function`` bridges it into an
ordinary ``loss.backward()``, and ``meshprop.gradient`` calls it directly.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

import torch

from ..dynamics import Dynamics

__all__ = ["LAYOUT_NAMES", "BoundEngine", "GradientEngine", "bind"]

#: the weight storages an engine can differentiate: the N×N matrix A or one weight per edge.
LAYOUT_NAMES = ("dense", "sparse")


class GradientEngine(ABC):
    """Base class of the gradient engines; subclasses register themselves by ``name``."""

    name: ClassVar[str]
    #: True when the engine also returns dE/dx (input gradients).
    provides_input_grad: ClassVar[bool] = False
    #: what the engine differentiates: ``"dense"``, the N×N matrix A (gradient (N, N), zero
    #: outside the mask), or ``"sparse"``, the vector w (P,) of one weight per edge in
    #: ``topo.edges`` order (gradient (P,)).  The registry serves the other layout by a bridge.
    layout: ClassVar[str] = "dense"

    @abstractmethod
    def forward(self, dyn: Dynamics, A: torch.Tensor, x: torch.Tensor) -> tuple[torch.Tensor, Any]:
        """Run the ticks; return y (B, O) and what ``backward`` needs."""

    @abstractmethod
    def backward(
        self,
        dyn: Dynamics,
        A: torch.Tensor,
        x: torch.Tensor,
        saved: Any,
        grad_y: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Turn dE/dy (B, O) into dE/dA (N, N) (and dE/dx when ``provides_input_grad``)."""

    def estimate_bytes(self, dyn: Dynamics, batch: int, itemsize: int) -> int:
        """Bytes the engine allocates for one step beyond the parameters (a rough model)."""
        T, N = dyn.ticks, dyn.topology.n_neurons
        return T * batch * N * itemsize * 3

    def estimate_flops(self, dyn: Dynamics, batch: int) -> int:
        """Floating-point operations of one step (forward + dE/dA), a model used by
        ``method="auto"`` and the memory guard's suggestion.  Default: two dense products of
        the state with A per tick, forward and backward."""
        T, N, F = dyn.ticks, dyn.topology.n_neurons, dyn.n_free
        return 3 * T * 2 * batch * N * F

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name!r}>"


@dataclass(frozen=True)
class BoundEngine:
    """A gradient engine with its dynamics fixed: the :class:`~meshprop.protocol.VJPFunction`
    y = MNN(θ, x) of the one parameter ``{parameter: θ}`` — ``"A"`` (N×N) for the dense layout,
    ``"weight"`` (P,) for the sparse one."""

    engine: GradientEngine
    dynamics: Dynamics
    parameter: str = "A"

    @property
    def provides_input_grad(self) -> bool:
        return self.engine.provides_input_grad

    def forward(
        self, params: Mapping[str, torch.Tensor], x: torch.Tensor
    ) -> tuple[torch.Tensor, Any]:
        return self.engine.forward(self.dynamics, params[self.parameter], x)

    def backward(
        self, params: Mapping[str, torch.Tensor], x: torch.Tensor, saved: Any, grad_y: torch.Tensor
    ) -> tuple[dict[str, torch.Tensor], torch.Tensor | None]:
        grad, dx = self.engine.backward(self.dynamics, params[self.parameter], x, saved, grad_y)
        return {self.parameter: grad}, dx

    def __repr__(self) -> str:
        return f"<{self.engine.name!r} engine of {self.parameter!r}>"


def bind(engine: GradientEngine, dynamics: Dynamics) -> BoundEngine:
    """``engine`` as a VJP function of ``{"A": A}`` over ``dynamics``."""
    return BoundEngine(engine, dynamics)
