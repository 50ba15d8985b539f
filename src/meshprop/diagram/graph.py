"""The wiring of a block diagram (paper 004 §2) and the construction of its reciprocal network.

A wire joins one output port to one input port; an output port may feed several input ports
(an implicit branching point, rule 2 turns it into a sum).  Every input port must be fed by
exactly one wire.  The blocks whose output at time k depends on their input at time k
(``feedthrough``) must not close a loop *channel by channel*: a loop has to pass through a unit
delay — a Delay, or the delayed taps 1..K of a tapped delay line — otherwise it is an algebraic
loop and ``validate`` rejects it, naming the blocks on the loop (``schedule``, ``channel_graph``).

The reciprocal network: reverse every wire and replace every block by ``block.reciprocal()``
(the six rules: 1. summing junctions → branching points, 2. branching points → summing
junctions, 3. univariate functions → derivatives φ′(a(k)), a weight → its transpose,
4. multivariate functions → transposed Jacobians F′(k)ᵀ, 5. unit delays → unit advances,
6. outputs → inputs fed with ∂L/∂y(k)).  An output port feeding several input ports gets rule 2's
summing junction ``<block>__sum<j>``; an output port feeding nothing receives no error, a zero
source ``<block>__zero<j>``.  Reciprocal blocks keep the names of the blocks they replace (the two
networks are topologically equivalent), so input port j of a reciprocal block carries δ for
output port j of the forward block and vice versa.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from types import MappingProxyType
from typing import TypeVar, cast

import networkx as nx
import torch
from torch import nn

from .block import Block, Params, Port
from .delays import TappedAdvanceLine, TappedDelayLine
from .junctions import Sum
from .terminals import Input, Output, ZeroSource

__all__ = ["AlgebraicLoopError", "Graph", "Port"]

_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")

G = TypeVar("G", bound="Graph")


class AlgebraicLoopError(ValueError):
    """A feedback loop without a unit delay: the network cannot be simulated step by step."""


class Graph(nn.Module):
    """Blocks joined by wires.  Each block is a child module named like the block, so the
    parameters are named "block.param" (``named_parameters()``)."""

    def __init__(self) -> None:
        super().__init__()
        self.edges: dict[tuple[str, int], Port] = {}
        self._cache: dict[str, object] = {}

    # ------------------------------------------------------------------ building
    @property
    def blocks(self) -> Mapping[str, Block]:
        """The blocks by name, in the order they were added (read-only)."""
        return MappingProxyType(cast(dict[str, Block], self._modules))

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
            while name in self.blocks or hasattr(self, name):
                n += 1
                name = f"{block.kind}{n}"
        if not isinstance(name, str) or not _NAME.match(name):
            raise ValueError(f"block name must be an identifier (letters, digits, _), got {name!r}")
        if name in self.blocks:
            raise ValueError(f"a block named {name!r} already exists")
        if hasattr(self, name):
            raise ValueError(
                f"block name {name!r} is taken by an attribute of {type(self).__name__}; "
                "choose another name"
            )
        if len(sources) > len(block.in_widths):
            raise ValueError(
                f"block {name!r} ({block.kind}) has {len(block.in_widths)} input ports, "
                f"got {len(sources)} sources"
            )
        block.name = name
        self.add_module(name, block)
        self._cache.clear()
        try:
            for i, src in enumerate(sources):
                if src is not None:
                    self.connect(src, name, i)
        except (ValueError, TypeError):  # leave the diagram as it was
            for key in [k for k in self.edges if k[0] == name]:
                del self.edges[key]
            del self._modules[name]
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
        return [n for n, b in self.blocks.items() if b.is_result]

    def input_widths(self) -> list[int]:
        return [self.blocks[n].out_widths[0] for n in self.input_names]

    def output_widths(self) -> list[int]:
        return [self.blocks[n].in_widths[0] for n in self.output_names]

    def parameter_dict(self) -> dict[str, nn.Parameter]:
        """Every trainable parameter, keyed "block.param" (as ``named_parameters()`` names it)."""
        return {n: p for n, p in self.named_parameters() if p.requires_grad}

    def parameter_keys(self) -> dict[str, dict[str, str]]:
        """For every block, its parameters' local names → their names in ``named_parameters()``
        (a tensor shared by several blocks has one name, that of its first block)."""
        canonical = {id(p): key for key, p in self.named_parameters()}
        return {
            bn: {local: canonical[id(p)] for local, p in b.named_parameters(remove_duplicate=False)}
            for bn, b in self.blocks.items()
        }

    def block_params(self, params: Params | None = None) -> dict[str, dict[str, torch.Tensor]]:
        """Every block's parameters by local name; the entries of ``params`` (keyed like
        ``named_parameters()``) replace the block's own tensors."""
        keys = self.parameter_keys()
        return {
            bn: {
                local: p if params is None else params.get(keys[bn][local], p)
                for local, p in b.named_parameters(remove_duplicate=False)
            }
            for bn, b in self.blocks.items()
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

    def channel_graph(self) -> nx.DiGraph:
        """Channels, with an edge u → v when v at step k needs u at step k: ("o", block, port,
        channel) output channels, ("i", ...) input channels, ("h", block, 0, 0) a hub standing
        for a block whose every output channel reads every input channel."""
        g = nx.DiGraph()
        for (dst, port), src in self.edges.items():
            for c in range(self.blocks[dst].in_widths[port]):
                g.add_edge(("o", src.block, src.index, c), ("i", dst, port, c))
        for name, b in self.blocks.items():
            if not b.feedthrough:
                continue
            pairs = b.channel_dependencies()
            if pairs is None:
                hub = ("h", name, 0, 0)
                for port, width in enumerate(b.in_widths):
                    g.add_edges_from((("i", name, port, c), hub) for c in range(width))
                for port, width in enumerate(b.out_widths):
                    g.add_edges_from((hub, ("o", name, port, c)) for c in range(width))
            else:
                g.add_edges_from(
                    (("i", name, ip, ic), ("o", name, op, oc)) for ip, ic, op, oc in pairs
                )
        return g

    def _loop_error(self, cycle: list[tuple]) -> AlgebraicLoopError:
        """The error for a delay-free loop of channels: the blocks on it, from the first added."""
        names: list[str] = []
        for u, _v in cycle:
            if not names or names[-1] != u[1]:
                names.append(u[1])
        if len(names) > 1 and names[0] == names[-1]:
            names.pop()
        index = list(self.blocks).index
        first = min(range(len(names)), key=lambda i: index(names[i]))
        names = names[first:] + names[:first]
        message = "algebraic loop without a delay: " + " -> ".join([*names, names[0]])
        taps = sorted(
            {u[1] for u, v in cycle if u[0] == "i" and v[0] == "o" and u[1] == v[1]}
            & {n for n in names if isinstance(self.blocks[n], TappedDelayLine | TappedAdvanceLine)}
        )
        if taps:
            message += (
                f"; tap 0 of tapped delay line {', '.join(map(repr, taps))} (its undelayed "
                "input x(k)) is fed back: feed back only taps 1..K (cut tap 0 off with a Split) "
                "or put a Delay (q⁻¹) before the line"
            )
        else:
            message += "; put a Delay (q⁻¹) on the loop"
        return AlgebraicLoopError(message)

    def _sweeps(self, channels: nx.DiGraph, members: list[str]) -> list[tuple[str, bool]]:
        """The evaluations of the blocks of one loop (a strongly connected set of blocks whose
        channels form no loop): sweeps over the blocks, ordered by where their first output
        channel falls in a topological order of the channels, each block evaluated until all
        its output channels read exact inputs (that evaluation is its final one).  A channel is
        exact once every same-step channel it depends on is; each sweep fixes at least one more,
        so this ends."""
        inside = set(members)
        sub = channels.subgraph(n for n in channels if n[1] in inside)
        index = list(self.blocks).index
        topo = list(nx.lexicographical_topological_sort(sub, key=lambda n: (index(n[1]), n)))
        first: dict[str, int] = {}
        for position, node in enumerate(topo):
            if node[0] == "o":
                first.setdefault(node[1], position)
        order = sorted(members, key=lambda m: (first.get(m, len(topo)), index(m)))
        outs = {m: [n for n in topo if n[0] == "o" and n[1] == m] for m in order}
        exact: set[tuple] = set()

        def ready(node: tuple) -> bool:  # every same-step channel before ``node`` is exact
            return all(p in exact or (p[0] != "o" and ready(p)) for p in sub.predecessors(node))

        schedule: list[tuple[str, bool]] = []
        remaining = list(order)
        while remaining:
            done = []
            for m in remaining:
                exact.update(o for o in outs[m] if ready(o))
                final = all(o in exact for o in outs[m])
                schedule.append((m, final))
                if final:
                    done.append(m)
            if not done:  # cannot happen when the channels form no loop
                raise AlgebraicLoopError(f"no evaluation order for the loop through {order}")
            remaining = [m for m in remaining if m not in done]
        return schedule

    def schedule(self) -> list[tuple[str, bool]]:
        """The block evaluations of one step, in order, each with whether it is the final one.

        Without a loop at the block level every block is evaluated once, in topological order.
        A loop that passes only through channels that do not depend on the same step (the
        delayed taps of a tapped delay line, cut out by a Split) is swept until every channel is
        exact (``_sweeps``): the earlier evaluations of a block are provisional (inputs not
        computed yet read as zeros), its final one reads exact inputs only.  A loop of channels
        without a delay is an algebraic loop: :class:`AlgebraicLoopError`."""
        if "schedule" in self._cache:
            return cast(list[tuple[str, bool]], self._cache["schedule"])
        for name, b in self.blocks.items():
            for i in range(len(b.in_widths)):
                if (name, i) not in self.edges:
                    raise ValueError(f"input port {i} of block {name!r} ({b.kind}) is not wired")
        if not self.input_names:
            raise ValueError("the diagram has no Input block")
        if not self.output_names:
            raise ValueError("the diagram has no Output block")
        g = self.dependency_graph()
        index = list(self.blocks).index
        if nx.is_directed_acyclic_graph(g):
            order = list(nx.lexicographical_topological_sort(g, key=index))
            schedule = [(n, True) for n in order]
        else:
            channels = self.channel_graph()
            try:
                cycle = nx.find_cycle(channels)
            except nx.NetworkXNoCycle:
                cycle = None
            if cycle is not None:
                raise self._loop_error(cycle)
            loops = nx.condensation(g)
            first = {c: min(loops.nodes[c]["members"], key=index) for c in loops}
            schedule = []
            for c in nx.lexicographical_topological_sort(loops, key=lambda c: index(first[c])):
                members = sorted(loops.nodes[c]["members"], key=index)
                if len(members) == 1 and not g.has_edge(members[0], members[0]):
                    schedule.append((members[0], True))
                    continue
                schedule += self._sweeps(channels, members)
        self._cache["schedule"] = schedule
        return schedule

    def validate(self) -> list[str]:
        """Check the wiring and return the order of the blocks' final evaluations at each step
        (see :meth:`schedule`)."""
        return [name for name, final in self.schedule() if final]

    def source(self, block: str, port: int) -> Port:
        return self.edges[(block, port)]

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

    # ---------------------------------------------------------------- reciprocal
    def reciprocal(self: G) -> G:
        """The reciprocal network (paper 004 §2), built by the six rules and cached.  The forward
        blocks are shared, not copied: the reciprocal always uses the current parameters."""
        if "reciprocal" not in self._cache:
            self.validate()
            r = type(self)()
            for name, block in self.blocks.items():
                r.add(block.reciprocal(), name=name)
            fan = self.fanout()
            for name, block in self.blocks.items():
                for j, width in enumerate(block.out_widths):
                    targets = [Port(dst, port) for dst, port in fan.get(Port(name, j), [])]
                    if not targets:
                        source = r.add(ZeroSource(width), name=f"{name}__zero{j}")
                    elif len(targets) == 1:
                        source = targets[0]
                    else:
                        source = r.add(Sum(len(targets), width), *targets, name=f"{name}__sum{j}")
                    r.connect(source, name, j)
            self._cache["reciprocal"] = r
        return cast(G, self._cache["reciprocal"])

    def extra_repr(self) -> str:
        wires = ", ".join(f"{s.block}:{s.index}->{d}:{p}" for (d, p), s in self.edges.items())
        return f"wires=[{wires}]"
