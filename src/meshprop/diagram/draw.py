"""Draw a diagram and its reciprocal network side by side (matplotlib, Agg).

Both panels use the same block positions — the two networks are topologically equivalent
(paper 004 §2) — so each rule can be read off by comparing a block with its mirror image:
Σ ↔ •, φ ↔ φ′(k), F ↔ F′(k)ᵀ, q⁻¹ ↔ q⁺¹, outputs ↔ error inputs.  Blocks are coloured by the rule
that transforms them; wires closing a feedback loop are drawn as arcs.
"""

from __future__ import annotations

from pathlib import Path

import networkx as nx

__all__ = ["draw", "positions"]

_COLORS = {
    "1": "#cfe2f3",
    "2": "#cfe2f3",
    "3": "#d9ead3",
    "4": "#fff2cc",
    "5": "#f4cccc",
    "2+5": "#f4cccc",
    "6": "#e6e6e6",
}
_RULES = {
    "1": "1–2 Σ ↔ branch",
    "3": "3 φ → φ′(k), w → wᵀ",
    "4": "4 F → F′(k)ᵀ",
    "5": "5 q⁻¹ → q⁺¹",
    "6": "6 outputs ↔ inputs",
}


def _feedback_free(diagram) -> nx.DiGraph:
    """All wires between blocks minus the back edges of a depth-first search started at the
    inputs: the wires that close feedback loops, drawn as arcs."""
    g = nx.DiGraph()
    g.add_nodes_from(diagram.blocks)
    for (dst, _p), src in diagram.edges.items():
        g.add_edge(src.block, dst)
    roots = [n for n, b in diagram.blocks.items() if not b.in_widths]
    roots += [n for n in diagram.blocks if n not in roots]
    state: dict[str, int] = {}  # 1 = on the stack, 2 = done
    back = []

    def visit(n: str) -> None:
        state[n] = 1
        for m in list(g.successors(n)):
            if state.get(m) == 1:
                back.append((n, m))
            elif m not in state:
                visit(m)
        state[n] = 2

    for r in roots:
        if r not in state:
            visit(r)
    g.remove_edges_from(back)
    return g


def positions(diagram) -> dict[str, tuple[float, float]]:
    """Block positions: column = longest wire path from the sources (feedback wires ignored),
    rows ordered by the mean row of each block's predecessors."""
    g = _feedback_free(diagram)
    column: dict[str, int] = {}
    for n in nx.topological_sort(g):
        preds = list(g.predecessors(n))
        column[n] = 1 + max(column[p] for p in preds) if preds else 0
    # sinks (outputs) go to the last column; sources feeding only later blocks move right
    last = max(column.values(), default=0)
    for n, b in diagram.blocks.items():
        if not b.out_widths:
            column[n] = last
    for n in reversed(list(nx.topological_sort(g))):
        succ = list(g.successors(n))
        if succ and not list(g.predecessors(n)):
            column[n] = min(column[s] for s in succ) - 1
    rows: dict[str, float] = {}
    by_col: dict[int, list[str]] = {}
    for n in diagram.blocks:
        by_col.setdefault(column[n], []).append(n)
    for c in sorted(by_col):
        names = by_col[c]
        key = {}
        for n in names:
            preds = [rows[p] for p in g.predecessors(n) if p in rows]
            key[n] = sum(preds) / len(preds) if preds else 0.0
        names.sort(key=lambda n: key[n])
        for i, n in enumerate(names):
            rows[n] = -(i - (len(names) - 1) / 2)
    return {n: (1.3 * column[n], rows[n]) for n in diagram.blocks}


def _half_width(block) -> float:
    return 0.16 if block.kind in ("sum", "branch", "zero", "discard") else 0.3


def _panel(ax, diagram, pos, title: str, flow: int) -> None:
    """Draw blocks at ``pos``; ``flow`` = +1 (signals run left to right) or −1 (reciprocal)."""
    from matplotlib.patches import FancyBboxPatch

    for (dst, _p), src in diagram.edges.items():
        (x0, y0), (x1, y1) = pos[src.block], pos[dst]
        back = (x1 - x0) * flow <= 0
        style = f"arc3,rad={-0.45 * flow}" if back else "arc3,rad=0.0"
        w0 = _half_width(diagram.blocks[src.block]) * flow
        w1 = _half_width(diagram.blocks[dst]) * flow
        ax.annotate(
            "",
            xy=(x1 - w1, y1),
            xytext=(x0 + w0, y0),
            arrowprops={
                "arrowstyle": "-|>",
                "color": "#c0392b" if back else "#444444",
                "lw": 1.0,
                "connectionstyle": style,
                "shrinkA": 0,
                "shrinkB": 0,
            },
        )
    for n, b in diagram.blocks.items():
        x, y = pos[n]
        rule = b.rule or "4"
        hw = _half_width(b)
        ax.add_patch(
            FancyBboxPatch(
                (x - hw, y - 0.18),
                2 * hw,
                0.36,
                boxstyle="round,pad=0.02",
                fc=_COLORS.get(rule, "#ffffff"),
                ec="#333333",
                lw=0.8,
            )
        )
        ax.text(x, y + 0.02, b.label, ha="center", va="center", fontsize=8)
        ax.text(x, y - 0.27, n, ha="center", va="center", fontsize=5.5, color="#666666")
    xs = [p[0] for p in pos.values()]
    ys = [p[1] for p in pos.values()]
    ax.set_xlim(min(xs) - 0.6, max(xs) + 0.6)
    ax.set_ylim(min(ys) - 0.9, max(ys) + 0.6)
    ax.set_title(title, fontsize=10)
    ax.set_axis_off()


def draw(diagram, path: str | Path | None = None, title: str = "network", dpi: int = 110):
    """Render ``diagram`` (left) and ``diagram.reciprocal()`` (right); save to ``path`` when
    given (PNG/SVG/PDF by suffix).  Returns the matplotlib Figure."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Patch

    diagram.validate()
    recip = diagram.reciprocal()
    pos = positions(diagram)
    rpos = dict(pos)
    for n in recip.blocks:  # junctions added by rule 2 / zero sources: next to their block
        if n not in rpos:
            base, _, tag = n.rpartition("__")
            x, y = pos[base]
            rpos[n] = (x + 0.65, y + (0.3 if tag.startswith("zero") else 0.0))
    width = 0.8 * max(p[0] for p in pos.values()) - min(p[0] for p in pos.values()) + 1.5
    height = max(p[1] for p in pos.values()) - min(p[1] for p in pos.values()) + 1.6
    fig, axes = plt.subplots(1, 2, figsize=(min(2 * 1.05 * width, 22), min(1.05 * height, 9)))
    _panel(axes[0], diagram, pos, title, flow=1)
    _panel(axes[1], recip, rpos, f"reciprocal of {title} (runs backward in time)", flow=-1)
    handles = [Patch(fc=_COLORS[r], ec="#333333", label=text) for r, text in _RULES.items()]
    fig.legend(handles=handles, loc="lower center", ncol=len(handles), fontsize=7, frameon=False)
    fig.tight_layout(rect=(0, 0.05, 1, 1))
    if path is not None:
        fig.savefig(path, dpi=dpi)
        plt.close(fig)
    return fig
