"""Both layouts give the same results: the dense layout's (N, N) and the sparse layout's (P,)
per-edge values are the same numbers (float64, rounding-level tolerances)."""

from __future__ import annotations

import copy

import pytest
import torch

import meshprop as mp
from helpers import relative_error
from test_sequence import TOL, sequence_case

# --- streams


def _sparse_twin(net: mp.MeshNet) -> mp.MeshNet:
    """The same network (same weights, ticks, activations) in the sparse layout."""
    twin = mp.MeshNet(
        net.topology,
        ticks=net.ticks,
        activation=net.activation,
        output_activation=net.output_activation,
        dtype=torch.float64,
        layout="sparse",
    )
    with torch.no_grad():
        twin.parameter.copy_(net.edge_weights())
    return twin


def _edges(net: mp.MeshNet, grad: torch.Tensor) -> torch.Tensor:
    return net.storage.edge_values(grad)


@pytest.mark.parametrize("seed", range(6))
def test_stream_sequence_methods_agree_on_both_layouts(seed: int) -> None:
    """fop, bptt, tbptt and autograd, dense and sparse: one gradient per edge."""
    case = sequence_case(1200 + seed, length=9)
    sparse = _sparse_twin(case.net)
    kwargs = {"loss": case.loss, "mask": case.mask}
    _, reference = mp.sequence_gradient(case.net, case.x, case.target, method="autograd", **kwargs)
    reference = _edges(case.net, reference)
    for net in (case.net, sparse):
        for method in ("fop", "bptt", "autograd"):
            _, grad = mp.sequence_gradient(net, case.x, case.target, method=method, **kwargs)
            assert grad.shape == net.storage.shape
            assert relative_error(_edges(net, grad), reference) <= TOL, (method, net.layout)
    _, dense_cut = mp.sequence_gradient(
        case.net, case.x, case.target, method="tbptt", truncation=3, **kwargs
    )
    _, sparse_cut = mp.sequence_gradient(
        sparse, case.x, case.target, method="tbptt", truncation=3, **kwargs
    )
    assert relative_error(sparse_cut, _edges(case.net, dense_cut)) <= TOL


@pytest.mark.parametrize("layout", ["dense", "sparse"])
@pytest.mark.parametrize("seed", range(3))
def test_a_stream_cut_into_chunks_equals_the_whole(layout: str, seed: int) -> None:
    case = sequence_case(1300 + seed, length=14)
    net = case.net if layout == "dense" else _sparse_twin(case.net)
    L, B = case.x.shape[:2]
    mask = torch.ones(L, B, dtype=torch.bool) if case.mask is None else case.mask
    _, whole = mp.sequence_gradient(net, case.x, case.target, loss=case.loss, mask=mask)
    state, total, grad = mp.SequenceState(), int(mask.sum()), torch.zeros_like(whole)
    for start, stop in [(0, 4), (4, 5), (5, 14)]:
        share = int(mask[start:stop].sum())
        chunk_mask = mask[start:stop] if share else torch.ones(stop - start, B, dtype=torch.bool)
        _, g = mp.sequence_gradient(
            net,
            case.x[start:stop],
            case.target[start:stop],
            loss=case.loss,
            mask=chunk_mask,
            state=state,
        )
        grad += g * share / total
    assert relative_error(grad, whole) <= TOL, case.description


def _frozen_online_sum(net, case, mask, **options) -> torch.Tensor:
    """Σ_t (masked share of t) · the learner's gradient at step t, weights frozen."""
    learner = mp.OnlineLearner(
        net, torch.optim.SGD(net.parameters(), lr=0.0), loss=case.loss, **options
    )
    total = int(mask.sum())
    accumulated = torch.zeros(net.storage.shape, dtype=torch.float64)
    for t in range(case.x.shape[0]):
        learner.step(case.x[t], case.target[t], mask[t])
        m = int(mask[t].sum())
        if m:
            accumulated += learner.last_gradient * m / total
        else:
            assert learner.last_gradient is None  # no loss at this update point
    return accumulated


@pytest.mark.parametrize("layout", ["dense", "sparse"])
@pytest.mark.parametrize("method", mp.ONLINE_METHODS)
@pytest.mark.parametrize("seed", range(3))
def test_every_online_method_equals_sequence_gradient(layout, method, seed) -> None:
    """Every registered online method, weights frozen, step after every element: the sum of its
    per-element gradients is the sequence gradient of the same method's meaning (fop: exact;
    tbptt with a window as long as the stream: exact)."""
    case = sequence_case(1400 + seed, length=8)
    net = case.net if layout == "dense" else _sparse_twin(case.net)
    L, B = case.x.shape[:2]
    mask = torch.ones(L, B, dtype=torch.bool) if case.mask is None else case.mask
    _, reference = mp.sequence_gradient(
        net, case.x, case.target, loss=case.loss, method="autograd", mask=mask
    )
    options = {"method": method, "truncation": L if method == "tbptt" else None}
    accumulated = _frozen_online_sum(net, case, mask, **options)
    assert relative_error(accumulated, reference) <= TOL, case.description


@pytest.mark.parametrize("method", mp.ONLINE_METHODS)
def test_online_learning_is_the_same_on_both_layouts(method: str) -> None:
    """Adam steps after every element: the same losses and per-edge weights on both layouts."""
    case = sequence_case(1500, length=20)
    dense = copy.deepcopy(case.net)
    sparse = _sparse_twin(dense)
    options = {"truncation": 4} if method == "tbptt" else {}
    learners = [
        mp.OnlineLearner(
            n, torch.optim.Adam(n.parameters(), lr=1e-2), loss=case.loss, method=method, **options
        )
        for n in (dense, sparse)
    ]
    for t in range(case.x.shape[0]):
        m = None if case.mask is None else case.mask[t]
        a, b = (learner.step(case.x[t], case.target[t], m) for learner in learners)
        assert (a != a and b != b) or abs(a - b) <= TOL * max(1.0, abs(a))
    assert relative_error(sparse.edge_weights(), dense.edge_weights()) <= TOL
    assert sparse.parameter.grad.shape == (sparse.topology.n_edges,)
