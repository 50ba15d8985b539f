"""meshprop: mesh neural networks of any topology with exact forward-only (FOP) and reciprocal
(BPTT) gradients.

    import meshprop as mp
    topo = mp.Topology.random(inputs=4, hidden=10, outputs=3, density=0.5, seed=0)
    net = mp.MeshNet(topo, ticks=3, activation="relu", grad="fop")
    loss, dA = mp.gradient(net, x, labels, loss="cross_entropy", method="bptt")
"""

from . import diagram
from .activations import ACTIVATIONS
from .engines import GRADIENT_METHODS, GradientEngine, get_engine, register_engine
from .losses import LOSSES
from .memory import MemoryLimitError, get_memory_limit, memory_limit, set_memory_limit
from .mesh import MeshNet, gradient
from .topology import Topology

__all__ = [
    "ACTIVATIONS",
    "GRADIENT_METHODS",
    "LOSSES",
    "GradientEngine",
    "MemoryLimitError",
    "MeshNet",
    "Topology",
    "diagram",
    "get_engine",
    "get_memory_limit",
    "gradient",
    "memory_limit",
    "register_engine",
    "set_memory_limit",
]

__version__ = "0.1.0"
