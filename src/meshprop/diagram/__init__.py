"""Block diagrams of discrete-time networks and their reciprocal networks (paper 004).

from meshprop.diagram import Diagram, Gain, Function, Delay, Sum
d = Diagram()
x = d.input("x", 1)
...
d.output("y", y)
y_seq = d.run(x_seq)                                   # (T, B, width)
r = d.reciprocal()                                     # the six rules, as a Diagram
loss, grads = d.gradient(x_seq, d_seq, "mse", method="reciprocal")  # or "forward", "autograd"
"""

from . import examples
from .blocks import (
    Block,
    Branch,
    Concat,
    Constant,
    Delay,
    DiagGain,
    Function,
    Gain,
    Input,
    Multivariate,
    Output,
    Product,
    Split,
    Sum,
    TappedDelayLine,
)
from .draw import draw
from .gradients import DIAGRAM_METHODS, gradient
from .graph import AlgebraicLoopError, Diagram, Port
from .reciprocal_blocks import Advance, TappedAdvanceLine
from .synapses import fir_synapse, iir_synapse

__all__ = [
    "DIAGRAM_METHODS",
    "Advance",
    "AlgebraicLoopError",
    "Block",
    "Branch",
    "Concat",
    "Constant",
    "Delay",
    "DiagGain",
    "Diagram",
    "Function",
    "Gain",
    "Input",
    "Multivariate",
    "Output",
    "Port",
    "Product",
    "Split",
    "Sum",
    "TappedAdvanceLine",
    "TappedDelayLine",
    "draw",
    "examples",
    "fir_synapse",
    "gradient",
    "iir_synapse",
]
