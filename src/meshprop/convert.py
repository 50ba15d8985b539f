r"""``torch.nn.RNN`` + ``torch.nn.Linear`` ⇄ MeshNet, exactly.

An Elman RNN with a linear readout,

    h_t = φ(W_ih x_t + b_ih + W_hh h_{t-1} + b_hh),        y_t = W_o h_t + b_o,

φ = tanh or relu, is a mesh (paper 000 Eq. 3) with one tick per element: inputs → hidden with
the weights W_ihᵀ, the bias neuron → hidden with b_ih + b_hh, hidden → hidden with W_hhᵀ,
hidden → outputs with W_oᵀ and bias → outputs with b_o, the outputs' activation the identity.
:func:`from_rnn` builds it, :func:`to_rnn` reads it back.

**The lag.**  In a mesh every neuron reads the state of the previous tick, so the output neurons
read the hidden state one tick — one element — late: after element t the mesh's output is the
readout of the RNN's hidden state after element t − 1,

    net.unroll(x)[0][t] = linear(rnn(x)[0][t − 1]),        net.unroll(x)[0][0] = linear(0)

(for h_0 = 0).  To align targets either shift them by one (train the mesh's output t on the
RNN's target t − 1, and ignore element 0 with ``mask``), or present one extra element after the
sequence (any input: the readout does not see it) and drop the first output:
``net.unroll(torch.cat([x, x[-1:]]))[0][1:]`` equals ``linear(rnn(x)[0])``.
"""

from __future__ import annotations

import torch
from torch import nn

from .mesh import MeshNet
from .topology import Topology

__all__ = ["from_rnn", "to_rnn"]

_NONLINEARITIES = ("tanh", "relu")


def _check_rnn(rnn: object, linear: object) -> tuple[nn.RNN, nn.Linear]:
    if not isinstance(rnn, nn.RNN):
        raise TypeError(f"rnn must be a torch.nn.RNN, got {type(rnn).__name__}")
    if not isinstance(linear, nn.Linear):
        raise TypeError(f"linear must be a torch.nn.Linear, got {type(linear).__name__}")
    if rnn.num_layers != 1 or rnn.bidirectional:
        raise ValueError("from_rnn converts a one-layer, one-directional torch.nn.RNN only")
    if linear.in_features != rnn.hidden_size:
        raise ValueError(
            f"the readout reads {linear.in_features} features but the RNN has "
            f"{rnn.hidden_size} hidden units"
        )
    return rnn, linear


def _tensor(module: nn.Module, name: str) -> torch.Tensor:
    """The parameter ``name`` of ``module`` (typed: ``nn.RNN`` serves them by attribute)."""
    value = getattr(module, name)
    assert isinstance(value, torch.Tensor)
    return value


def _rnn_topology(inputs: int, hidden: int, outputs: int, rnn_bias: bool, out_bias: bool):
    """The mesh of an RNN with a readout and its blocks: (topology, [(block, src, dst)])."""
    bias = rnn_bias or out_bias
    C = inputs + int(bias)
    H = torch.arange(C, C + hidden)
    Y = torch.arange(C + hidden, C + hidden + outputs)

    def block(src: torch.Tensor, dst: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return src.repeat_interleave(len(dst)), dst.repeat(len(src))

    blocks = {"ih": block(torch.arange(inputs), H), "hh": block(H, H), "ho": block(H, Y)}
    if rnn_bias:
        blocks["bh"] = block(torch.tensor([inputs]), H)
    if out_bias:
        blocks["bo"] = block(torch.tensor([inputs]), Y)
    edges = torch.cat([torch.stack(b, dim=1) for b in blocks.values()])
    topo = Topology.from_edges(inputs, hidden, outputs, edges, bias=bias)
    return topo, blocks


def _positions(topo: Topology, src: torch.Tensor, dst: torch.Tensor) -> torch.Tensor:
    """The indices in ``topo.edges`` of the edges (src, dst) (all present)."""
    N = topo.n_neurons
    keys = topo.edges[:, 0] * N + topo.edges[:, 1]
    return torch.searchsorted(keys, src * N + dst)


def from_rnn(
    rnn: nn.RNN,
    linear: nn.Linear,
    layout: str = "dense",
    grad: str = "fop",
) -> MeshNet:
    """The MeshNet computing ``linear(rnn(x))`` one element late (module docstring): one tick
    per element, hidden activation ``rnn.nonlinearity``, identity outputs, the RNN's dtype and
    device; ``layout`` and ``grad`` as for :class:`MeshNet`."""
    rnn, linear = _check_rnn(rnn, linear)
    I, H, O = rnn.input_size, rnn.hidden_size, linear.out_features
    topo, blocks = _rnn_topology(I, H, O, bool(rnn.bias), linear.bias is not None)
    p = _tensor(rnn, "weight_ih_l0")
    net = MeshNet(
        topo,
        ticks=1,
        activation=rnn.nonlinearity,
        output_activation="identity",
        grad=grad,
        dtype=p.dtype,
        device=p.device,
        layout=layout,
    )
    with torch.no_grad():
        values = torch.zeros(topo.n_edges, dtype=p.dtype, device=p.device)
        # edge (i → j) carries W[j, i]: block (src, dst) row-major is W.T flattened
        weights = {"ih": p.T, "hh": _tensor(rnn, "weight_hh_l0").T, "ho": linear.weight.T}
        if rnn.bias:
            b = _tensor(rnn, "bias_ih_l0") + _tensor(rnn, "bias_hh_l0")
            weights["bh"] = b.unsqueeze(0)
        if linear.bias is not None:
            weights["bo"] = linear.bias.unsqueeze(0)
        for name, (src, dst) in blocks.items():
            at = _positions(topo, src, dst).to(p.device)
            values[at] = weights[name].reshape(-1).to(values)
        net.parameter.copy_(net.storage.from_edge_values(values))
    return net


def to_rnn(net: MeshNet, batch_first: bool = False) -> tuple[nn.RNN, nn.Linear]:
    """(rnn, linear) with ``linear(rnn(x))`` the mesh's outputs one element early — the inverse
    of :func:`from_rnn` (the bias b_ih + b_hh comes back whole in ``bias_ih_l0``, ``bias_hh_l0``
    is 0).  ValueError (one line) for a mesh not of that shape."""
    if not isinstance(net, MeshNet):
        raise TypeError(f"net must be a meshprop.MeshNet, got {type(net).__name__}")
    topo = net.topology
    I, H, O = topo.n_inputs, topo.n_hidden, topo.n_outputs
    names = net.dynamics.activations.names
    hidden_names, output_names = set(names[:H]), set(names[H:])
    C = topo.n_clamped
    from_bias = topo.edges[topo.edges[:, 0] == I, 1] if topo.bias else topo.edges[:0, 1]
    rnn_bias = bool((from_bias < C + H).any())
    out_bias = bool((from_bias >= C + H).any())
    shape, _ = _rnn_topology(I, H, O, rnn_bias, out_bias)
    if (
        net.ticks != 1
        or len(hidden_names) != 1
        or next(iter(hidden_names)) not in _NONLINEARITIES
        or output_names != {"identity"}
        or topo.bias != shape.bias
        or not torch.equal(topo.edges, shape.edges)
    ):
        raise ValueError(
            "to_rnn needs the mesh of from_rnn: one tick, every hidden neuron tanh or every one "
            "relu, identity outputs, and exactly the edges inputs→hidden, hidden→hidden, "
            "hidden→outputs (plus bias→hidden and/or bias→outputs, each all or none)"
        )
    _, blocks = _rnn_topology(I, H, O, rnn_bias, out_bias)
    theta = net.parameter.detach()
    values = net.storage.edge_values(theta)
    rnn = nn.RNN(
        I,
        H,
        nonlinearity=next(iter(hidden_names)),
        bias=rnn_bias,
        batch_first=batch_first,
        dtype=theta.dtype,
        device=theta.device,
    )
    linear = nn.Linear(H, O, bias=out_bias, dtype=theta.dtype, device=theta.device)

    def block(name: str, rows: int) -> torch.Tensor:
        src, dst = blocks[name]
        return values[_positions(topo, src, dst).to(values.device)].reshape(rows, -1)

    with torch.no_grad():
        _tensor(rnn, "weight_ih_l0").copy_(block("ih", I).T)
        _tensor(rnn, "weight_hh_l0").copy_(block("hh", H).T)
        linear.weight.copy_(block("ho", H).T)
        if rnn_bias:
            _tensor(rnn, "bias_ih_l0").copy_(block("bh", 1)[0])
            _tensor(rnn, "bias_hh_l0").zero_()
        if out_bias:
            linear.bias.copy_(block("bo", 1)[0])
    return rnn, linear
