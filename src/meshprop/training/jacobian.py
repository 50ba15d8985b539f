"""``meshprop.jacobian``: the Jacobian of every output with respect to every parameter, in one
forward run of the sensitivities — never one gradient call per output.

* MeshNet: the FOP engine carries Z[b, p, o] = ∂S_{T,o}/∂A_p forward with the state (paper 000,
  Eq. 13 / 17); at the last tick that is the Jacobian of y = S_T[outputs].  Result (B, O, P), the
  P columns being the edges of ``net.topology.edges`` (row-major); the edges the engine does not
  carry (no path to an output, ``engines/reach.py``) have a column of exact zeros.
* Block diagram (``meshprop.diagram.Diagram``): the forward method carries ∂s(k)/∂θ of every
  signal; at the outputs it is ∂y(k)/∂θ.  Result (T, B, O, P), the P columns being the
  parameters of ``parameter_dict()`` flattened in order (``meshprop.diagram.sensitivity``).

:class:`ParameterVector` reads and writes the same P parameters as one flat vector (what
Levenberg–Marquardt steps); a MeshNet's masked entries are never touched, so they stay 0.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from ..engines import check_memory, get_engine
from ..engines.fop import carried_edges
from ..mesh import MeshNet

__all__ = ["ParameterVector", "jacobian", "outputs_and_jacobian"]


def _is_diagram(model: object) -> bool:
    return callable(getattr(model, "jacobian", None)) and callable(
        getattr(model, "parameter_dict", None)
    )


def _mesh_jacobian(net: MeshNet, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    engine, dyn = get_engine("fop"), net.dynamics
    x = net.prepare_input(x)
    B = dyn.batch_size(x)
    check_memory(engine, dyn, B, net.A.element_size())
    with torch.no_grad():
        y, Z = engine.forward(dyn, net.A.detach(), x)  # Z: (B, carried P, O)
    J = torch.zeros(B, dyn.n_outputs, net.topology.n_edges, dtype=Z.dtype, device=Z.device)
    J[:, :, carried_edges(net.topology, net.ticks).to(Z.device)] = Z.transpose(1, 2)
    return y, J


def outputs_and_jacobian(
    model: nn.Module, x: Any, initial_states: Mapping[str, torch.Tensor] | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """(y, J) from one forward run: MeshNet y (B, O), J (B, O, P); diagram y (T, B, O),
    J (T, B, O, P).  See the module docstring for the column order."""
    if isinstance(model, MeshNet):
        if initial_states is not None:
            raise ValueError("initial_states applies to block diagrams only, not to a MeshNet")
        return _mesh_jacobian(model, x)
    if _is_diagram(model):
        from_diagram: Any = getattr(model, "output_jacobian")  # noqa: B009 (duck-typed Diagram)
        return from_diagram(x, initial_states)
    raise TypeError(
        "jacobian expects a meshprop.MeshNet or a meshprop.diagram.Diagram, got "
        f"{type(model).__name__}"
    )


def jacobian(
    model: nn.Module, x: Any, initial_states: Mapping[str, torch.Tensor] | None = None
) -> torch.Tensor:
    """The Jacobian of every output with respect to every parameter, in one forward run.

    MeshNet: x (B, I) or (ticks, B, I) → (B, O, P), J[b, o, p] = ∂y[b, o]/∂A[i_p, j_p] with
    (i_p, j_p) = ``net.topology.edges[p]``.  Diagram: x (T, B, width) (a dict by Input name when
    there are several) → (T, B, O, P), J[k, b, o, p] = ∂y(k)[b, o]/∂θ_p, the outputs packed in
    the order of ``output_names``, the parameters those of ``parameter_dict()`` flattened in order
    (``meshprop.diagram.sensitivity.parameter_slices``).  Exact (the sensitivities of paper 000
    Eq. 13 carried forward), computed without autograd.
    """
    return outputs_and_jacobian(model, x, initial_states)[1]


class ParameterVector:
    """A model's P trainable parameters as one flat vector, in the Jacobian's column order."""

    def __init__(self, model: nn.Module) -> None:
        if isinstance(model, MeshNet):
            edges = model.topology.edges.to(model.A.device)
            self._edges: tuple[torch.Tensor, torch.Tensor] | None = (edges[:, 0], edges[:, 1])
            self._params: dict[str, nn.Parameter] = {"A": model.A}
        elif _is_diagram(model):
            self._edges = None
            self._params = dict(model.parameter_dict())  # type: ignore[operator]
        else:
            raise TypeError(
                "expected a meshprop.MeshNet or a meshprop.diagram.Diagram, got "
                f"{type(model).__name__}"
            )
        if not self._params or self.size == 0:
            raise ValueError("the model has no trainable parameter")

    @property
    def size(self) -> int:
        if self._edges is not None:
            return len(self._edges[0])
        return sum(p.numel() for p in self._params.values())

    def get(self) -> torch.Tensor:
        """θ, shape (P,), a copy."""
        with torch.no_grad():
            if self._edges is not None:
                return self._params["A"][self._edges].clone()
            return torch.cat([p.detach().reshape(-1) for p in self._params.values()])

    def set(self, theta: torch.Tensor) -> None:
        """Write θ back (a MeshNet's entries outside the mask are left untouched: 0)."""
        if theta.shape != (self.size,):
            raise ValueError(f"expected a vector of {self.size} parameters, got {theta.shape}")
        with torch.no_grad():
            if self._edges is not None:
                A = self._params["A"]
                A[self._edges] = theta.to(A.dtype)
                return
            offset = 0
            for p in self._params.values():
                p.copy_(theta[offset : offset + p.numel()].reshape(p.shape))
                offset += p.numel()
