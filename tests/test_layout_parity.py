"""The two layouts pitted against each other, capability by capability.

The same weights stored as the N×N matrix A (``layout="dense"``) and as one weight per edge
(``layout="sparse"``) must give the same outputs, the same gradients read at the edges and the
same results of every public function that takes a MeshNet.  Random topologies with cycles and
self-loops, mixed activations, several tick counts and batch sizes, float64 (≤ 1e-10).
"""

from __future__ import annotations

import pytest
import torch

import meshprop as mp
from helpers import random_case, relative_error
from meshprop.engines import GradientEngine, get_engine, register_engine
from meshprop.engines.registry import engine_layouts, unregister_engine

SEEDS = range(6)


def pair(seed: int, grad: str = "autograd"):
    """(dense net, sparse net with the same weights, the case's x, target, loss)."""
    case = random_case(seed)
    dense = case.net
    dense.grad = grad
    sparse = mp.MeshNet(
        dense.topology,
        ticks=dense.ticks,
        activation=list(_names(dense)),
        grad=grad,
        dtype=torch.float64,
        layout="sparse",
    )
    with torch.no_grad():
        sparse.parameter.copy_(dense.edge_weights())
    return dense, sparse, case


def _names(net: mp.MeshNet) -> list[str]:
    """Per-neuron activation names of ``net`` (clamped neurons get a placeholder)."""
    topo = net.topology
    return ["identity"] * topo.n_clamped + list(net.dynamics.activations.names)


def at_edges(net: mp.MeshNet, grad: torch.Tensor) -> torch.Tensor:
    """A gradient of ``net``'s storage read at the edges, (P,)."""
    return net.storage.edge_values(grad)


# --- core


@pytest.mark.parametrize("seed", SEEDS)
def test_outputs_and_trajectories_agree(seed):
    dense, sparse, case = pair(seed)
    with torch.no_grad():
        assert relative_error(sparse(case.x), dense(case.x)) < 1e-12
        assert relative_error(sparse.trajectory(case.x), dense.trajectory(case.x)) < 1e-12


@pytest.mark.parametrize("method", mp.GRADIENT_METHODS)
@pytest.mark.parametrize("seed", SEEDS)
def test_every_engine_gives_the_same_gradient_per_edge(seed, method):
    dense, sparse, case = pair(seed)
    loss_d, grad_d = mp.gradient(dense, case.x, case.target, loss=case.loss, method=method)
    loss_s, grad_s = mp.gradient(sparse, case.x, case.target, loss=case.loss, method=method)
    assert grad_d.shape == (dense.topology.n_neurons,) * 2
    assert grad_s.shape == (sparse.topology.n_edges,)
    assert abs(float(loss_d) - float(loss_s)) < 1e-12
    assert relative_error(grad_s, at_edges(dense, grad_d)) < 1e-10
    # the dense gradient is exactly zero off the edges
    off = ~dense.topology.dense_mask()
    assert not grad_d[off].any()


@pytest.mark.parametrize("method", mp.GRADIENT_METHODS)
def test_backward_through_every_engine_agrees(method):
    dense, sparse, case = pair(3, grad=method)
    losses = {
        "mse": torch.nn.functional.mse_loss,
        "cross_entropy": torch.nn.functional.cross_entropy,
    }
    for net in (dense, sparse):
        net.zero_grad()
        losses[case.loss](net(case.x), case.target).backward()
    assert sparse.weight.grad.shape == (sparse.topology.n_edges,)
    assert relative_error(sparse.weight.grad, at_edges(dense, dense.A.grad)) < 1e-10


@pytest.mark.parametrize("seed", SEEDS)
def test_unroll_agrees_and_continues_a_stream(seed):
    dense, sparse, _ = pair(seed)
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(5, 3, dense.topology.n_inputs, generator=gen, dtype=torch.float64)
    y_d, h_d = dense.unroll(x)
    y_s, h_s = sparse.unroll(x)
    assert relative_error(y_s, y_d) < 1e-12 and relative_error(h_s, h_d) < 1e-12
    # two halves continue exactly
    y1, h1 = sparse.unroll(x[:2])
    y2, _ = sparse.unroll(x[2:], h1)
    assert relative_error(torch.cat([y1, y2]), y_d) < 1e-12


def test_unroll_is_differentiable_on_both_layouts():
    dense, sparse, _ = pair(1)
    x = torch.randn(4, 2, dense.topology.n_inputs, dtype=torch.float64)
    for net in (dense, sparse):
        y, _ = net.unroll(x)
        y.square().sum().backward()
    assert relative_error(sparse.weight.grad, at_edges(dense, dense.A.grad)) < 1e-10


@pytest.mark.parametrize("seed", SEEDS)
def test_with_topology_keeps_shared_edges_on_both_layouts(seed):
    dense, sparse, case = pair(seed)
    topo = dense.topology
    edges = topo.edge_list()
    free = [(i, j) for i in range(topo.n_neurons) for j in range(topo.n_clamped, topo.n_neurons)]
    added = [e for e in free if e not in set(edges)][:2]
    smaller = topo.with_edges(add=added, remove=edges[: len(edges) // 3])
    moved_d, moved_s = dense.with_topology(smaller), sparse.with_topology(smaller)
    assert moved_s.layout == "sparse" and moved_s.weight.shape == (smaller.n_edges,)
    assert torch.equal(moved_s.edge_weights(), moved_d.edge_weights())
    with torch.no_grad():
        assert relative_error(moved_s(case.x), moved_d(case.x)) < 1e-12


def test_rewire_moves_weights_gradient_and_optimizer_state_on_both_layouts():
    dense, sparse, case = pair(2)
    topo = dense.topology
    smaller = topo.with_edges(remove=topo.edge_list()[::2])
    results = []
    for net in (dense, sparse):
        opt = torch.optim.Adam(net.parameters(), lr=0.1)
        param = net.parameter
        loss = torch.nn.functional.mse_loss if case.loss == "mse" else None
        for _ in range(2):
            opt.zero_grad()
            out = net(case.x)
            (
                loss(out, case.target)
                if loss
                else torch.nn.functional.cross_entropy(out, case.target)
            ).backward()
            opt.step()
        net.rewire_(smaller, opt)
        assert (net.parameter is param) == (net.layout == "dense")  # sparse: a new (P,) shape
        param = net.parameter
        assert [p for g in opt.param_groups for p in g["params"]] == [param]
        assert net.topology == smaller
        state = opt.state[param]
        results.append(
            (
                net.edge_weights(),
                net.storage.edge_values(param.grad).clone(),
                net.storage.edge_values(state["exp_avg"]).clone(),
                net.storage.edge_values(state["exp_avg_sq"]).clone(),
            )
        )
        for _ in range(2):  # training goes on, on the new topology only
            opt.zero_grad()
            out = net(case.x)
            (
                loss(out, case.target)
                if loss
                else torch.nn.functional.cross_entropy(out, case.target)
            ).backward()
            opt.step()
        if net.layout == "dense":
            assert not net.A.detach()[~smaller.dense_mask()].any()
        else:
            assert net.weight.shape == (smaller.n_edges,)
    for d, s in zip(*results, strict=True):
        assert relative_error(s, d) < 1e-12
    assert relative_error(sparse.edge_weights(), dense.edge_weights()) < 1e-10


def test_dense_weights_and_edge_weights_are_the_same_matrix():
    dense, sparse, _ = pair(4)
    assert torch.equal(sparse.dense_weights(), dense.dense_weights())
    assert torch.equal(sparse.edge_weights(), dense.edge_weights())
    assert torch.equal(
        sparse.storage.from_edge_values(dense.edge_weights()), sparse.weight.detach()
    )


class _EdgeFiniteDifferences(GradientEngine):
    """A user's engine written for the edge vector only: central differences (float64)."""

    name = "edge_fd"
    layout = "sparse"

    def forward(self, dyn, w, x):
        return mp.layout.SparseLayout(dyn.topology).output(dyn, w, x), None

    def backward(self, dyn, w, x, saved, grad_y):
        storage = mp.layout.SparseLayout(dyn.topology)
        grad = torch.zeros_like(w)
        for p in range(len(w)):
            step = torch.zeros_like(w)
            step[p] = 1e-6
            up = storage.output(dyn, w + step, x)
            down = storage.output(dyn, w - step, x)
            grad[p] = ((up - down) / 2e-6 * grad_y).sum()
        return grad, None


def test_an_engine_registered_for_one_layout_serves_both():
    engine = register_engine(_EdgeFiniteDifferences())
    try:
        assert engine_layouts("edge_fd") == {"dense": "bridge", "sparse": "native"}
        assert get_engine("edge_fd", "sparse") is engine
        dense, sparse, case = pair(5)
        _, exact = mp.gradient(dense, case.x, case.target, loss=case.loss, method="autograd")
        _, via_dense = mp.gradient(dense, case.x, case.target, loss=case.loss, method="edge_fd")
        _, native = mp.gradient(sparse, case.x, case.target, loss=case.loss, method="edge_fd")
        assert via_dense.shape == exact.shape
        assert relative_error(via_dense, exact) < 1e-6  # central differences: O(h²)
        assert torch.equal(at_edges(dense, via_dense), native)
    finally:
        unregister_engine("edge_fd")
    with pytest.raises(ValueError, match="unknown gradient method"):
        get_engine("edge_fd", "sparse")


def test_engine_layouts_of_the_built_ins():
    for method in mp.GRADIENT_METHODS:
        served = engine_layouts(method)
        assert set(served) == {"dense", "sparse"}
    assert engine_layouts("bptt") == {"dense": "native", "sparse": "native"}
    assert engine_layouts("reference") == {"dense": "native", "sparse": "bridge"}
