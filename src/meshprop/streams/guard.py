"""The memory guard for streams: a carry's estimate checked against the limit of
:mod:`meshprop.memory` before anything of it is allocated."""

from __future__ import annotations

from ..dynamics import Dynamics
from ..layout import Layout
from ..memory import MEMORY_LIMIT_ENV, check_fits, format_bytes
from .protocol import StreamMethod

__all__ = ["check_stream_memory"]


def check_stream_memory(
    method: StreamMethod,
    dyn: Dynamics,
    storage: Layout,
    batch: int,
    itemsize: int,
    length: int = 1,
) -> int:
    """Raise :class:`~meshprop.memory.MemoryLimitError` when ``method``'s carry for ``batch``
    streams (``length`` elements stored, for methods that store them) would exceed the limit;
    else return its estimate in bytes."""
    need = int(method.estimate_bytes(dyn, storage, batch, itemsize, length))
    topo = dyn.topology
    stored = f", {length} elements" if length > 1 else ""

    def explain(limit: int) -> str:
        describe = getattr(method, "describe_cost", None)
        detail = f" ({describe(dyn, batch, itemsize)})" if describe is not None else ""
        return (
            f"the stream method {method.name!r} would need about {format_bytes(need)} (batch "
            f"{batch}{stored}, {dyn.ticks} ticks, {topo.n_neurons} neurons, {topo.n_edges} edges)"
            f"{detail} "
            f"but the memory limit is {format_bytes(limit)}; use a smaller batch, a smaller "
            f"network, a shorter sequence or window, or method 'tbptt' with a short truncation "
            f"(its memory does not grow with the network's edges), or raise the limit "
            f"(meshprop.set_memory_limit(...) or ${MEMORY_LIMIT_ENV})"
        )

    check_fits(need, method.name, explain)
    return need
