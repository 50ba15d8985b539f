"""meshprop: mesh neural networks of any topology with exact forward-only (FOP) and reciprocal
(BPTT) gradients.

    import meshprop as mp
    topo = mp.Topology.random(inputs=4, hidden=10, outputs=3, density=0.5, seed=0)
    net = mp.MeshNet(topo, ticks=3, activation="relu", grad="fop")
    loss, dA = mp.gradient(net, x, labels, loss="cross_entropy", method="bptt")
"""

from . import data, diagram, layered
from .activations import ACTIVATIONS
from .checkpoint import load_checkpoint, save_checkpoint
from .engines import GRADIENT_METHODS, GradientEngine, get_engine, register_engine
from .losses import LOSSES
from .memory import MemoryLimitError, get_memory_limit, memory_limit, set_memory_limit
from .mesh import MeshNet, gradient
from .topology import Topology
from .training import EarlyStopping, History, evaluate, fit

__all__ = [
    "ACTIVATIONS",
    "GRADIENT_METHODS",
    "LOSSES",
    "EarlyStopping",
    "GradientEngine",
    "History",
    "MemoryLimitError",
    "MeshNet",
    "Topology",
    "data",
    "diagram",
    "evaluate",
    "fit",
    "get_engine",
    "get_memory_limit",
    "gradient",
    "layered",
    "load_checkpoint",
    "memory_limit",
    "register_engine",
    "save_checkpoint",
    "set_memory_limit",
]

__version__ = "0.1.0"
