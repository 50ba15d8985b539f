"""The package's shape: no import cycle anywhere (function-level imports included), and a
topology is a value."""

from __future__ import annotations

import grimp
import networkx as nx


def test_no_import_cycles() -> None:
    graph = grimp.build_graph("meshprop", include_external_packages=False)
    edges = nx.DiGraph()
    for module in graph.modules:
        for imported in graph.find_modules_directly_imported_by(module):
            edges.add_edge(module, imported)
    cycles = [sorted(c) for c in nx.strongly_connected_components(edges) if len(c) > 1]
    assert cycles == [], f"import cycles: {cycles}"
