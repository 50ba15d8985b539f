"""``Diagram``: a discrete-time network drawn as blocks joined by wires (paper 004 §2), as a model.

``diagram(x)`` runs it and is differentiable: ``loss.backward()`` computes the parameter
gradients by the method named by ``diagram.grad`` — the reciprocal network ("reciprocal", the
default), sensitivities carried forward ("forward"), each bridged by ``meshprop.protocol.apply``,
or plain PyTorch autograd ("autograd").  ``diagram.gradient(...)`` returns the loss and the
gradients directly.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch

from .. import protocol
from .gradients import LossArg, gradient
from .graph import Graph
from .methods import bind, check_method, pack
from .sensitivity import output_jacobian
from .simulate import check_inputs, simulate

__all__ = ["Diagram"]

Signals = torch.Tensor | dict[str, torch.Tensor]


class Diagram(Graph):
    """A block diagram.  Build it with ``input``, ``add``, ``connect`` and ``output``::

        d = Diagram()
        x = d.input("x", 1)
        s = d.add(Sum(2, 1), x)                 # second port wired later
        y = d.add(Function("tanh", 1), s)
        z = d.add(Delay(1), y)
        d.connect(d.add(Gain(1, 1), z), s.block, 1)   # feedback through q⁻¹
        d.output("y", y)

    Trainable parameters are those of the blocks, named "block.param" (``parameter_dict()``).
    ``grad`` is the gradient method ``loss.backward()`` uses after ``d(x)``: one of
    ``DIAGRAM_METHODS``.
    """

    #: the axis of the samples in inputs and outputs (T, B, width): how ``mp.fit`` batches them
    sample_axis = 1

    def __init__(self, grad: str = "reciprocal") -> None:
        super().__init__()
        self.grad = grad

    @property
    def grad(self) -> str:
        return self._grad

    @grad.setter
    def grad(self, method: str) -> None:
        self._grad = check_method(method)

    def forward(
        self,
        inputs: Signals,
        initial_states: Mapping[str, torch.Tensor] | None = None,
    ) -> Signals:
        """The outputs (T, B, width) (a dict by name when there are several) for inputs
        (T, B, width) (a dict by Input name when there are several); zero initial conditions
        unless ``initial_states`` gives {block name: state}.  Differentiable: the parameter
        gradients (and the input gradients, except for grad="forward") come from ``self.grad``.
        """
        feeds = check_inputs(self, inputs)
        params = self.parameter_dict()
        needs_grad = any(x.requires_grad for x in feeds.values()) or bool(params)
        if self.grad == "autograd" or not (torch.is_grad_enabled() and needs_grad):
            outs, _ = simulate(self, feeds, self.block_params(), initial_states)
        else:
            function = bind(self, self.grad, initial_states)
            if not function.provides_input_grad and any(x.requires_grad for x in feeds.values()):
                raise ValueError(
                    f"grad={self.grad!r} computes parameter gradients only, but an input "
                    "requires grad; use grad='reciprocal' or 'autograd', or detach the input"
                )
            y = protocol.apply(function, params, pack(feeds, self.input_names))
            outs = function.outputs(y)
        return outs[self.output_names[0]] if len(outs) == 1 else outs

    def run(
        self,
        inputs: Signals,
        initial_states: Mapping[str, torch.Tensor] | None = None,
    ) -> Signals:
        """Simulate over a sequence: inputs (T, B, width) (a dict by name when there are several
        Input blocks) → outputs (T, B, width) (a dict when there are several Outputs).  Zero
        initial conditions unless ``initial_states`` gives {block name: state}.  Differentiable
        by autograd when gradients are enabled."""
        outs, _ = simulate(self, check_inputs(self, inputs), self.block_params(), initial_states)
        return outs[self.output_names[0]] if len(outs) == 1 else outs

    def gradient(
        self,
        inputs: Signals,
        targets: Signals,
        loss: LossArg = "mse",
        method: str = "reciprocal",
        initial_states: Mapping[str, torch.Tensor] | None = None,
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """(loss, {"block.param": ∂J/∂param}) by ``method``: "reciprocal", "autograd" or
        "forward".  See ``meshprop.diagram.gradients.gradient``."""
        return gradient(
            self, inputs, targets, loss=loss, method=method, initial_states=initial_states
        )

    def jacobian(
        self,
        inputs: Signals,
        initial_states: Mapping[str, torch.Tensor] | None = None,
    ) -> torch.Tensor:
        """J[k, b, o, p] = ∂y(k)[b, o]/∂θ_p, shape (T, B, O, P), in one forward run of the
        sensitivities (``meshprop.diagram.sensitivity``): outputs packed in the order of
        ``output_names``, parameters in the order of ``parameter_dict()``, each flattened."""
        return output_jacobian(self, inputs, initial_states)[1]

    def output_jacobian(
        self,
        inputs: Signals,
        initial_states: Mapping[str, torch.Tensor] | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(y, J): the packed outputs (T, B, O) and :meth:`jacobian`, from the same run."""
        return output_jacobian(self, inputs, initial_states)
