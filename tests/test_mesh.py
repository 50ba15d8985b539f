"""MeshNet: forward semantics, the autograd bridge, masking under optimisers, XOR, bad input."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

import meshprop as mp
from helpers import random_case, relative_error


def manual_forward(net: mp.MeshNet, x: torch.Tensor) -> torch.Tensor:
    """The model of docs/model.md written neuron by neuron, independently of the engines."""
    topo = net.topology
    A = net.A.detach()
    names = net.dynamics.activations.names
    funcs = {
        "relu": torch.relu,
        "tanh": torch.tanh,
        "sigmoid": torch.sigmoid,
        "identity": lambda t: t,
        "leaky_relu": lambda t: F.leaky_relu(t, 0.01),
        "softplus": F.softplus,
    }
    B = x.shape[-2]
    S = torch.zeros(B, topo.n_neurons, dtype=A.dtype)
    for n in range(1, net.ticks + 1):
        S[:, : topo.n_inputs] = x[n - 1] if x.dim() == 3 else x
        if topo.bias:
            S[:, topo.n_inputs] = 1.0
        new = S.clone()
        for j in range(topo.n_clamped, topo.n_neurons):
            total = sum(S[:, i] * A[i, j] for i in range(topo.n_neurons) if topo.mask[i, j])
            total = total if isinstance(total, torch.Tensor) else torch.zeros(B, dtype=A.dtype)
            new[:, j] = funcs[names[j - topo.n_clamped]](total)
        S = new
    return S[:, topo.output_slice]


@pytest.mark.parametrize("seed", range(8))
def test_forward_matches_the_semantics_neuron_by_neuron(seed):
    case = random_case(seed)
    expected = manual_forward(case.net, case.x)
    for method in mp.GRADIENT_METHODS:
        case.net.grad = method
        assert relative_error(case.net(case.x), expected) <= 1e-12


def test_trajectory_holds_every_state():
    case = random_case(3)
    states = case.net.trajectory(case.x)
    T, N = case.net.ticks, case.net.topology.n_neurons
    assert states.shape == (T + 1, case.net.dynamics.batch_size(case.x), N)
    assert torch.equal(
        states[0, :, case.net.topology.n_clamped :],
        torch.zeros_like(states[0, :, case.net.topology.n_clamped :]),
    )
    assert torch.allclose(
        states[-1][:, case.net.topology.output_slice], case.net(case.x), rtol=0, atol=1e-14
    )


@pytest.mark.parametrize("method", ["fop", "bptt", "reference", "autograd"])
def test_loss_backward_fills_A_grad_through_the_engine(method):
    case = random_case(5)
    _, expected = mp.gradient(case.net, case.x, case.target, loss=case.loss, method="autograd")
    case.net.grad = method
    y = case.net(case.x)
    loss = (
        F.cross_entropy(y, case.target)
        if case.loss == "cross_entropy"
        else F.mse_loss(y, case.target)
    )
    loss.backward()
    assert relative_error(case.net.A.grad, expected) <= 1e-10


@pytest.mark.parametrize("optimizer", ["adam", "adamw", "sgd"])
def test_masked_entries_stay_exactly_zero_after_100_steps(optimizer):
    topo = mp.Topology.random(3, 6, 2, density=0.4, seed=2)
    net = mp.MeshNet(topo, ticks=4, activation="tanh", grad="fop", dtype=torch.float64, seed=0)
    opt = {
        "adam": lambda p: torch.optim.Adam(p, lr=0.05),
        "adamw": lambda p: torch.optim.AdamW(p, lr=0.05, weight_decay=0.1),
        "sgd": lambda p: torch.optim.SGD(p, lr=0.1, momentum=0.9, weight_decay=1e-3),
    }[optimizer](net.parameters())
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(16, 3, generator=gen, dtype=torch.float64)
    labels = torch.randint(0, 2, (16,), generator=gen)
    start = net.A.detach().clone()
    for _ in range(100):
        opt.zero_grad()
        loss = F.cross_entropy(net(x), labels) + 1e-3 * net.A.abs().sum()
        loss.backward()
        assert torch.count_nonzero(net.A.grad[~topo.mask]) == 0
        opt.step()
    assert torch.count_nonzero(net.A.detach()[~topo.mask]) == 0
    assert not torch.equal(net.A.detach()[topo.mask], start[topo.mask])


@pytest.mark.parametrize("grad", ["fop", "bptt", "autograd"])
def test_mask_hook_zeroes_gradients_that_a_loss_puts_outside_the_mask(grad):
    """A penalty on A itself, (A − 1)², has gradient −2 at every masked (zero) entry: the
    gradient hook must remove exactly those and leave every edge's gradient untouched."""
    topo = mp.Topology.random(3, 6, 2, density=0.4, seed=2)
    net = mp.MeshNet(topo, ticks=3, activation="tanh", grad=grad, dtype=torch.float64, seed=0)
    x = torch.randn(8, 3, dtype=torch.float64)
    labels = torch.randint(0, 2, (8,))
    penalty = ((net.A - 1.0) ** 2).sum()
    loss = F.cross_entropy(net(x), labels) + penalty
    loss.backward()
    # the oracle: the same loss by plain autograd, without any hook
    A = net.A.detach().clone().requires_grad_(True)
    oracle = mp.MeshNet(topo, ticks=3, activation="tanh", grad="autograd", dtype=torch.float64)
    y = oracle.dynamics.output(A * topo.mask.to(A.dtype), x)
    (raw,) = torch.autograd.grad(F.cross_entropy(y, labels) + ((A - 1.0) ** 2).sum(), A)
    outside = ~topo.mask
    assert torch.all(raw[outside] == -2.0)  # what the hook must remove
    assert torch.count_nonzero(net.A.grad[outside]) == 0
    assert torch.allclose(net.A.grad[topo.mask], raw[topo.mask], rtol=1e-12, atol=1e-14)


def test_xor_reaches_full_accuracy_with_fop():
    torch.manual_seed(0)
    x = torch.tensor([[0.0, 0.0], [0.0, 1.0], [1.0, 0.0], [1.0, 1.0]])
    labels = torch.tensor([0, 1, 1, 0])
    topo = mp.Topology.mesh(inputs=2, hidden=4, outputs=2, bias=True)
    net = mp.MeshNet(
        topo, ticks=3, activation="tanh", output_activation="identity", grad="fop", seed=0
    )
    opt = torch.optim.Adam(net.parameters(), lr=0.05)
    for _ in range(300):
        opt.zero_grad()
        F.cross_entropy(net(x), labels).backward()
        opt.step()
    accuracy = (net(x).argmax(dim=1) == labels).float().mean()
    assert accuracy == 1.0


def test_float32_and_float64_parameters():
    topo = mp.Topology.mesh(2, 3, 1)
    for dtype in (torch.float32, torch.float64):
        net = mp.MeshNet(topo, ticks=2, dtype=dtype)
        assert net.A.dtype == dtype
        assert net(torch.randn(4, 2)).dtype == dtype  # x is cast to A's dtype
        net64 = net.to(torch.float64)
        assert net64(torch.randn(4, 2, dtype=torch.float64)).dtype == torch.float64


def test_no_grad_forward_equals_engine_forward():
    case = random_case(9)
    with torch.no_grad():
        plain = case.net(case.x)
    case.net.grad = "fop"
    assert torch.equal(plain, case.net(case.x).detach())


def test_seeded_initialisation_is_reproducible_and_masked():
    topo = mp.Topology.random(4, 8, 3, density=0.3, seed=1)
    a = mp.MeshNet(topo, seed=7)
    b = mp.MeshNet(topo, seed=7)
    assert torch.equal(a.A, b.A)
    assert torch.count_nonzero(a.A.detach()[~topo.mask]) == 0
    fan_in = topo.mask.sum(0).clamp(min=1)
    assert bool((a.A.detach().abs() <= 1 / fan_in.sqrt()).all())


# ------------------------------------------------------------------ bad input
@pytest.fixture
def net():
    return mp.MeshNet(mp.Topology.mesh(3, 4, 2), ticks=3, dtype=torch.float64)


@pytest.mark.parametrize(
    ("shape", "message"),
    [
        ((5, 4), "has 4 features"),
        ((5,), "1-D"),
        ((2, 5, 3), "ticks=3"),
        ((3, 5, 2), "inputs=3"),
        ((1, 1, 5, 3), "4-D"),
        ((0, 3), "empty batch"),
    ],
)
def test_wrong_input_shapes_are_refused(net, shape, message):
    with pytest.raises(ValueError, match=message):
        net(torch.zeros(shape))


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_non_finite_input_is_refused(net, bad):
    x = torch.zeros(5, 3)
    x[2, 1] = bad
    with pytest.raises(ValueError, match=r"NaN or inf \(first at index \(2, 1\)\)"):
        net(x)
    with pytest.raises(ValueError, match="NaN or inf"):
        mp.gradient(net, x, torch.zeros(5, dtype=torch.long))


def test_non_tensor_input_is_refused(net):
    with pytest.raises(TypeError, match=r"torch\.Tensor"):
        net([[0.0, 1.0, 2.0]])


def test_bad_targets_are_refused(net):
    x = torch.zeros(5, 3)
    with pytest.raises(ValueError, match="label 2 is out of range"):
        mp.gradient(net, x, torch.tensor([0, 1, 2, 0, 1]), loss="cross_entropy")
    with pytest.raises(ValueError, match="label -1"):
        mp.gradient(net, x, torch.tensor([0, -1, 1, 0, 1]), loss="cross_entropy")
    with pytest.raises(TypeError, match="integer class labels"):
        mp.gradient(net, x, torch.zeros(5), loss="cross_entropy")
    with pytest.raises(ValueError, match=r"shape \(5,\)"):
        mp.gradient(net, x, torch.zeros(4, dtype=torch.long), loss="cross_entropy")
    with pytest.raises(ValueError, match=r"shape \(5, 2\)"):
        mp.gradient(net, x, torch.zeros(5), loss="mse")
    target = torch.zeros(5, 2)
    target[0, 0] = float("nan")
    with pytest.raises(ValueError, match="NaN or inf"):
        mp.gradient(net, x, target, loss="mse")
    with pytest.raises(ValueError, match="unknown loss"):
        mp.gradient(net, x, torch.zeros(5, 2), loss="hinge")


def test_bad_configuration_is_refused():
    topo = mp.Topology.mesh(2, 2, 1)
    with pytest.raises(ValueError, match="ticks must be >= 1, got 0"):
        mp.MeshNet(topo, ticks=0)
    with pytest.raises(TypeError, match="ticks must be an integer"):
        mp.MeshNet(topo, ticks=2.5)
    with pytest.raises(ValueError, match="unknown activation 'gelu'"):
        mp.MeshNet(topo, activation="gelu")
    with pytest.raises(ValueError, match="sequence of N=6 names, got a sequence of 2"):
        mp.MeshNet(topo, activation=["relu", "tanh"])
    with pytest.raises(ValueError, match="unknown activation 'swish' for neuron 4"):
        mp.MeshNet(topo, activation=["relu"] * 4 + ["swish", "relu"])
    with pytest.raises(ValueError, match="unknown gradient method 'adjoint'"):
        mp.MeshNet(topo, grad="adjoint")
    net = mp.MeshNet(topo)
    with pytest.raises(ValueError, match="unknown gradient method"):
        mp.gradient(net, torch.zeros(1, 2), torch.zeros(1, dtype=torch.long), method="magic")
