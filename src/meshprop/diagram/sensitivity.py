"""The Jacobian of every output at every step with respect to every parameter, in one run.

The "forward" gradient method (:class:`meshprop.diagram.methods.ForwardMethod`) already carries
∂s(k)/∂θ of every signal s forward in time (RTRL on a diagram, paper 000's forward-only idea
applied to paper 004's block diagrams); at the outputs these sensitivities *are* the Jacobian
∂y(k)/∂θ.  So one forward run gives all T·O rows at once, where a reverse method would need one
backward run per (k, output).  This is what Levenberg–Marquardt training needs
(:func:`meshprop.training.levenberg_marquardt`).

Column order: the parameters of ``diagram.parameter_dict()`` in its order, each flattened
row-major (:func:`parameter_slices` gives every parameter's columns).
"""

from __future__ import annotations

from collections.abc import Mapping

import torch

from .graph import Graph
from .methods import ForwardMethod, pack
from .simulate import check_inputs

__all__ = ["output_jacobian", "parameter_slices"]


def parameter_slices(diagram: Graph) -> dict[str, slice]:
    """{"block.param": the columns of its (flattened) entries in the Jacobian}."""
    slices, offset = {}, 0
    for key, p in diagram.parameter_dict().items():
        slices[key] = slice(offset, offset + p.numel())
        offset += p.numel()
    return slices


def output_jacobian(
    diagram: Graph, inputs, initial_states: Mapping[str, torch.Tensor] | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """(y, J): the outputs y of shape (T, B, O) and J[k, b, o, p] = ∂y(k)[b, o]/∂θ_p of shape
    (T, B, O, P), from one run of the forward sensitivities.

    ``inputs``: (T, B, width), or a dict by Input name; the outputs are packed side by side in
    the order of ``output_names`` (O = Σ output widths); P = the number of trainable parameter
    entries (columns ordered as :func:`parameter_slices`).  Computed without autograd.
    """
    feeds = check_inputs(diagram, inputs)
    params = {key: p.detach() for key, p in diagram.parameter_dict().items()}
    if not params:
        raise ValueError("the diagram has no trainable parameter: its Jacobian is empty")
    method = ForwardMethod(diagram, initial_states)
    with torch.no_grad():
        y, J = method.forward(params, pack(feeds, diagram.input_names))
    return y, J
