"""Construction of the reciprocal network by the six rules of paper 004 §2.

Reverse every wire and replace every block by ``block.reciprocal()``:

1. summing junctions → branching points,       2. branching points → summing junctions,
3. univariate functions → derivatives φ′(a(k)) (a weight w stays the gain w, transposed),
4. multivariate functions → transposed Jacobians F′(k)ᵀ,
5. unit delays → unit advances,                  6. outputs → inputs (fed with ∂L/∂y(k)).

An output port feeding several input ports is an implicit branching point: rule 2 puts a summing
junction ``<block>__sum<j>`` in the reciprocal network.  An output port feeding nothing receives
no error: a zero source ``<block>__zero<j>``.  Reciprocal blocks keep the names of the blocks
they replace (the two networks are topologically equivalent), so input port j of a reciprocal
block carries δ for output port j of the forward block and vice versa.
"""

from __future__ import annotations

from .blocks import Sum
from .graph import Diagram, Port
from .reciprocal_blocks import ZeroSource

__all__ = ["build_reciprocal"]


def build_reciprocal(diagram: Diagram) -> Diagram:
    """The reciprocal of ``diagram`` as a new Diagram (the forward blocks are shared, not copied,
    so the reciprocal always uses the current parameters)."""
    diagram.validate()
    r = Diagram()
    for name, block in diagram.blocks.items():
        r.add(block.reciprocal(), name=name)
    fan = diagram.fanout()
    for name, block in diagram.blocks.items():
        for j, width in enumerate(block.out_widths):
            targets = fan.get(Port(name, j), [])
            if not targets:
                r.connect(r.add(ZeroSource(width), name=f"{name}__zero{j}"), name, j)
            elif len(targets) == 1:
                dst, port = targets[0]
                r.connect(Port(dst, port), name, j)
            else:
                sources = [Port(dst, port) for dst, port in targets]
                r.connect(
                    r.add(Sum(len(sources), width), *sources, name=f"{name}__sum{j}"), name, j
                )
    r.__dict__["forward_diagram"] = diagram
    return r
