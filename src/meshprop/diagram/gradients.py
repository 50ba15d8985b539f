"""J = L(y(1..T), d(1..T)) and its gradient with respect to every trainable parameter of a
diagram, by one of its gradient methods (:mod:`meshprop.diagram.methods`).

The method is bound as a :class:`meshprop.protocol.VJPFunction` and run by
``meshprop.protocol.value_and_grad``: forward, ∂L/∂y(k) from :mod:`meshprop.losses`, backward.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import torch
import torch.nn.functional as F

from .. import protocol
from .graph import Graph
from .methods import DIAGRAM_METHODS, bind, pack, unpack
from .simulate import by_name, check_inputs

__all__ = ["DIAGRAM_METHODS", "gradient"]

LossArg = str | Callable


def _check_targets(
    diagram: Graph, targets, T: int, B: int, loss: LossArg
) -> dict[str, torch.Tensor]:
    """{output name: target}, every output given; for "mse", float (T, B, width) and finite."""
    names = diagram.output_names
    targets = by_name(targets, names, "targets")
    out = {}
    for name, width in zip(names, diagram.output_widths(), strict=True):
        t = targets[name]
        if not isinstance(t, torch.Tensor):
            raise TypeError(f"target {name!r} must be a torch.Tensor, got {type(t).__name__}")
        if loss == "mse":
            if not t.dtype.is_floating_point:
                raise TypeError(f"mse expects a floating-point target for {name!r}, got {t.dtype}")
            if tuple(t.shape) != (T, B, width):
                raise ValueError(
                    f"mse target for {name!r} must have the output's shape {(T, B, width)}, "
                    f"got {tuple(t.shape)}"
                )
            if not torch.isfinite(t).all():
                raise ValueError(f"target {name!r} contains NaN or inf")
        out[name] = t.to(diagram.device)
    return out


def gradient(
    diagram: Graph,
    inputs,
    targets,
    loss: LossArg = "mse",
    method: str = "reciprocal",
    initial_states: Mapping[str, torch.Tensor] | None = None,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """The loss J and {"block.param": ∂J/∂param} of ``diagram`` on one batch of sequences.

    ``inputs``: (T, B, width) (a dict by Input name when there are several); ``targets``: the
    same for the outputs.  ``loss="mse"`` is Σ_outputs mean((y − d)²) over all T, B, channels;
    a callable receives (y, targets) — tensors, or dicts when targets is a dict — and returns a
    scalar (∂J/∂y from autograd on the loss alone).  ``method``: "reciprocal", "forward" or
    "autograd".  Raises FloatingPointError when J is not finite.
    """
    function = bind(diagram, method, initial_states)
    if loss != "mse" and not callable(loss):
        raise ValueError(f"unknown loss {loss!r}; expected 'mse' or a callable")
    feeds = check_inputs(diagram, inputs)
    T, B = next(iter(feeds.values())).shape[:2]
    by_name = isinstance(targets, Mapping)
    targets = _check_targets(diagram, targets, T, B, loss)
    names, widths = diagram.output_names, diagram.output_widths()
    x = pack(feeds, diagram.input_names)
    if not by_name:  # one output: the loss sees the tensors
        return protocol.value_and_grad(
            function, diagram.parameter_dict(), x, targets[names[0]], loss
        )

    def by_output(y: torch.Tensor, _unused: torch.Tensor) -> torch.Tensor:
        """The loss of the outputs (and targets) by name, from the packed y."""
        outs = unpack(y, names, widths)
        if loss == "mse":
            return sum(
                (F.mse_loss(outs[n], targets[n].to(y.dtype)) for n in names), y.new_zeros(())
            )
        assert callable(loss)
        return loss(outs, targets)

    return protocol.value_and_grad(function, diagram.parameter_dict(), x, x.new_zeros(0), by_output)
