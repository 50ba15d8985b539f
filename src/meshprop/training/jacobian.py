"""``meshprop.jacobian``: the Jacobian of every output with respect to every parameter, in one
forward run of the sensitivities — never one gradient call per output.

* MeshNet: the sparse FOP recursion (``engines/fop_sparse.py``) carries Z[b, (p, o)] =
  ∂S_{T,o}/∂w_p forward with the state (paper 000, Eq. 13 / 17) on the edge vector w
  (``net.edge_weights()``, so either layout); at the last tick that is the Jacobian of
  y = S_T[outputs].  Result (B, O, P), the P columns being the edges of ``net.topology.edges``
  (row-major); the edges with no path to an output (``engines/reach.py``) have a column of exact
  zeros.  Nothing of size N² is allocated.
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

from ..engines.fop_sparse import last_pairs, sparse_fop_bytes, sparse_fop_forward
from ..memory import check_fits, format_bytes
from ..mesh import MeshNet

__all__ = ["ParameterVector", "jacobian", "outputs_and_jacobian"]


def _is_diagram(model: object) -> bool:
    return callable(getattr(model, "jacobian", None)) and callable(
        getattr(model, "parameter_dict", None)
    )


def _mesh_jacobian(net: MeshNet, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    dyn = net.dynamics
    x = net.prepare_input(x)
    B, O, P = dyn.batch_size(x), dyn.n_outputs, net.topology.n_edges
    itemsize = net.parameter.element_size()
    need = sparse_fop_bytes(dyn, B, itemsize) + B * O * P * itemsize
    check_fits(
        need,
        "jacobian",
        lambda limit: (
            f"the Jacobian of {O} outputs by {P} weights for a batch of {B} needs about "
            f"{format_bytes(need)} but the memory limit is {format_bytes(limit)}; use a "
            "smaller batch, or raise the limit (meshprop.set_memory_limit)"
        ),
    )
    with torch.no_grad():
        y, Z = sparse_fop_forward(dyn, net.edge_weights(), x)  # Z: (B, pairs (p, o) of tick T)
        edge, output = last_pairs(dyn)
        J = torch.zeros(B, O, P, dtype=Z.dtype, device=Z.device)
        J[:, output.to(Z.device), edge.to(Z.device)] = Z
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
            self._mesh: MeshNet | None = model
            self._params: dict[str, nn.Parameter] = {model.storage.parameter: model.parameter}
        elif _is_diagram(model):
            self._mesh = None
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
        if self._mesh is not None:
            return self._mesh.topology.n_edges
        return sum(p.numel() for p in self._params.values())

    def get(self) -> torch.Tensor:
        """θ, shape (P,), a copy."""
        with torch.no_grad():
            if self._mesh is not None:
                return self._mesh.edge_weights().clone()
            return torch.cat([p.detach().reshape(-1) for p in self._params.values()])

    def set(self, theta: torch.Tensor) -> None:
        """Write θ back (a MeshNet's edge weights, through its layout: entries of A outside the
        mask stay 0)."""
        if theta.shape != (self.size,):
            raise ValueError(f"expected a vector of {self.size} parameters, got {theta.shape}")
        with torch.no_grad():
            if self._mesh is not None:
                param = self._mesh.parameter
                param.copy_(self._mesh.storage.from_edge_values(theta.to(param.dtype)))
                return
            offset = 0
            for p in self._params.values():
                p.copy_(theta[offset : offset + p.numel()].reshape(p.shape))
                offset += p.numel()
