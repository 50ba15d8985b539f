"""Sequences: mp.sequence_gradient by FOP, BPTT and truncated BPTT against autograd, streaming in
chunks, and MeshNet.unroll (float64, rounding-level tolerances)."""

from __future__ import annotations

from dataclasses import dataclass

import pytest
import torch

import meshprop as mp
from helpers import NAMES, random_topology, relative_error

TOL = 1e-10


@pytest.fixture(autouse=True)
def one_thread():
    """Small products: one thread (the package's policy) avoids oversubscribing a busy host."""
    with mp.threads.thread_policy(1):
        yield


@dataclass
class SeqCase:
    net: mp.MeshNet
    x: torch.Tensor
    target: torch.Tensor
    loss: str
    mask: torch.Tensor | None
    description: str


def sequence_case(seed: int, length: int | None = None) -> SeqCase:
    gen = torch.Generator().manual_seed(seed)
    topo = random_topology(gen, seed)
    picks = torch.randint(0, len(NAMES), (topo.n_neurons,), generator=gen)
    activation = [NAMES[int(k)] for k in picks]
    ticks = int(torch.randint(1, 4, (1,), generator=gen))
    L = int(torch.randint(1, 51, (1,), generator=gen)) if length is None else length
    B = int(torch.randint(1, 6, (1,), generator=gen))
    net = mp.MeshNet(topo, ticks=ticks, activation=activation, dtype=torch.float64, seed=seed)
    x = torch.randn(L, B, topo.n_inputs, generator=gen, dtype=torch.float64)
    # cross_entropy of one output is constant (a zero gradient): mse there
    coin = bool(torch.randint(0, 2, (1,), generator=gen))
    loss = "cross_entropy" if coin and topo.n_outputs > 1 else "mse"
    if loss == "mse":
        target = torch.randn(L, B, topo.n_outputs, generator=gen, dtype=torch.float64)
    else:
        target = torch.randint(0, topo.n_outputs, (L, B), generator=gen)
    mask = None
    if torch.randint(0, 2, (1,), generator=gen):
        mask = torch.rand(L, B, generator=gen) < 0.5
        mask[-1, 0] = True  # at least one pair carries a loss
    description = (
        f"seed={seed} {topo!r} ticks={ticks} L={L} B={B} loss={loss} mask={mask is not None}"
    )
    return SeqCase(net, x, target, loss, mask, description)


def gradient(case: SeqCase, method: str, **kwargs) -> tuple[torch.Tensor, torch.Tensor]:
    return mp.sequence_gradient(
        case.net, case.x, case.target, loss=case.loss, method=method, mask=case.mask, **kwargs
    )


@pytest.mark.parametrize("seed", range(20))
@pytest.mark.parametrize("method", ["fop", "bptt"])
def test_exact_methods_equal_autograd(seed: int, method: str) -> None:
    case = sequence_case(seed)
    value_ref, dA_ref = gradient(case, "autograd")
    value, dA = gradient(case, method)
    assert dA_ref.abs().max() > 0, case.description
    assert relative_error(dA, dA_ref) <= TOL, case.description
    assert abs(float(value - value_ref)) <= TOL * abs(float(value_ref)), case.description


@pytest.mark.parametrize("length", [1, 2, 50])
def test_lengths_one_two_fifty(length: int) -> None:
    case = sequence_case(100 + length, length=length)
    _, dA_ref = gradient(case, "autograd")
    for method in ("fop", "bptt"):
        assert relative_error(gradient(case, method)[1], dA_ref) <= TOL, (method, case.description)


def test_loss_definition_is_the_mean_over_masked_pairs() -> None:
    """Recomputed here from y of unroll, by the written-out per-sample formulas."""
    for seed in range(4):
        case = sequence_case(200 + seed)
        with torch.no_grad():
            y, _ = case.net.unroll(case.x)
        L, B = case.x.shape[:2]
        mask = torch.ones(L, B, dtype=torch.bool) if case.mask is None else case.mask
        if case.loss == "mse":
            per = ((y - case.target) ** 2).mean(dim=2)
        else:
            per = -torch.log_softmax(y, dim=2).gather(2, case.target.unsqueeze(2)).squeeze(2)
        expected = per[mask].mean()
        value, _ = gradient(case, "fop")
        assert abs(float(value - expected)) <= TOL * float(expected), case.description


def autograd_with_cuts(case: SeqCase, k: int) -> torch.Tensor:
    """Autograd through the sequence unrolled by hand (Eq. 3 with plain torch operations), the
    state detached at l = k, 2k, ..."""
    net = case.net
    L, B = case.x.shape[:2]
    mask = torch.ones(L, B, dtype=torch.bool) if case.mask is None else case.mask
    A = net.A.detach().clone().requires_grad_(True)
    C, F, O = net.topology.n_clamped, net.topology.n_free, net.topology.n_outputs
    Am = A * net.mask
    h, ys = torch.zeros(B, F, dtype=torch.float64), []
    for l in range(L):
        if l % k == 0:
            h = h.detach()
        c = case.x[l]
        if net.topology.bias:
            c = torch.cat([c, torch.ones(B, 1, dtype=torch.float64)], dim=1)
        for _ in range(net.ticks):
            h = net.dynamics.activations.value(c @ Am[:C, C:] + h @ Am[C:, C:])
        ys.append(h[:, F - O :])
    y = torch.stack(ys)
    if case.loss == "mse":
        per = ((y - case.target) ** 2).mean(dim=2)
    else:
        per = -torch.log_softmax(y, dim=2).gather(2, case.target.unsqueeze(2)).squeeze(2)
    (dA,) = torch.autograd.grad(per[mask].mean(), A)
    return dA * net.mask


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("k", [1, 3, 7])
def test_tbptt_equals_autograd_with_the_same_cuts(seed: int, k: int) -> None:
    case = sequence_case(300 + seed, length=int(torch.randint(5, 30, (1,))))
    _, dA = gradient(case, "tbptt", truncation=k)
    reference = autograd_with_cuts(case, k)
    assert relative_error(dA, reference) <= TOL, case.description
    if k < case.x.shape[0]:  # the cuts change the gradient: the test can tell them apart
        _, full = gradient(case, "autograd")
        assert relative_error(dA, full) > 1e-6, case.description


def test_tbptt_with_a_window_as_long_as_the_sequence_is_exact() -> None:
    case = sequence_case(400, length=12)
    _, full = gradient(case, "autograd")
    assert relative_error(gradient(case, "tbptt", truncation=12)[1], full) <= TOL


@pytest.mark.parametrize("seed", range(6))
def test_fop_streaming_in_chunks_equals_one_call(seed: int) -> None:
    case = sequence_case(500 + seed, length=23)
    L, B = case.x.shape[:2]
    mask = torch.ones(L, B, dtype=torch.bool) if case.mask is None else case.mask
    value_ref, dA_ref = gradient(case, "autograd")
    state = mp.SequenceState()
    value, dA = torch.zeros(()), torch.zeros_like(dA_ref)
    total = int(mask.sum())
    for start, stop in [(0, 5), (5, 6), (6, 17), (17, 23)]:
        share = int(mask[start:stop].sum())
        if share == 0:
            mp.sequence_gradient(  # still advances the stream (a chunk without loss)
                case.net,
                case.x[start:stop],
                case.target[start:stop],
                loss=case.loss,
                mask=torch.ones(stop - start, B, dtype=torch.bool),
                state=state,
            )
            continue
        v, g = mp.sequence_gradient(
            case.net,
            case.x[start:stop],
            case.target[start:stop],
            loss=case.loss,
            mask=mask[start:stop],
            state=state,
        )
        value, dA = value + v * share / total, dA + g * share / total
    assert relative_error(dA, dA_ref) <= TOL, case.description
    assert abs(float(value - value_ref)) <= TOL * abs(float(value_ref))


def test_unroll_in_chunks_equals_one_call() -> None:
    case = sequence_case(600, length=20)
    y_ref, h_ref = case.net.unroll(case.x)
    y1, h = case.net.unroll(case.x[:8])
    y2, h = case.net.unroll(case.x[8:], state=h)
    assert torch.equal(torch.cat([y1, y2]), y_ref)
    assert torch.equal(h, h_ref)
    assert y_ref.shape == (20, case.x.shape[1], case.net.topology.n_outputs)


def test_unroll_one_element_is_the_forward_pass() -> None:
    case = sequence_case(601, length=1)
    y, _ = case.net.unroll(case.x)
    assert relative_error(y[0], case.net(case.x[0]).detach()) <= TOL


def test_unroll_is_differentiable_by_autograd() -> None:
    case = sequence_case(602, length=6)
    y, _ = case.net.unroll(case.x)
    assert y.requires_grad
    y.sum().backward()
    assert case.net.A.grad is not None and case.net.A.grad.abs().max() > 0


def test_sequence_gradient_leaves_a_grad_alone() -> None:
    case = sequence_case(603, length=4)
    gradient(case, "fop")
    assert case.net.A.grad is None


def test_bad_inputs_say_what_was_expected() -> None:
    case = sequence_case(700, length=4)
    net, x, t = case.net, case.x, case.target
    with pytest.raises(ValueError, match="unknown sequence method"):
        mp.sequence_gradient(net, x, t, loss=case.loss, method="fop_factored")
    with pytest.raises(ValueError, match="truncation=k"):
        mp.sequence_gradient(net, x, t, loss=case.loss, method="tbptt")
    with pytest.raises(ValueError, match="truncation applies"):
        mp.sequence_gradient(net, x, t, loss=case.loss, method="fop", truncation=3)
    with pytest.raises(ValueError, match=r"shape \(L, B,"):
        mp.sequence_gradient(net, x[0], t, loss=case.loss)
    with pytest.raises(ValueError, match="target of shape"):
        mp.sequence_gradient(net, x, t[:2], loss=case.loss)
    with pytest.raises(ValueError, match="unknown sequence loss"):
        mp.sequence_gradient(net, x, t, loss="hinge")
    with pytest.raises(TypeError, match=r"torch\.bool"):
        mp.sequence_gradient(net, x, t, loss=case.loss, mask=torch.ones(4, x.shape[1]))
    with pytest.raises(ValueError, match="selects no element"):
        mp.sequence_gradient(
            net, x, t, loss=case.loss, mask=torch.zeros(4, x.shape[1], dtype=torch.bool)
        )
    with pytest.raises(ValueError, match="state must be the"):
        net.unroll(x, state=torch.zeros(1, 99))
    with pytest.raises(TypeError, match="MeshNet"):
        mp.sequence_gradient("net", x, t)  # type: ignore[arg-type]
