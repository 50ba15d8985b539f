"""meshprop: mesh neural networks of any topology with exact forward-only (FOP) and reciprocal
(BPTT) gradients.

    import meshprop as mp
    topo = mp.Topology.random(inputs=4, hidden=10, outputs=3, density=0.5, seed=0)
    net = mp.MeshNet(topo, ticks=3, activation="relu", grad="fop")
    loss, dA = mp.gradient(net, x, labels, loss="cross_entropy", method="bptt")

The core (topology, networks, gradient engines, losses, ``fit``, checkpoints, the memory guard)
and the subpackages ``mp.data`` (datasets; scikit-learn, mnist1d), ``mp.diagram`` (block
diagrams, paper 004), ``mp.layered`` (layered networks), ``mp.bench`` (benchmarks), ``mp.runs``
(training runs) and ``mp.plots`` (matplotlib figures) are imported the first time they are used:
``import meshprop`` itself does not import torch (``meshprop --version`` answers at once).
"""

from __future__ import annotations

import importlib as _importlib
from importlib.metadata import PackageNotFoundError as _PackageNotFoundError
from importlib.metadata import version as _metadata_version
from importlib.util import find_spec as _find_spec
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # the names below are imported on first use (PEP 562), so that the
    # ``meshprop`` command answers --version and --help without importing torch
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
    from .training import EarlyStopping, History, evaluate, fit
    from .training.jacobian import jacobian

#: where each public name of the core lives (imported the first time it is used)
_CORE = {
    "ACTIVATIONS": "activations",
    "load_checkpoint": "checkpoint",
    "save_checkpoint": "checkpoint",
    "from_rnn": "convert",
    "to_rnn": "convert",
    "GRADIENT_METHODS": "engines",
    "GradientEngine": "engines",
    "get_engine": "engines",
    "register_engine": "engines",
    "export_onnx": "export",
    "LOSSES": "losses",
    "MemoryLimitError": "memory",
    "get_memory_limit": "memory",
    "memory_limit": "memory",
    "set_memory_limit": "memory",
    "MeshNet": "mesh",
    "gradient": "mesh",
    "ONLINE_METHODS": "sequence",
    "ChaoticNetworkError": "sequence",
    "OnlineLearner": "sequence",
    "SequenceState": "sequence",
    "sequence_gradient": "sequence",
    "Topology": "topology",
    "EarlyStopping": "training",
    "History": "training",
    "evaluate": "training",
    "fit": "training",
    "jacobian": "training",
}

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
except _PackageNotFoundError:  # imported from a source tree that was never installed
    __version__ = "0+unknown"


def __getattr__(name: str) -> Any:
    """The core's names and the subpackages (``mp.data``, ...): imported when first used."""
    if name in _CORE:
        value = getattr(_importlib.import_module(f"{__name__}.{_CORE[name]}"), name)
        globals()[name] = value
        return value
    if name in LAZY_SUBMODULES or (
        not name.startswith("_") and _find_spec(f"{__name__}.{name}") is not None
    ):  # mp.data, ... and any other module of the package (mp.layout, mp.engines, ...)
        return _importlib.import_module(f"{__name__}.{name}")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    """The public names only (``__all__``, ``__version__``), not the module's own imports."""
    return sorted({*__all__, "__version__"})
