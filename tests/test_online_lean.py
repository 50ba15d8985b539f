"""mp.OnlineLearner's RTRL (streams.rtrl.RTRLStepper, the carried U = Z/D in place) against a
plain per-element RTRL written here (Eq. 17 on Z, fresh tensors, torch Adam), float64: the same
gradients at every step, while the weights change under Adam, on full meshes (the diagonal
scatter) and sparse ones."""

from __future__ import annotations

import copy

import pytest
import torch

import meshprop as mp
from helpers import relative_error
from meshprop.losses import loss_and_grad
from test_sequence import TOL, sequence_case


@pytest.fixture(autouse=True)
def one_thread():
    with mp.threads.thread_policy(1):
        yield


class ReferenceRTRL:
    """RTRL by the book: Z (B, P, F) = ∂h/∂A_p, Z_n = (Z_{n-1} A_f + S̃_{n-1}) D_n (paper 000
    Eq. 17), dE/dA_p = Σ dE/dy Z[:, p, outputs] after each element, the mean gradient since
    the last update handed to the optimizer every ``update_every`` elements."""

    def __init__(self, net, optimizer, loss, update_every):
        self.net, self.optimizer, self.loss, self.update_every = net, optimizer, loss, update_every
        edges = net.topology.edges
        self.src, self.dst = edges[:, 0], edges[:, 1] - net.topology.n_clamped
        self.h = self.Z = None
        self.grad = torch.zeros_like(net.A)
        self.count = self.since = 0
        self.last_gradient = None

    @property
    def state(self):
        return self.h

    @property
    def sensitivities(self):
        return self.Z

    def step(self, x, target, mask=None):
        net, dyn = self.net, self.net.dynamics
        A = net.A.detach()
        B, F, O, C = x.shape[0], dyn.n_free, dyn.n_outputs, dyn.n_clamped
        P = len(self.src)
        if self.h is None:
            self.h = torch.zeros(B, F, dtype=A.dtype)
            self.Z = torch.zeros(B, P, F, dtype=A.dtype)
        A_c, A_f = dyn.split(A)
        c = dyn.clamped_state(x, 1)
        h, Z = self.h, self.Z
        for _ in range(dyn.ticks):
            S_prev = torch.cat([c, h], dim=1)
            h, D = dyn.activations(c @ A_c + h @ A_f)
            Z = torch.matmul(Z, A_f)
            Z[:, torch.arange(P), self.dst] += S_prev[:, self.src]
            Z = Z * D.unsqueeze(1)
        self.h, self.Z = h, Z
        mask = torch.ones(B, dtype=torch.bool) if mask is None else mask
        rows = mask.nonzero().flatten()
        m, value = len(rows), float("nan")
        if m:
            v, g_rows = loss_and_grad(self.loss, h[rows, F - O :], target[rows])
            g = torch.zeros(B, O, dtype=A.dtype)
            g[rows] = g_rows.to(A.dtype)
            self.grad[self.src, self.dst + C] += torch.einsum("bpo,bo->p", Z[:, :, F - O :], g) * m
            value = float(v)
        self.count += m
        self.since += 1
        if self.since == self.update_every:
            self.last_gradient = None
            if self.count:
                self.last_gradient = self.grad / self.count
                net.A.grad = self.last_gradient.clone()
                self.optimizer.step()
            self.grad.zero_()
            self.count = self.since = 0
        return value


def twin_learners(net: mp.MeshNet, loss: str, update_every: int, lr: float = 1e-3):
    nets = [net, copy.deepcopy(net)]
    learner = mp.OnlineLearner(
        nets[0], torch.optim.Adam(nets[0].parameters(), lr=lr), loss=loss, update_every=update_every
    )
    reference = ReferenceRTRL(
        nets[1], torch.optim.Adam(nets[1].parameters(), lr=lr), loss, update_every
    )
    return nets, (learner, reference)


def run_twins(net, x, target, mask, loss, update_every):
    (lean_net, general_net), (lean, general) = twin_learners(net, loss, update_every)
    for t in range(x.shape[0]):
        m = None if mask is None else mask[t]
        a = lean.step(x[t], target[t], m)
        b = general.step(x[t], target[t], m)
        assert (a != a and b != b) or abs(a - b) <= TOL * max(1.0, abs(b))
        ga, gb = lean.last_gradient, general.last_gradient
        assert (ga is None) == (gb is None)
        if ga is not None:
            assert relative_error(ga, gb) <= TOL, f"step {t}"
    assert relative_error(lean.sensitivities, general.sensitivities) <= TOL
    assert relative_error(lean.state, general.state) <= TOL
    assert relative_error(lean_net.A.detach(), general_net.A.detach()) <= TOL
    return lean


@pytest.mark.parametrize(
    ("hidden", "outputs", "batch", "ticks", "update_every", "masked"),
    [
        (8, 1, 1, 1, 1, False),  # the delayed-recall layout: B = O = 1, the direct grid write
        (8, 1, 1, 1, 1, True),
        (5, 2, 3, 2, 1, True),  # full mesh, B > 1, O > 1
        (6, 1, 1, 1, 4, True),  # accumulated over 4 elements
        (4, 3, 2, 3, 3, False),
    ],
)
def test_lean_path_equals_general_path_on_full_meshes(
    hidden, outputs, batch, ticks, update_every, masked
) -> None:
    gen = torch.Generator().manual_seed(hidden * 100 + batch)
    topo = mp.Topology.random(1, hidden, outputs, density=1.0, bias=True, seed=hidden)
    net = mp.MeshNet(topo, ticks=ticks, activation="tanh", dtype=torch.float64, seed=3)
    L = 60
    x = torch.randn(L, batch, 1, generator=gen, dtype=torch.float64)
    target = torch.randn(L, batch, outputs, generator=gen, dtype=torch.float64)
    mask = (torch.rand(L, batch, generator=gen) < 0.7) if masked else None
    lean = run_twins(net, x, target, mask, "mse", update_every)
    stepper = lean._carry.stepper
    assert stepper.full  # the diagonal scatter was used
    assert (stepper.bank.out_grid is not None) == (batch == outputs == 1)
    assert stepper.scalar == (batch == outputs == 1)  # host scalars for B = O = 1


@pytest.mark.parametrize("seed", range(6))
def test_lean_path_equals_general_path_on_random_meshes(seed: int) -> None:
    """Random topologies with cycles and self-loops, mixed activations, both losses."""
    case = sequence_case(900 + seed, length=25)
    run_twins(case.net, case.x, case.target, case.mask, case.loss, 1 + seed % 3)


def test_lean_chaos_is_detected_before_the_weights_are_touched() -> None:
    """An exploding linear recurrence in float32: ChaoticNetworkError, never a NaN weight."""
    topo = mp.Topology.random(1, 6, 1, density=1.0, bias=True, seed=0)
    net = mp.MeshNet(topo, ticks=1, activation="identity", dtype=torch.float32, seed=0)
    with torch.no_grad():
        net.A.mul_(40.0)
    learner = mp.OnlineLearner(net, torch.optim.Adam(net.parameters(), lr=1e-9))
    with pytest.raises(mp.ChaoticNetworkError, match="chaotic"):
        for _ in range(200):
            learner.step(torch.ones(1, 1), torch.zeros(1, 1))
    assert torch.isfinite(net.A).all()


def test_lean_path_rejects_a_nan_target() -> None:
    topo = mp.Topology.random(1, 4, 1, density=1.0, bias=True, seed=0)
    net = mp.MeshNet(topo, ticks=1, activation="tanh", dtype=torch.float32, seed=0)
    learner = mp.OnlineLearner(net, torch.optim.Adam(net.parameters(), lr=1e-3))
    learner.step(torch.ones(1, 1), torch.zeros(1, 1))
    assert learner._carry.stepper.scalar  # the host-scalar path
    weights = net.A.detach().clone()
    with pytest.raises(ValueError, match="NaN or inf"):
        learner.step(torch.ones(1, 1), torch.full((1, 1), float("nan")))
    assert torch.equal(net.A.detach(), weights)  # nothing reached the optimizer


def test_reset_starts_a_new_stream_even_with_another_batch() -> None:
    """After reset the lean learner's state is that of a fresh learner on the new stream."""
    topo = mp.Topology.random(1, 4, 1, density=1.0, bias=True, seed=1)
    net = mp.MeshNet(topo, ticks=1, activation="tanh", dtype=torch.float64, seed=1)
    learner = mp.OnlineLearner(net, torch.optim.SGD(net.parameters(), lr=0.0))
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(6, 3, 1, generator=gen, dtype=torch.float64)
    for t in range(6):
        learner.step(x[t, :2], x[t, :2])
    learner.reset()
    fresh = mp.OnlineLearner(net, torch.optim.SGD(net.parameters(), lr=0.0))
    for t in range(6):
        assert learner.step(x[t], x[t]) == fresh.step(x[t], x[t])
    assert torch.equal(learner.sensitivities, fresh.sensitivities)
