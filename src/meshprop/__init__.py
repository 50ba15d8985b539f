"""meshprop: mesh neural networks of any topology with exact forward-only (FOP) and reciprocal
(BPTT) gradients.

    import meshprop as mp
    topo = mp.Topology.random(inputs=4, hidden=10, outputs=3, density=0.5, seed=0)
    net = mp.MeshNet(topo, ticks=3, activation="relu", grad="fop")
    loss, dA = mp.gradient(net, x, labels, loss="cross_entropy", method="bptt")

The core (topology, networks, gradient engines, losses, ``fit``, checkpoints, the memory guard)
is imported with the package.  The subpackages ``mp.data`` (datasets; scikit-learn, mnist1d),
``mp.diagram`` (block diagrams, paper 004), ``mp.layered`` (layered networks), ``mp.bench``
(benchmarks), ``mp.runs`` (training runs) and ``mp.plots`` (matplotlib figures) are imported
the first time they are used.
"""

from __future__ import annotations

import importlib
from importlib.metadata import PackageNotFoundError
from importlib.metadata import version as _metadata_version
from types import ModuleType

from .activations import ACTIVATIONS
from .checkpoint import load_checkpoint, save_checkpoint
from .convert import from_rnn, to_rnn
from .engines import GRADIENT_METHODS, GradientEngine, get_engine, register_engine
from .export import export_onnx
from .losses import LOSSES
from .memory import MemoryLimitError, get_memory_limit, memory_limit, set_memory_limit
from .mesh import MeshNet, gradient
from .sequence import (
    ONLINE_METHODS,
    ChaoticNetworkError,
    OnlineLearner,
    SequenceState,
    sequence_gradient,
)
from .topology import Topology
from .training import EarlyStopping, History, evaluate, fit, jacobian

#: subpackages imported on first use (``mp.data`` ...), not with ``import meshprop``
LAZY_SUBMODULES = ("bench", "data", "diagram", "layered", "plots", "runs", "structure")

__all__ = [
    "ACTIVATIONS",
    "GRADIENT_METHODS",
    "LOSSES",
    "ONLINE_METHODS",
    "ChaoticNetworkError",
    "EarlyStopping",
    "GradientEngine",
    "History",
    "MemoryLimitError",
    "MeshNet",
    "OnlineLearner",
    "SequenceState",
    "Topology",
    "bench",
    "data",
    "diagram",
    "evaluate",
    "export_onnx",
    "fit",
    "from_rnn",
    "get_engine",
    "get_memory_limit",
    "gradient",
    "jacobian",
    "layered",
    "load_checkpoint",
    "memory_limit",
    "register_engine",
    "save_checkpoint",
    "sequence_gradient",
    "set_memory_limit",
    "structure",
    "to_rnn",
]

try:  # the installed distribution's version (pyproject.toml), not a second copy of it
    __version__ = _metadata_version("meshprop")
except PackageNotFoundError:  # imported from a source tree that was never installed
    __version__ = "0+unknown"


def __getattr__(name: str) -> ModuleType:
    """``mp.data``, ``mp.diagram``, ...: import the subpackage when first used."""
    if name in LAZY_SUBMODULES:
        return importlib.import_module(f"{__name__}.{name}")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), *LAZY_SUBMODULES})
