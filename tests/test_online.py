"""mp.OnlineLearner: RTRL (fop) and truncated BPTT one element at a time (float64)."""

from __future__ import annotations

import math

import pytest
import torch

import meshprop as mp
from helpers import relative_error
from test_sequence import TOL, sequence_case


@pytest.fixture(autouse=True)
def one_thread():
    with mp.threads.thread_policy(1):
        yield


def frozen(net: mp.MeshNet) -> torch.optim.Optimizer:
    return torch.optim.SGD(net.parameters(), lr=0.0)


def full_mask(case) -> torch.Tensor:
    L, B = case.x.shape[:2]
    return torch.ones(L, B, dtype=torch.bool) if case.mask is None else case.mask


@pytest.mark.parametrize("seed", range(8))
def test_rtrl_with_frozen_weights_accumulates_the_sequence_gradient(seed: int) -> None:
    """update_every=1, lr=0: Σ_t (masked share of t) · gradient of step t = sequence gradient."""
    case = sequence_case(800 + seed, length=15)
    mask = full_mask(case)
    _, reference = mp.sequence_gradient(
        case.net, case.x, case.target, loss=case.loss, method="autograd", mask=mask
    )
    learner = mp.OnlineLearner(case.net, frozen(case.net), loss=case.loss, method="fop")
    total, accumulated = int(mask.sum()), torch.zeros_like(reference)
    losses = []
    for t in range(case.x.shape[0]):
        losses.append(learner.step(case.x[t], case.target[t], mask[t]))
        m = int(mask[t].sum())
        if m:
            assert learner.last_gradient is not None
            accumulated += learner.last_gradient * m / total
        else:
            assert math.isnan(losses[-1])
    assert relative_error(accumulated, reference) <= TOL, case.description


def test_update_every_length_hands_the_optimizer_the_sequence_gradient() -> None:
    case = sequence_case(850, length=12)
    mask = full_mask(case)
    _, reference = mp.sequence_gradient(
        case.net, case.x, case.target, loss=case.loss, method="bptt", mask=mask
    )
    learner = mp.OnlineLearner(case.net, frozen(case.net), loss=case.loss, update_every=12)
    for t in range(12):
        learner.step(case.x[t], case.target[t], mask[t])
        assert (learner.last_gradient is None) == (t < 11)
    assert learner.last_gradient is not None
    assert relative_error(learner.last_gradient, reference) <= TOL


def test_online_state_follows_unroll() -> None:
    case = sequence_case(851, length=9)
    with torch.no_grad():
        _, h = case.net.unroll(case.x)
    learner = mp.OnlineLearner(case.net, frozen(case.net), loss=case.loss)
    for t in range(9):
        learner.step(case.x[t], case.target[t])
    assert learner.state is not None
    assert relative_error(learner.state, h) <= TOL


@pytest.mark.parametrize("seed", range(4))
def test_online_tbptt_with_a_long_window_is_exact_while_frozen(seed: int) -> None:
    case = sequence_case(860 + seed, length=10)
    mask = full_mask(case)
    _, reference = mp.sequence_gradient(
        case.net, case.x, case.target, loss=case.loss, method="autograd", mask=mask
    )
    learner = mp.OnlineLearner(
        case.net, frozen(case.net), loss=case.loss, method="tbptt", truncation=10
    )
    total, accumulated = int(mask.sum()), torch.zeros_like(reference)
    for t in range(10):
        learner.step(case.x[t], case.target[t], mask[t])
        if int(mask[t].sum()):
            assert learner.last_gradient is not None
            accumulated += learner.last_gradient * int(mask[t].sum()) / total
    assert relative_error(accumulated, reference) <= TOL, case.description


def test_online_tbptt_window_cuts_the_past() -> None:
    """Window k: the gradient of step t reaches back exactly k elements (autograd, cut state)."""
    case = sequence_case(870, length=8)
    k = 3
    learner = mp.OnlineLearner(
        case.net, frozen(case.net), loss=case.loss, method="tbptt", truncation=k
    )
    for t in range(8):
        learner.step(case.x[t], case.target[t])
    with torch.no_grad():
        _, h_enter = case.net.unroll(case.x[: 8 - k])
    last = slice(8 - k, 8)
    mask = torch.zeros(k, case.x.shape[1], dtype=torch.bool)
    mask[-1] = True
    state = mp.SequenceState(h_enter)
    _, reference = mp.sequence_gradient(
        case.net,
        case.x[last],
        case.target[last],
        loss=case.loss,
        method="autograd",
        mask=mask,
        state=state,
    )
    assert learner.last_gradient is not None
    assert relative_error(learner.last_gradient, reference) <= TOL


@pytest.mark.slow
def test_rtrl_learns_and_memory_does_not_grow() -> None:
    """Delayed recall with D = 2: the loss falls; the carried tensors keep their size."""
    torch.manual_seed(0)
    topo = mp.Topology.random(1, 8, 1, density=1.0, bias=True, seed=0)
    net = mp.MeshNet(topo, ticks=1, activation="tanh", dtype=torch.float64, seed=0)
    learner = mp.OnlineLearner(net, torch.optim.Adam(net.parameters(), lr=0.01))
    bits = torch.randint(0, 2, (3000,)).double() * 2 - 1
    losses, sizes = [], set()
    for t in range(3000):
        target = bits[t - 2] if t >= 2 else torch.tensor(0.0, dtype=torch.float64)
        losses.append(learner.step(bits[t].view(1, 1), target.view(1, 1)))
        assert learner.sensitivities is not None
        sizes.add(learner.sensitivities.numel())
    assert sizes == {topo.n_edges * topo.n_free}
    assert sum(losses[-300:]) / 300 < 0.5 * sum(losses[:300]) / 300


def test_chaotic_sensitivities_raise() -> None:
    topo = mp.Topology.random(1, 6, 1, density=1.0, bias=True, seed=0)
    net = mp.MeshNet(topo, ticks=1, activation="identity", dtype=torch.float32, seed=0)
    with torch.no_grad():
        net.A.mul_(40.0)  # an exploding linear recurrence
    learner = mp.OnlineLearner(net, frozen(net))
    with pytest.raises(mp.ChaoticNetworkError, match="chaotic"):
        for _ in range(200):
            learner.step(torch.ones(1, 1), torch.zeros(1, 1))


def test_bad_arguments() -> None:
    case = sequence_case(880, length=2)
    net = case.net
    with pytest.raises(ValueError, match="unknown online method"):
        mp.OnlineLearner(net, frozen(net), method="bptt")
    with pytest.raises(ValueError, match="truncation=k"):
        mp.OnlineLearner(net, frozen(net), method="tbptt")
    with pytest.raises(ValueError, match="update_every"):
        mp.OnlineLearner(net, frozen(net), update_every=0)
    with pytest.raises(TypeError, match=r"torch\.optim\.Optimizer"):
        mp.OnlineLearner(net, "adam")  # type: ignore[arg-type]
    other = torch.nn.Linear(2, 2)
    with pytest.raises(ValueError, match=r"does not hold net\.A"):
        mp.OnlineLearner(net, torch.optim.SGD(other.parameters(), lr=0.1))
    learner = mp.OnlineLearner(net, frozen(net), loss=case.loss)
    with pytest.raises(ValueError, match="shape"):
        learner.step(case.x[0][:, :0], case.target[0])
    with pytest.raises(ValueError, match="target of shape"):
        learner.step(case.x[0], case.target)
