"""Topology builders, the IHO numbering, validation and networkx round trips."""

from __future__ import annotations

import networkx as nx
import pytest
import torch

import meshprop as mp


def test_mesh_has_every_allowed_edge_and_nothing_into_clamped_neurons():
    topo = mp.Topology.mesh(inputs=2, hidden=5, outputs=2, bias=True)
    assert (topo.n_inputs, topo.n_hidden, topo.n_outputs, topo.n_neurons) == (2, 5, 2, 10)
    assert topo.n_clamped == 3 and topo.bias_index == 2
    assert not topo.mask[:, :3].any()
    assert topo.mask[:, 3:].all()
    assert topo.n_edges == 10 * 7
    no_feedback = mp.Topology.mesh(2, 5, 2, output_feedback=False)
    assert not no_feedback.mask[8:].any() and no_feedback.n_edges == 8 * 7


def test_random_keeps_the_requested_fraction_reproducibly():
    a = mp.Topology.random(4, 10, 3, density=0.5, seed=0)
    b = mp.Topology.random(4, 10, 3, density=0.5, seed=0)
    c = mp.Topology.random(4, 10, 3, density=0.5, seed=1)
    allowed = a.allowed_mask().sum()
    assert a == b and a != c
    assert a.n_edges == round(0.5 * int(allowed))
    assert not (a.mask & ~a.allowed_mask()).any()
    assert mp.Topology.random(4, 10, 3, density=1.0).n_edges == int(allowed)


@pytest.mark.parametrize("density", [0.0, -0.1, 1.5, float("nan")])
def test_random_refuses_densities_outside_0_1(density):
    with pytest.raises(ValueError, match="density must be in"):
        mp.Topology.random(2, 3, 1, density=density)


def test_layered_is_the_block_matrix_of_paper_000_fig_1():
    topo = mp.Topology.layered([3, 4, 2], bias=True)
    # neurons: inputs 0-2, bias 3, hidden 4-7, outputs 8-9
    assert (topo.n_inputs, topo.n_hidden, topo.n_outputs, topo.bias) == (3, 4, 2, True)
    expected = torch.zeros(10, 10, dtype=torch.bool)
    expected[0:3, 4:8] = True  # W_1
    expected[4:8, 8:10] = True  # W_2
    expected[3, 4:10] = True  # bias into every non-input neuron
    assert torch.equal(topo.mask, expected)
    assert topo.layer_sizes == (3, 4, 2)
    deep = mp.Topology.layered([2, 3, 3, 1], bias=False)
    assert deep.n_edges == 2 * 3 + 3 * 3 + 3 * 1


def test_from_edges_and_its_errors():
    topo = mp.Topology.from_edges(inputs=2, hidden=3, outputs=1, edges=[(0, 2), (2, 2)], bias=False)
    assert topo.edge_list() == [(0, 2), (2, 2)]
    assert topo.edges.tolist() == [[0, 2], [2, 2]]
    with pytest.raises(ValueError, match=r"invalid edge \(3, 1\): neuron 1 is the input"):
        mp.Topology.from_edges(2, 3, 1, edges=[(3, 1)], bias=False)
    with pytest.raises(ValueError, match=r"invalid edge \(3, 2\): neuron 2 is the bias"):
        mp.Topology.from_edges(2, 3, 1, edges=[(3, 2)], bias=True)
    with pytest.raises(
        ValueError, match=r"\(0, 9\) is out of range: neuron indices run from 0 to 5"
    ):
        mp.Topology.from_edges(2, 3, 1, edges=[(0, 9)], bias=False)
    with pytest.raises(ValueError, match=r"duplicate edge \(0, 2\)"):
        mp.Topology.from_edges(2, 3, 1, edges=[(0, 2), (0, 2)], bias=False)
    with pytest.raises(ValueError, match="pair of neuron indices"):
        mp.Topology.from_edges(2, 3, 1, edges=[(0, 2, 1)], bias=False)


def test_sizes_are_validated():
    with pytest.raises(ValueError, match="outputs must be >= 1, got 0"):
        mp.Topology.mesh(2, 3, 0)
    with pytest.raises(TypeError, match="must be an integer"):
        mp.Topology.mesh(2.5, 3, 1)
    with pytest.raises(ValueError, match="mask must have shape"):
        mp.Topology(2, 1, 1, False, torch.zeros(3, 3, dtype=torch.bool))


def test_networkx_round_trip_with_weights():
    topo = mp.Topology.random(3, 4, 2, density=0.6, seed=3)
    net = mp.MeshNet(topo, seed=0)
    graph = topo.to_networkx(net.A)
    assert isinstance(graph, nx.DiGraph) and graph.number_of_edges() == topo.n_edges
    assert graph.nodes[3]["role"] == "bias" and graph.nodes[topo.n_neurons - 1]["role"] == "output"
    i, j = topo.edge_list()[0]
    assert graph.edges[i, j]["weight"] == pytest.approx(float(net.A.detach()[i, j]))
    assert mp.Topology.from_networkx(graph) == topo
    bare = nx.DiGraph()  # roles only, no graph attributes
    for k in range(topo.n_neurons):
        bare.add_node(k, role=topo.role(k))
    bare.add_edges_from(topo.edge_list())
    assert mp.Topology.from_networkx(bare) == topo


def test_networkx_errors():
    g = nx.DiGraph()
    g.add_node(0, role="input")
    g.add_node(1, role="output")
    g.add_node(2, role="hidden")
    with pytest.raises(ValueError, match="not in IHO order"):
        mp.Topology.from_networkx(g)
    g2 = nx.DiGraph()
    g2.add_node(0, role="sensor")
    with pytest.raises(ValueError, match="role 'sensor'"):
        mp.Topology.from_networkx(g2)
    g3 = nx.DiGraph()
    g3.add_edge(0, 2, weight=1.0)
    with pytest.raises(ValueError, match=r"0\.\.N-1"):
        mp.Topology.from_networkx(g3)


def test_dict_round_trip_keeps_layer_sizes():
    topo = mp.Topology.layered([2, 3, 1])
    again = mp.Topology.from_dict(topo.to_dict())
    assert again == topo and again.layer_sizes == (2, 3, 1)


# ------------------------------------------------------------------ a topology is a value
def test_a_topology_cannot_be_edited_in_place():
    topo = mp.Topology.random(3, 5, 2, density=0.5, seed=1)
    before = topo.mask
    handed_out = topo.mask
    handed_out[0, topo.n_clamped] = not bool(handed_out[0, topo.n_clamped])
    topo.edges[0] = torch.tensor([1, topo.n_neurons - 1])
    assert torch.equal(topo.mask, before)
    with pytest.raises(AttributeError, match="immutable"):
        topo.n_hidden = 7
    with pytest.raises(AttributeError, match="immutable"):
        del topo.bias


def test_equality_and_hash_follow_the_counts_and_the_edge_set():
    a = mp.Topology.random(3, 5, 2, density=0.5, seed=1)
    b = mp.Topology.from_edges(3, 5, 2, edges=list(reversed(a.edge_list())))
    assert a == b and hash(a) == hash(b)
    assert a.edges.dtype == torch.long and a.edges.shape == (a.n_edges, 2)
    keys = a.edges[:, 0] * a.n_neurons + a.edges[:, 1]
    assert torch.all(keys[1:] > keys[:-1])  # row-major
    edge = a.edge_list()[0]
    c = a.with_edges(remove=[edge])
    assert c != a and c.n_edges == a.n_edges - 1 and edge not in c.edge_list()
    assert c.with_edges(add=[edge]) == a
    assert mp.Topology.random(3, 5, 2, density=0.5, seed=1, bias=False) != mp.Topology.random(
        3, 5, 2, density=0.5, seed=1, bias=True
    )


def test_with_edges_names_the_edge_it_cannot_add_or_remove():
    topo = mp.Topology.from_edges(2, 2, 1, edges=[(0, 3), (3, 5)], bias=True)
    with pytest.raises(ValueError, match=r"cannot add edge \(0, 3\)"):
        topo.with_edges(add=[(0, 3)])
    with pytest.raises(ValueError, match=r"cannot remove edge \(4, 5\)"):
        topo.with_edges(remove=[(4, 5)])
    with pytest.raises(ValueError, match=r"invalid edge \(3, 2\).*bias"):
        topo.with_edges(add=[(3, 2)])
    with pytest.raises(ValueError, match="out of range"):
        topo.with_edges(add=[(0, 99)])
    with pytest.raises(ValueError, match=r"duplicate edge \(4, 4\)"):
        topo.with_edges(add=[(4, 4), (4, 4)])


@pytest.mark.parametrize("method", ["fop", "fop_factored", "bptt", "reference", "auto"])
def test_gradients_stay_exact_after_an_edit(method):
    """Caches keyed on a topology (FOP plans, reachable columns) cannot go stale: swapping one
    edge gives a new topology whose gradient equals autograd's (a mutable mask once made fop
    differ from autograd by 0.13 here)."""
    topo = mp.Topology.random(3, 6, 2, density=0.5, seed=3)
    x = torch.randn(8, 3, dtype=torch.float64)
    labels = torch.randint(0, 2, (8,))
    net = mp.MeshNet(topo, ticks=3, activation="tanh", dtype=torch.float64, seed=0)
    mp.gradient(net, x, labels, method=method)  # fills the caches for `topo`
    missing = (topo.allowed_mask() & ~topo.mask).nonzero()[0].tolist()
    edited = topo.with_edges(add=[tuple(missing)], remove=[topo.edge_list()[0]])
    moved = net.with_topology(edited)
    with torch.no_grad():
        moved.A[tuple(missing)] = 0.3  # the new edge carries weight
    _, expected = mp.gradient(moved, x, labels, method="autograd")
    _, got = mp.gradient(moved, x, labels, method=method)
    scale = expected.abs().max()
    assert float((got - expected).abs().max() / scale) <= 1e-10


def test_with_topology_keeps_shared_weights_and_starts_new_edges_at_zero():
    topo = mp.Topology.random(3, 6, 2, density=0.5, seed=3)
    net = mp.MeshNet(topo, ticks=4, activation="relu", output_activation="identity", grad="bptt")
    removed = topo.edge_list()[:3]
    added = [tuple(e) for e in (topo.allowed_mask() & ~topo.mask).nonzero()[:2].tolist()]
    new = net.with_topology(topo.with_edges(add=added, remove=removed))
    shared = topo.mask & new.topology.mask
    assert torch.equal(new.A.detach()[shared], net.A.detach()[shared])
    assert all(float(new.A.detach()[e]) == 0.0 for e in added + removed)
    assert (new.ticks, new.grad, new.activation, new.output_activation) == (
        4,
        "bptt",
        "relu",
        "identity",
    )
    assert new.A.dtype == net.A.dtype
    with pytest.raises(ValueError, match="keeps the neurons"):
        net.with_topology(mp.Topology.random(3, 7, 2, density=0.5, seed=3))
