"""The networks of paper 004 §3 (and paper 000's MNN) as ready-made diagrams.

Every builder returns a ``Diagram`` in float64 with one Input "x" and one Output "y"; its
``reciprocal()`` is the network the paper draws below it, and ``gradient(..., method=...)``
gives the same numbers by all three methods (tests/test_diagram_examples.py).
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence

import torch
from torch import nn

from ..mesh import MeshNet
from .block import Port
from .delays import Delay, TappedDelayLine
from .functions import Function
from .gains import Gain
from .jacobians import Concat, Multivariate, Split
from .junctions import Branch, Sum
from .model import Diagram
from .synapses import fir_synapse, iir_synapse
from .terminals import Constant

__all__ = [
    "cascaded",
    "feedforward",
    "fir_network",
    "iir_network",
    "layered_narx",
    "mlp_module",
    "mnn",
    "mnn_gradient",
    "narx",
]


def _neuron_layer(
    d: Diagram, net: Port, width: int, activation: str, name: str, seed: int | None
) -> Port:
    """s = net + b (bias through a gain from the constant 1), then φ(s)."""
    one = d.add(Constant(1.0), name=f"{name}_one")
    bias = d.add(Gain(1, width, seed=seed), one, name=f"{name}_bias")
    s = d.add(Sum(2, width), net, bias, name=f"{name}_s")
    return d.add(Function(activation, width), s, name=f"{name}_phi")


def _layered(
    sizes: Sequence[int],
    synapse: Callable[[Diagram, Port, int, int, int, int], Port],
    activation: str,
    output_activation: str,
    seed: int,
) -> Diagram:
    """Layers of ``synapse(d, h, layer, n_in, n_out, seed)`` each followed by a neuron layer
    (bias and φ); the last layer uses ``output_activation``."""
    d = Diagram()
    h = d.input("x", sizes[0])
    for layer, (n_in, n_out) in enumerate(itertools.pairwise(sizes)):
        last = layer == len(sizes) - 2
        net = synapse(d, h, layer, n_in, n_out, seed + 2 * layer)
        h = _neuron_layer(
            d,
            net,
            n_out,
            output_activation if last else activation,
            f"L{layer + 1}",
            seed + 2 * layer + 1,
        )
    d.output("y", h)
    return d.to(torch.float64)


def feedforward(
    sizes: Sequence[int] = (2, 4, 3),
    activation: str = "tanh",
    output_activation: str = "tanh",
    seed: int = 0,
) -> Diagram:
    """§3.1, Fig. 1: a multilayer perceptron of gains, summing junctions and activations.  Its
    reciprocal is standard backpropagation, Eq. 2: δ^l = f′(s^l) Σ_j δ^{l+1}_j w^{l+1}_{ij}."""

    def gain(d: Diagram, h: Port, layer: int, n_in: int, n_out: int, seed: int) -> Port:
        return d.add(Gain(n_in, n_out, seed=seed), h, name=f"W{layer + 1}")

    return _layered(sizes, gain, activation, output_activation, seed)


def mlp_module(n_in: int, hidden: int, n_out: int, seed: int = 0) -> nn.Module:
    """A one-hidden-layer tanh MLP (float64) used as a multivariate block N."""
    with torch.random.fork_rng(devices=[]):  # seeded without touching the caller's generator
        torch.manual_seed(seed)
        return nn.Sequential(nn.Linear(n_in, hidden), nn.Tanh(), nn.Linear(hidden, n_out)).double()


def narx(
    inputs: int = 1,
    hidden: int = 5,
    outputs: int = 1,
    input_taps: int = 2,
    output_taps: int = 2,
    seed: int = 0,
) -> Diagram:
    """§3.2, Fig. 2, Eq. 3: output feedback y(k) = N(x(k), …, x(k−a), y(k−1), …, y(k−b)).

    N is one multivariate block (an MLP); the feedback passes through a unit delay.  The
    reciprocal network is backpropagation-through-time, Eq. 4: δ(k) = N′(k+1)ᵀ δ(k+1) − 2e(k),
    the advance q⁺¹ carrying δ from k+1 back to k.
    """
    if output_taps < 1:
        raise ValueError(f"NARX needs output_taps >= 1, got {output_taps}")
    d = Diagram()
    x = d.input("x", inputs)
    xs = d.add(TappedDelayLine(inputs, input_taps), x, name="x_tdl")
    z = d.add(Delay(outputs), name="z")
    ys = d.add(TappedDelayLine(outputs, output_taps - 1), z, name="y_tdl")
    widths = [inputs * (input_taps + 1), outputs * output_taps]
    u = d.add(Concat(widths), xs, ys, name="concat")
    y = d.add(
        Multivariate(
            mlp_module(sum(widths), hidden, outputs, seed), [sum(widths)], outputs, name="N"
        ),
        u,
        name="N",
    )
    d.connect(y, "z")
    d.output("y", y)
    return d.to(torch.float64)


def layered_narx(
    inputs: int = 1, hidden: int = 5, outputs: int = 1, taps: int = 2, seed: int = 0
) -> Diagram:
    """A NARX network as pyrenn builds it, from gains, sums and functions:

        y(k) = W₂ tanh(W_x [x(k) … x(k−taps)] + W_y [y(k−1) … y(k−taps)] + b₁) + b₂

    The output feedback is a tapped delay line placed directly on the loop, its tap 0 (y(k)
    itself) cut off by a Split: the loop closes through the delayed taps 1..taps only, which
    ``Graph.schedule`` accepts (only a tap 0 fed back would be an algebraic loop).
    """
    if taps < 1:
        raise ValueError(f"layered_narx needs taps >= 1 (the output feedback), got {taps}")
    d = Diagram()
    x = d.input("x", inputs)
    xs = d.add(TappedDelayLine(inputs, taps), x, name="x_tdl")
    s1 = d.add(Sum(3, hidden), name="s1")
    h = d.add(Function("tanh", hidden), s1, name="phi")
    one = d.add(Constant(1.0), name="one")
    d.connect(d.add(Gain(inputs * (taps + 1), hidden, seed=seed), xs, name="W_x"), "s1", 0)
    d.connect(d.add(Gain(1, hidden, seed=seed + 1), one, name="b1"), "s1", 2)
    out = d.add(Gain(hidden, outputs, seed=seed + 2), h, name="W2")
    s2 = d.add(Sum(2, outputs), out, name="s2")
    d.connect(d.add(Gain(1, outputs, seed=seed + 3), one, name="b2"), "s2", 1)
    line = d.add(TappedDelayLine(outputs, taps), s2, name="y_tdl")  # directly on the loop
    _tap0, delayed = d.add(Split([outputs, outputs * taps]), line, name="cut")
    d.connect(d.add(Gain(outputs * taps, hidden, seed=seed + 4), delayed, name="W_y"), "s1", 1)
    d.output("y", s2)
    return d.to(torch.float64)


def cascaded(taps: int = 2, hidden: int = 4, seed: int = 0) -> Diagram:
    """§3.3, Fig. 3, Eq. 5–6: u(k) = N₁(x(k), …, x(k−taps)), y(k) = N₂(u(k), …, u(k−taps)).

    The reciprocal sums the advanced deltas of the tapped line, Eq. 7:
    δ_u(k) = δ₁(k) + δ₂(k+1) + δ₃(k+2), then backpropagates δ_u(k) through N₁ (Eq. 9).
    """
    d = Diagram()
    x = d.input("x", 1)
    xs = d.add(TappedDelayLine(1, taps), x, name="x_tdl")
    u = d.add(
        Multivariate(mlp_module(taps + 1, hidden, 1, seed), [taps + 1], 1, name="N₁"), xs, name="N1"
    )
    us = d.add(TappedDelayLine(1, taps), u, name="u_tdl")
    y = d.add(
        Multivariate(mlp_module(taps + 1, hidden, 1, seed + 1), [taps + 1], 1, name="N₂"),
        us,
        name="N2",
    )
    d.output("y", y)
    return d.to(torch.float64)


def fir_network(
    sizes: Sequence[int] = (1, 4, 1),
    taps: Sequence[int] = (3, 2),
    activation: str = "tanh",
    output_activation: str = "identity",
    seed: int = 0,
) -> Diagram:
    """§3.4 Case II: Wan's (1993) FIR network — every synapse an FIR filter.  Its reciprocal is
    temporal backpropagation, Eq. 13: δ^l(k) = f′(s^l(k)) Σ_j w^{l+1}_{ij}(q⁺¹) δ^{l+1}_j(k)."""
    if len(taps) != len(sizes) - 1:
        raise ValueError(f"need one tap count per layer ({len(sizes) - 1}), got {len(taps)}")

    def fir(d: Diagram, h: Port, layer: int, n_in: int, n_out: int, seed: int) -> Port:
        return fir_synapse(d, h, n_out, taps[layer], name=f"F{layer + 1}", seed=seed)

    return _layered(sizes, fir, activation, output_activation, seed)


def iir_network(
    inputs: int = 1,
    hidden: int = 3,
    outputs: int = 1,
    a_taps: int = 2,
    b_taps: int = 2,
    seed: int = 0,
) -> Diagram:
    """§3.4 Case III: x → gain → per-channel IIR synapses → tanh → gain → y.  The reciprocal IIR
    runs its feedback recursion backward in time (Fig. 4d)."""
    d = Diagram()
    x = d.input("x", inputs)
    u = d.add(Gain(inputs, hidden, seed=seed), x, name="W1")
    s = iir_synapse(d, u, a_taps, b_taps, name="IIR", seed=seed + 1)
    h = _neuron_layer(d, s, hidden, "tanh", "L1", seed + 2)
    y = d.add(Gain(hidden, outputs, seed=seed + 3), h, name="W2")
    d.output("y", y)
    return d.to(torch.float64)


def mnn(net: MeshNet, input_taps: int = 0) -> Diagram:
    """Paper 000's mesh neural network as a diagram: the multivariate gain A (masked, over the
    clamped neurons [x, 1] and the free state h), φ̂, and a unit delay in the feedback:

        h(k) = φ̂([x(k) | 1 | h(k−1)] A[:, C:]),  h(−1) = 0,   y(k) = h(k)[outputs].

    With the inputs of tick n fed at step k = n−1, y(T−1) is ``net``'s output S_T[outputs]
    (``meshprop.dynamics``).  The gain's weight is a copy of A[:, C:] (dtype of ``net``).

    ``input_taps`` > 0 puts a tapped delay line in front: the Input "x" then has
    I / (input_taps + 1) channels and the network's inputs are [x(k) | … | x(k − input_taps)]."""
    topo = net.topology
    I, C, F, O = topo.n_inputs, topo.n_clamped, topo.n_free, topo.n_outputs
    d = Diagram()
    if input_taps:
        if I % (input_taps + 1):
            raise ValueError(f"{I} network inputs are not a multiple of input_taps + 1")
        x = d.add(
            TappedDelayLine(I // (input_taps + 1), input_taps),
            d.input("x", I // (input_taps + 1)),
            name="x_tdl",
        )
    else:
        x = d.input("x", I)
    parts = [x]
    widths = [I]
    if topo.bias:
        parts.append(d.add(Constant(1.0), name="bias"))
        widths.append(1)
    h_prev = d.add(Delay(F), name="z")
    state = d.add(Concat([*widths, F]), *parts, h_prev, name="S")
    A = net.A.detach()
    mask = topo.mask.to(A.dtype)[:, C:]
    t = d.add(
        Gain(topo.n_neurons, F, weight=A[:, C:].clone(), mask=mask, label="A"), state, name="A"
    )
    h = d.add(Function(list(net.dynamics.activations.names), F), t, name="phi")
    h1, h2 = d.add(Branch(2, F), h, name="h")
    d.connect(h1, "z")
    read = d.add(Split([F - O, O]), h2, name="read") if F > O else None
    y = read[1] if read is not None else h2
    d.output("y", y)
    return d.to(A.dtype)


def mnn_gradient(grads: dict[str, torch.Tensor], net: MeshNet) -> torch.Tensor:
    """Embed the diagram's gradient of the gain "A.weight" ((N, F)) into dE/dA (N × N)."""
    C = net.topology.n_clamped
    dA = torch.zeros_like(net.A.detach())
    dA[:, C:] = grads["A.weight"]
    return dA
