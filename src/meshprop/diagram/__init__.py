"""Block diagrams of discrete-time networks and their reciprocal networks (paper 004).

from meshprop.diagram import Diagram, Gain, Function, Delay, Sum
d = Diagram()
x = d.input("x", 1)
...
d.output("y", y)
y_seq = d.run(x_seq)                                   # (T, B, width)
r = d.reciprocal()                                     # the six rules, as a Diagram
loss, grads = d.gradient(x_seq, d_seq, "mse", method="reciprocal")  # or "forward", "autograd"
d.grad = "reciprocal"; loss_fn(d(x_seq), d_seq).backward()           # the same, as a model

Modules: ``block`` (the block interface), one module per group of the paper's rules with each
block beside its reciprocal (``junctions`` 1–2, ``functions`` 3, ``gains`` 3 and Eq. 1,
``jacobians`` 4, ``delays`` 5, ``terminals`` 6), ``graph`` (wiring and the reciprocal
construction), ``simulate`` (the stepping loop), ``methods`` (the three gradient methods as
VJP functions), ``gradients``, ``model`` (``Diagram``), ``synapses``, ``examples``, ``draw``.
"""

from . import examples
from .block import Block, Port
from .delays import Advance, Delay, TappedAdvanceLine, TappedDelayLine
from .draw import draw
from .functions import Function
from .gains import DiagGain, Gain
from .gradients import DIAGRAM_METHODS, gradient
from .graph import AlgebraicLoopError
from .jacobians import Concat, Multivariate, Product, Split
from .junctions import Branch, Sum
from .model import Diagram
from .synapses import fir_synapse, iir_synapse
from .terminals import Constant, Input, Output

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
