"""mp.from_rnn / mp.to_rnn: torch.nn.RNN + nn.Linear ⇄ MeshNet, exact up to the one-element lag
(float64)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import meshprop as mp


def rnn_pair(nonlinearity: str, batch_first: bool, rnn_bias: bool = True, out_bias: bool = True):
    torch.manual_seed(0)
    rnn = nn.RNN(3, 5, nonlinearity=nonlinearity, batch_first=batch_first, bias=rnn_bias)
    linear = nn.Linear(5, 2, bias=out_bias)
    return rnn.double(), linear.double()


@pytest.mark.parametrize("layout", ["dense", "sparse"])
@pytest.mark.parametrize("batch_first", [False, True])
@pytest.mark.parametrize("nonlinearity", ["tanh", "relu"])
def test_the_mesh_reproduces_the_rnn_one_element_late(nonlinearity, batch_first, layout):
    rnn, linear = rnn_pair(nonlinearity, batch_first)
    net = mp.from_rnn(rnn, linear, layout=layout)
    assert net.layout == layout and net.ticks == 1
    x = torch.randn(7, 4, 3, dtype=torch.float64)  # (L, B, I)
    hidden, _ = rnn(x.transpose(0, 1) if batch_first else x)
    expected = linear(hidden.transpose(0, 1) if batch_first else hidden).detach()
    y, _ = net.unroll(x)
    y = y.detach()
    assert (y[1:] - expected[:-1]).abs().max() <= 1e-10  # output t = readout of h_{t-1}
    assert (y[0] - linear.bias).abs().max() <= 1e-10  # h_0 = 0
    # one extra element aligns the two
    y_extra, _ = net.unroll(torch.cat([x, torch.zeros_like(x[:1])]))
    assert (y_extra[1:].detach() - expected).abs().max() <= 1e-10


@pytest.mark.parametrize("layout", ["dense", "sparse"])
@pytest.mark.parametrize(("rnn_bias", "out_bias"), [(True, True), (False, True), (True, False),
                                                    (False, False)])  # fmt: skip
def test_round_trips_are_exact(layout, rnn_bias, out_bias):
    rnn, linear = rnn_pair("tanh", True, rnn_bias, out_bias)
    net = mp.from_rnn(rnn, linear, layout=layout)
    back, readout = mp.to_rnn(net, batch_first=True)
    assert back.batch_first and back.nonlinearity == "tanh" and back.bias == rnn_bias
    assert torch.equal(back.weight_ih_l0, rnn.weight_ih_l0)
    assert torch.equal(back.weight_hh_l0, rnn.weight_hh_l0)
    assert torch.equal(readout.weight, linear.weight)
    if rnn_bias:
        assert torch.equal(back.bias_ih_l0, rnn.bias_ih_l0 + rnn.bias_hh_l0)
        assert not back.bias_hh_l0.any()
    assert (readout.bias is None) == (not out_bias)
    if out_bias:
        assert torch.equal(readout.bias, linear.bias)
    again = mp.from_rnn(back, readout, layout=layout)
    assert again.topology == net.topology
    assert torch.equal(again.parameter, net.parameter)


def test_to_rnn_refuses_other_meshes():
    rnn, linear = rnn_pair("relu", False)
    net = mp.from_rnn(rnn, linear)
    message = "to_rnn needs the mesh of from_rnn"
    net.ticks = 2
    with pytest.raises(ValueError, match=message):
        mp.to_rnn(net)
    other = mp.MeshNet(mp.Topology.random(3, 5, 2, density=0.5, seed=0), ticks=1)
    with pytest.raises(ValueError, match=message):
        mp.to_rnn(other)
    tanh_out = mp.MeshNet(net.topology, ticks=1, activation="relu", output_activation="tanh")
    with pytest.raises(ValueError, match=message):
        mp.to_rnn(tanh_out)
    with pytest.raises(ValueError, match="one-layer"):
        mp.from_rnn(nn.RNN(3, 5, num_layers=2), linear)
    with pytest.raises(ValueError, match="hidden units"):
        mp.from_rnn(nn.RNN(3, 4), linear)
    with pytest.raises(TypeError, match=r"torch\.nn\.RNN"):
        mp.from_rnn(nn.GRU(3, 5), linear)  # type: ignore[arg-type]
