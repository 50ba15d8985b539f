"""``Diagram``: a discrete-time network drawn as blocks joined by wires (paper 004 §2).

A wire joins one output port to one input port; an output port may feed several input ports
(an implicit branching point, rule 2 turns it into a sum).  Every input port must be fed by
exactly one wire.  The blocks whose output at time k depends on their input at time k
(``feedthrough``) must form an acyclic graph: a loop has to pass through a unit delay, otherwise
it is an algebraic loop and ``validate`` rejects it, naming the blocks on the loop.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import NamedTuple

import networkx as nx
import torch
from torch import nn

from .blocks import Block, Input, Output

__all__ = ["AlgebraicLoopError", "Diagram", "Port"]

_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


class Port(NamedTuple):
    """Output port ``index`` of block ``block``."""

    block: str
    index: int = 0


class AlgebraicLoopError(ValueError):
    """A feedback loop without a unit delay: the network cannot be simulated step by step."""


class Diagram(nn.Module):
    """A block diagram.  Build it with ``input``, ``add``, ``connect`` and ``output``::

        d = Diagram()
        x = d.input("x", 1)
        s = d.add(Sum(2, 1), x)                 # second port wired later
        y = d.add(Function("tanh", 1), s)
        z = d.add(Delay(1), y)
        d.connect(d.add(Gain(1, 1), z), s.block, 1)   # feedback through q⁻¹
        d.output("y", y)

    Trainable parameters are those of the blocks (``parameter_dict()``: "block.param" → tensor).
    """

    def __init__(self) -> None:
        super().__init__()
        self.blocks = nn.ModuleDict()
        self.edges: dict[tuple[str, int], Port] = {}
        self._cache: dict[str, object] = {}

    # ------------------------------------------------------------------ building
    def add(self, block: Block, *sources: Port | None, name: str | None = None):
        """Add ``block``; wire ``sources`` (Ports, or None to wire later) to its input ports.

        Returns its output Port (one output), a tuple of Ports (several) or None (a sink)."""
        if not isinstance(block, Block):
            raise TypeError(f"expected a meshprop.diagram Block, got {type(block).__name__}")
        if block.name:
            raise ValueError(f"block {block.name!r} already belongs to a diagram")
        if name is None:
            n = len(self.blocks)
            name = f"{block.kind}{n}"
            while name in self.blocks:
                n += 1
                name = f"{block.kind}{n}"
        if not isinstance(name, str) or not _NAME.match(name):
            raise ValueError(f"block name must be an identifier (letters, digits, _), got {name!r}")
        if name in self.blocks:
            raise ValueError(f"a block named {name!r} already exists")
        if len(sources) > len(block.in_widths):
            raise ValueError(
                f"block {name!r} ({block.kind}) has {len(block.in_widths)} input ports, "
                f"got {len(sources)} sources"
            )
        block.name = name
        self.blocks[name] = block
        self._cache.clear()
        try:
            for i, src in enumerate(sources):
                if src is not None:
                    self.connect(src, name, i)
        except (ValueError, TypeError):  # leave the diagram as it was
            for key in [k for k in self.edges if k[0] == name]:
                del self.edges[key]
            del self.blocks[name]
            block.name = ""
            raise
        outs = [Port(name, j) for j in range(len(block.out_widths))]
        if not outs:
            return None
        return outs[0] if len(outs) == 1 else tuple(outs)

    def input(self, name: str, width: int) -> Port:
        """An external input x(k) named ``name`` with ``width`` features."""
        return self.add(Input(width), name=name)

    def output(self, name: str, source: Port) -> None:
        """Declare ``source`` an output y(k) named ``name``."""
        width = self._out_width(source)
        self.add(Output(width), source, name=name)

    def connect(self, source: Port, block: str | Block, port: int = 0) -> None:
        """Wire output ``source`` to input ``port`` of ``block``."""
        dst = block.name if isinstance(block, Block) else block
        if dst not in self.blocks:
            raise ValueError(f"no block named {dst!r} in this diagram")
        b = self.blocks[dst]
        if not 0 <= port < len(b.in_widths):
            raise ValueError(
                f"block {dst!r} ({b.kind}) has input ports 0..{len(b.in_widths) - 1}, got {port}"
            )
        if (dst, port) in self.edges:
            raise ValueError(f"input port {port} of {dst!r} is already wired")
        width = self._out_width(source)
        if width != b.in_widths[port]:
            raise ValueError(
                f"width mismatch: {source.block!r} port {source.index} carries {width} "
                f"channels but input port {port} of {dst!r} expects {b.in_widths[port]}"
            )
        self.edges[(dst, port)] = Port(source.block, source.index)
        self._cache.clear()

    def _out_width(self, source: Port) -> int:
        if not isinstance(source, tuple) or len(source) != 2:
            raise TypeError(f"expected a Port (block, index), got {source!r}")
        if source.block not in self.blocks:
            raise ValueError(f"no block named {source.block!r} in this diagram")
        widths = self.blocks[source.block].out_widths
        if not 0 <= source.index < len(widths):
            raise ValueError(f"block {source.block!r} has no output port {source.index}")
        return widths[source.index]

    # --------------------------------------------------------------- inspection
    @property
    def input_names(self) -> list[str]:
        return [n for n, b in self.blocks.items() if isinstance(b, Input)]

    @property
    def output_names(self) -> list[str]:
        return [n for n, b in self.blocks.items() if type(b) is Output or _is_result(b)]

    def parameter_dict(self) -> dict[str, nn.Parameter]:
        """Every trainable parameter, keyed "block.param"."""
        return {
            f"{bn}.{pn}": p
            for bn, b in self.blocks.items()
            for pn, p in b.named_parameters()
            if p.requires_grad
        }

    def fanout(self) -> dict[Port, list[tuple[str, int]]]:
        """For every output port, the input ports it feeds (in wiring order)."""
        fan: dict[Port, list[tuple[str, int]]] = {}
        for (dst, port), src in self.edges.items():
            fan.setdefault(src, []).append((dst, port))
        return fan

    def dependency_graph(self) -> nx.DiGraph:
        """Blocks, with an edge a → b when b's output at k needs a's output at k."""
        g = nx.DiGraph()
        g.add_nodes_from(self.blocks)
        for (dst, _port), src in self.edges.items():
            if self.blocks[dst].feedthrough:
                g.add_edge(src.block, dst)
        return g

    def validate(self) -> list[str]:
        """Check the wiring and return the order in which blocks are evaluated at each step."""
        if "order" in self._cache:
            return self._cache["order"]
        for name, b in self.blocks.items():
            for i in range(len(b.in_widths)):
                if (name, i) not in self.edges:
                    raise ValueError(f"input port {i} of block {name!r} ({b.kind}) is not wired")
        if not self.input_names:
            raise ValueError("the diagram has no Input block")
        if not self.output_names:
            raise ValueError("the diagram has no Output block")
        g = self.dependency_graph()
        try:
            cycle = nx.find_cycle(g)
        except nx.NetworkXNoCycle:
            cycle = None
        if cycle is not None:
            names = [a for a, _ in cycle] + [cycle[0][0]]
            raise AlgebraicLoopError(
                "algebraic loop without a delay: " + " -> ".join(names) + "; put a Delay "
                "(q⁻¹) on the loop"
            )
        order = list(nx.lexicographical_topological_sort(g, key=list(self.blocks).index))
        self._cache["order"] = order
        return order

    def source(self, block: str, port: int) -> Port:
        return self.edges[(block, port)]

    # ------------------------------------------------------------- computation
    @property
    def dtype(self) -> torch.dtype:
        for t in list(self.parameters()) + list(self.buffers()):
            if t.dtype.is_floating_point:
                return t.dtype
        return torch.float64

    @property
    def device(self) -> torch.device:
        for t in list(self.parameters()) + list(self.buffers()):
            return t.device
        return torch.device("cpu")

    def run(
        self,
        inputs: torch.Tensor | Mapping[str, torch.Tensor],
        initial_states: Mapping[str, torch.Tensor] | None = None,
    ) -> torch.Tensor | dict[str, torch.Tensor]:
        """Simulate over a sequence: inputs (T, B, width) (a dict by name when there are several
        Input blocks) → outputs (T, B, width) (a dict when there are several Outputs).  Zero
        initial conditions unless ``initial_states`` gives {block name: state}.  Differentiable
        by autograd when gradients are enabled."""
        from .simulate import check_inputs, simulate

        feeds = check_inputs(self, inputs)
        outs, _ = simulate(self, feeds, initial_states)
        return outs[self.output_names[0]] if len(outs) == 1 else outs

    def reciprocal(self) -> Diagram:
        """The reciprocal network (paper 004 §2), built by the six rules; cached."""
        if "reciprocal" not in self._cache:
            from .reciprocal import build_reciprocal

            self._cache["reciprocal"] = build_reciprocal(self)
        return self._cache["reciprocal"]

    def gradient(self, inputs, targets, loss="mse", method: str = "reciprocal", **kwargs):
        """(loss, {"block.param": ∂J/∂param}) by ``method``: "reciprocal", "autograd" or
        "forward".  See ``meshprop.diagram.gradients.gradient``."""
        from .gradients import gradient

        return gradient(self, inputs, targets, loss=loss, method=method, **kwargs)

    def extra_repr(self) -> str:
        wires = ", ".join(f"{s.block}:{s.index}->{d}:{p}" for (d, p), s in self.edges.items())
        return f"wires=[{wires}]"


def _is_result(block: Block) -> bool:
    from .reciprocal_blocks import InputGradient

    return isinstance(block, InputGradient)
