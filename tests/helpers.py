"""Random mesh problems shared by the engine-equivalence tests.

Every case has cycles and self-loops among its free neurons (added on top of a random mask),
mixed per-neuron activations, and random ticks, batch, input kind and loss.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

import meshprop as mp

NAMES = sorted(mp.ACTIVATIONS)


@dataclass
class Case:
    net: mp.MeshNet
    x: torch.Tensor
    target: torch.Tensor
    loss: str
    description: str


def random_topology(
    gen: torch.Generator, seed: int, max_inputs: int = 4, max_hidden: int = 6, max_outputs: int = 3
) -> mp.Topology:
    """A random mesh over hidden/output neurons that always holds a self-loop and a cycle
    (at most ``max_inputs`` + 1 + ``max_hidden`` + ``max_outputs`` neurons)."""
    inputs = int(torch.randint(1, max_inputs + 1, (1,), generator=gen))
    hidden = int(torch.randint(1, max_hidden + 1, (1,), generator=gen))
    outputs = int(torch.randint(1, max_outputs + 1, (1,), generator=gen))
    bias = bool(torch.randint(0, 2, (1,), generator=gen))
    density = float(torch.empty(1).uniform_(0.25, 0.9, generator=gen))
    base = mp.Topology.random(inputs, hidden, outputs, density=density, bias=bias, seed=seed)
    mask = base.mask.clone()
    C, N = base.n_clamped, base.n_neurons
    h = C + int(torch.randint(0, hidden, (1,), generator=gen))  # a hidden neuron
    o = N - 1 - int(torch.randint(0, outputs, (1,), generator=gen))  # an output neuron
    mask[h, h] = True  # self-loop
    mask[h, o] = mask[o, h] = True  # a 2-cycle through an output
    mask[0, h] = True  # the input reaches the loop
    return mp.Topology(inputs, hidden, outputs, bias, mask)


def relative_error(value: torch.Tensor, reference: torch.Tensor) -> float:
    """max |value − reference| / max |reference| (max-norm relative error)."""
    value = value.detach().to(torch.float64)
    reference = reference.detach().to(torch.float64)
    scale = reference.abs().max().clamp_min(1e-300)
    return float((value - reference).abs().max() / scale)


def random_case(
    seed: int, dtype: torch.dtype = torch.float64, device: torch.device | str = "cpu"
) -> Case:
    """A random network, input and target (drawn on the CPU, then moved to ``device``)."""
    gen = torch.Generator().manual_seed(seed)
    topo = random_topology(gen, seed)
    picks = torch.randint(0, len(NAMES), (topo.n_neurons,), generator=gen)
    activation = [NAMES[int(k)] for k in picks]
    ticks = int(torch.randint(1, 7, (1,), generator=gen))
    batch = int(torch.randint(1, 17, (1,), generator=gen))
    net = mp.MeshNet(topo, ticks=ticks, activation=activation, dtype=dtype, seed=seed)
    with torch.no_grad():  # larger weights than the default init: more non-linearity
        net.A.mul_(1.5)
    per_tick = bool(torch.randint(0, 2, (1,), generator=gen))
    shape = (ticks, batch, topo.n_inputs) if per_tick else (batch, topo.n_inputs)
    x = torch.randn(shape, generator=gen, dtype=torch.float64).to(dtype)
    loss = "cross_entropy" if torch.randint(0, 2, (1,), generator=gen) else "mse"
    if loss == "cross_entropy":
        target = torch.randint(0, topo.n_outputs, (batch,), generator=gen)
    else:
        target = torch.randn(batch, topo.n_outputs, generator=gen, dtype=torch.float64).to(dtype)
    description = (
        f"seed={seed} {topo!r} ticks={ticks} batch={batch} per_tick={per_tick} loss={loss}"
    )
    return Case(net.to(device), x.to(device), target.to(device), loss, description)
