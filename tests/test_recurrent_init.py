"""meshprop.recurrent_init: unit-gain links, a chosen spectral radius and edge writes, on both
layouts, and what they refuse."""

from __future__ import annotations

import pytest
import torch

import meshprop as mp
from meshprop.recurrent_init import (
    hidden_links,
    set_edge_weights_,
    spectral_radius_,
    unit_gain_,
)


def _net(topology: mp.Topology, layout: str) -> mp.MeshNet:
    return mp.MeshNet(topology, ticks=1, activation="tanh", dtype=torch.float64, seed=3,
                      layout=layout)  # fmt: skip


@pytest.mark.parametrize("layout", ["dense", "sparse"])
def test_unit_gain_sets_the_links_and_zeroes_their_targets_biases(layout) -> None:
    topo = mp.Topology.self_loops(2, 4, 1)  # inputs 0, 1; bias 2; hidden 3..6; output 7
    net = _net(topo, layout)
    before = dict(zip(topo.edge_list(), net.edge_weights().tolist(), strict=True))
    unit_gain_(net)
    after = dict(zip(topo.edge_list(), net.edge_weights().tolist(), strict=True))
    for edge, value in after.items():
        i, j = edge
        if i == j:
            assert value == 1.0  # the identity initialisation
        elif i == 2 and 3 <= j <= 6:
            assert value == 0.0  # the biases of the looped neurons
        else:
            assert value == before[edge]  # inputs, readout, the output's bias: untouched
    assert [tuple(e) for e in hidden_links(net).tolist()] == [(3, 3), (4, 4), (5, 5), (6, 6)]


@pytest.mark.parametrize("layout", ["dense", "sparse"])
def test_spectral_radius_is_set(layout) -> None:
    net = _net(mp.Topology.reservoir(1, 30, 1, degree=4, seed=2), layout)
    spectral_radius_(net, 0.9)
    block = net.dense_weights()[2:32, 2:32]
    assert float(torch.linalg.eigvals(block).abs().max()) == pytest.approx(0.9, rel=1e-10)
    ring = _net(mp.Topology.ring(1, 5, 1), layout)
    unit_gain_(ring, gain=0.5)  # a ring of gains g: radius g
    spectral_radius_(ring, 0.8)
    edges, hidden = ring.topology.edges, torch.arange(2, 7)
    links = ring.edge_weights()[torch.isin(edges[:, 0], hidden) & torch.isin(edges[:, 1], hidden)]
    assert torch.allclose(links, torch.full_like(links, 0.8), rtol=1e-12, atol=0)


def test_refusals_say_what_was_wrong() -> None:
    net = _net(mp.Topology.chain(1, 3, 1), "dense")
    with pytest.raises(ValueError, match=r"edge \(4, 2\) is not in the network's topology"):
        unit_gain_(net, [(4, 2)])
    with pytest.raises(ValueError, match="gain must be a finite number"):
        unit_gain_(net, gain=float("nan"))
    with pytest.raises(ValueError, match="radius must be a finite number >= 0"):
        spectral_radius_(net, -1.0)
    with pytest.raises(ValueError, match="spectral radius 0: nothing to scale"):
        spectral_radius_(net, 0.9)  # a chain: nilpotent, every eigenvalue 0
    with pytest.raises(ValueError, match="2 edges but 1 values"):
        set_edge_weights_(net, [(0, 2), (2, 3)], torch.ones(1))
