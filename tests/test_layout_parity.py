"""The two layouts pitted against each other, capability by capability.

The same weights stored as the N×N matrix A (``layout="dense"``) and as one weight per edge
(``layout="sparse"``) must give the same outputs, the same gradients read at the edges and the
same results of every public function that takes a MeshNet.  Random topologies with cycles and
self-loops, mixed activations, several tick counts and batch sizes, float64 (≤ 1e-10).
"""

from __future__ import annotations

import copy
import json
import pickle
from typing import Any

import numpy as np
import pytest
import torch

import meshprop as mp
from helpers import random_case, random_topology, relative_error
from meshprop.cli import main
from meshprop.engines import GradientEngine, get_engine, register_engine
from meshprop.engines.registry import engine_layouts, unregister_engine
from meshprop.export import inference_module
from meshprop.memory import MemoryLimitError
from meshprop.streams import fop_representation
from meshprop.streams.snap import saturation_order
from meshprop.structure import (
    SET,
    EdgeChange,
    MagnitudePruning,
    RigL,
    StructuralLearning,
    UpdateContext,
    UpdateSchedule,
    absent_gradient,
    apply_change,
    dense_gradient,
    sampling,
)
from meshprop.structure.edges import allowed_count, candidates, edge_count, largest
from meshprop.training import TrainingCheckpoint, TrainingInterruptedError, fit
from meshprop.training.jacobian import ParameterVector
from test_sequence import TOL, sequence_case

SEEDS = range(6)


def pair(seed: int, grad: str = "autograd", device: torch.device | str = "cpu"):
    """(dense net, sparse net with the same weights, the case's x, target, loss), on
    ``device``."""
    case = random_case(seed, device=device)
    dense = case.net
    dense.grad = grad
    sparse = mp.MeshNet(
        dense.topology,
        ticks=dense.ticks,
        activation=list(_names(dense)),
        grad=grad,
        dtype=torch.float64,
        layout="sparse",
        device=device,
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
def test_outputs_and_trajectories_agree(seed, device):
    dense, sparse, case = pair(seed, device=device)
    with torch.no_grad():
        assert relative_error(sparse(case.x), dense(case.x)) < 1e-12
        assert relative_error(sparse.trajectory(case.x), dense.trajectory(case.x)) < 1e-12


@pytest.mark.parametrize("method", mp.GRADIENT_METHODS)
@pytest.mark.parametrize("seed", SEEDS)
def test_every_engine_gives_the_same_gradient_per_edge(seed, method, device):
    dense, sparse, case = pair(seed, device=device)
    loss_d, grad_d = mp.gradient(dense, case.x, case.target, loss=case.loss, method=method)
    loss_s, grad_s = mp.gradient(sparse, case.x, case.target, loss=case.loss, method=method)
    assert grad_d.shape == (dense.topology.n_neurons,) * 2
    assert grad_s.shape == (sparse.topology.n_edges,)
    assert abs(float(loss_d) - float(loss_s)) < 1e-12
    assert relative_error(grad_s, at_edges(dense, grad_d)) < 1e-10
    assert grad_s.device.type == grad_d.device.type == device.type
    # the dense gradient is exactly zero off the edges
    off = ~dense.topology.dense_mask().to(grad_d.device)
    assert not grad_d[off].any()


@pytest.mark.parametrize("method", mp.GRADIENT_METHODS)
def test_backward_through_every_engine_agrees(method, device):
    dense, sparse, case = pair(3, grad=method, device=device)
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


# --- structure

F64 = torch.float64
_STRUCTURE_LAYOUTS = ("dense", "sparse")


def _structure_data(n: int = 48, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, 4, generator=g, dtype=F64), torch.randint(0, 3, (n,), generator=g)


def _structure_net(layout: str, d: float = 0.3, grad: str = "bptt", seed: int = 0) -> mp.MeshNet:
    """The same network on either layout: the dense net's weights copied edge by edge."""
    topo = mp.Topology.random(4, 6, 3, density=d, seed=seed)
    net = mp.MeshNet(topo, ticks=3, grad=grad, dtype=F64, seed=seed)
    if layout == "dense":
        return net
    sparse = mp.MeshNet(topo, ticks=3, grad=grad, dtype=F64, layout="sparse")
    with torch.no_grad():
        sparse.parameter.copy_(sparse.storage.from_edge_values(net.edge_weights()))
    return sparse


def _structure_on_edges_only(net: mp.MeshNet) -> bool:
    """The stored weights hold exactly the edge vector: nothing off the edges, either layout."""
    stored = net.parameter.detach()
    return tuple(stored.shape) == net.storage.shape and torch.equal(
        stored, net.storage.from_edge_values(net.edge_weights())
    )


def _structure_context(net: mp.MeshNet, fraction: float = 0.4, seed: int = 0) -> UpdateContext:
    X, y = _structure_data()
    generator = torch.Generator().manual_seed(seed)
    return UpdateContext(net, 1, UpdateSchedule(1, fraction), X, y, "cross_entropy", generator)


@pytest.mark.parametrize("rule", ["set", "rigl", "magnitude"])
def test_structure_both_layouts_make_the_same_decisions(rule: str) -> None:
    start = 1.0 if rule == "magnitude" else 0.3
    dense, sparse = (_structure_net(layout, start) for layout in _STRUCTURE_LAYOUTS)
    make = {"set": SET, "rigl": RigL, "magnitude": lambda: MagnitudePruning(0.2, 1.0)}[rule]
    a, b = make().propose(_structure_context(dense)), make().propose(_structure_context(sparse))
    assert len(a.remove) > 0 and (rule == "magnitude" or len(a.add) == len(a.remove))
    assert torch.equal(a.add, b.add) and torch.equal(a.remove, b.remove)
    # and over a training run: fit + StructuralLearning, same seeds, same topologies
    X, y = _structure_data()
    nets, logs = [], []
    for layout in _STRUCTURE_LAYOUTS:
        net = _structure_net(layout, start)
        rule_obj: Any = MagnitudePruning(0.2, 1.0) if rule == "magnitude" else rule
        structure = StructuralLearning(rule_obj, UpdateSchedule(2, 0.4, end_step=10), seed=1)
        fit(net, (X, y), epochs=2, batch_size=8, seed=0, progress=False, after_step=structure)
        assert _structure_on_edges_only(net)
        nets.append(net)
        logs.append(structure.log)
    assert logs[0] == logs[1] and sum(r["added"] + r["removed"] for r in logs[0]) > 0
    assert nets[0].topology == nets[1].topology
    torch.testing.assert_close(nets[0].edge_weights(), nets[1].edge_weights(), rtol=0, atol=1e-12)


@pytest.mark.parametrize("layout", _STRUCTURE_LAYOUTS)
@pytest.mark.parametrize("engine", ["fop", "bptt", "fop_factored"])
def test_structure_gradient_after_an_update_equals_autograd(layout: str, engine: str) -> None:
    X, y = _structure_data()
    net = _structure_net(layout, grad=engine)
    structure = StructuralLearning("rigl", UpdateSchedule(3, 0.5), seed=0)
    fit(net, (X, y), epochs=1, batch_size=16, progress=False, after_step=structure)
    assert structure.log[0]["added"] > 0 and _structure_on_edges_only(net)
    net.parameter.grad = None
    torch.nn.functional.cross_entropy(net(X), y).backward()
    assert net.parameter.grad is not None
    got = net.storage.edge_values(net.parameter.grad)
    # independent: autograd through a dense network holding the same weights
    reference = mp.MeshNet(net.topology, ticks=3, grad="autograd", dtype=F64)
    with torch.no_grad():
        reference.A.copy_(net.dense_weights())
    torch.nn.functional.cross_entropy(reference(X), y).backward()
    expected = reference.storage.edge_values(reference.A.grad)
    torch.testing.assert_close(got, expected, rtol=0, atol=1e-10)
    assert float(expected.abs().sum()) > 0
    _, grad = mp.gradient(net, X, y, method=engine)
    torch.testing.assert_close(net.storage.edge_values(grad), expected, rtol=0, atol=1e-10)


@pytest.mark.parametrize("layout", _STRUCTURE_LAYOUTS)
@pytest.mark.parametrize("optimizer", ["adam", "sgd", "adagrad"])
def test_structure_no_weight_off_the_edges_after_any_step(layout: str, optimizer: str) -> None:
    X, y = _structure_data()
    net = _structure_net(layout)
    seen: list[bool] = []
    structure = StructuralLearning("set", UpdateSchedule(2, 0.4, end_step=10), seed=1)

    def after(step, net, opt, x, target) -> None:
        structure(step, net, opt, x, target)
        seen.append(_structure_on_edges_only(net))

    momentum = 0.9 if optimizer == "sgd" else 0.0
    fit(net, (X, y), epochs=2, batch_size=8, optimizer=optimizer, momentum=momentum, lr=0.05,
        progress=False, after_step=after)  # fmt: skip
    assert len(seen) == 12 and all(seen)
    assert net.topology.n_edges == edge_count(0.3, net.topology)


@pytest.mark.parametrize("layout", _STRUCTURE_LAYOUTS)
def test_structure_optimizer_state_follows_the_edges(layout: str) -> None:
    X, y = _structure_data()
    net = _structure_net(layout, 0.4)
    opt = torch.optim.Adam([net.parameter], lr=0.01)
    for _ in range(3):
        opt.zero_grad()
        torch.nn.functional.cross_entropy(net(X), y).backward()
        opt.step()
    old, old_storage, param = net.topology, net.storage, net.parameter
    before = {
        k: old_storage.edge_values(v).clone() for k, v in opt.state[param].items() if k != "step"
    }
    weights = net.edge_weights()
    change = RigL().propose(_structure_context(net, 0.3))
    assert len(change.add) == len(change.remove) == round(0.3 * old.n_edges)
    new = apply_change(net, opt, change)
    assert net.topology == new == old.with_edges(add=change.add, remove=change.remove)
    assert net.parameter is param and opt.param_groups[0]["params"][0] is param
    assert _structure_on_edges_only(net)
    old_keys = {e: i for i, e in enumerate(old.edge_list())}
    added = set(map(tuple, change.add.tolist()))
    kept = [(old_keys[e], i) for i, e in enumerate(new.edge_list()) if e not in added]
    grown = [i for i, e in enumerate(new.edge_list()) if e in added]
    k_old, k_new = torch.tensor([k for k, _ in kept]), torch.tensor([k for _, k in kept])
    assert len(kept) == new.n_edges - len(grown) and grown
    assert torch.equal(net.edge_weights()[k_new], weights[k_old])
    assert torch.all(net.edge_weights()[grown] == 0)
    for key, values in before.items():
        state = net.storage.edge_values(opt.state[param][key])
        assert torch.equal(state[k_new], values[k_old]) and bool((values[k_old] != 0).any())
        assert torch.all(state[grown] == 0)
    assert int(opt.state[param]["step"]) == 3


@pytest.mark.parametrize("layout", _STRUCTURE_LAYOUTS)
def test_structure_dense_gradient_and_block_top_k_are_exact(layout: str, monkeypatch) -> None:
    X, y = _structure_data()
    net = _structure_net(layout)
    dA = dense_gradient(net, X, y, "cross_entropy")
    dense = mp.MeshNet(mp.Topology.mesh(4, 6, 3), ticks=3, grad="autograd", dtype=F64)
    with torch.no_grad():
        dense.A.copy_(net.dense_weights())
    torch.nn.functional.cross_entropy(dense(X), y).backward()
    torch.testing.assert_close(dA, dense.A.grad, rtol=0, atol=1e-10)
    # the block-by-rows top-k equals a sort of every absent entry, over several blocks
    free = candidates(net.topology)
    S, E = absent_gradient.gradient_factors(net, X, y, "cross_entropy")
    for rows in (1, 3, 1000):
        monkeypatch.setattr(absent_gradient, "BLOCK_ENTRIES", rows * net.topology.n_free)
        for k in (1, 7, len(free)):
            got = absent_gradient.largest_absent_gradients(net.topology, S, E, k)
            scores = dA.abs()[free[:, 0], free[:, 1]]
            assert torch.equal(got, free[largest(scores, k)])


def test_structure_block_top_k_breaks_ties_in_row_major_order(monkeypatch) -> None:
    topo = mp.Topology.random(3, 5, 2, density=0.3, seed=2)
    g = torch.Generator().manual_seed(0)
    S = torch.randint(-1, 2, (6, topo.n_neurons), generator=g).to(F64)  # many exact ties
    E = torch.randint(-1, 2, (6, topo.n_free), generator=g).to(F64)
    free = candidates(topo)
    scores = (S.T @ E).abs()[free[:, 0], free[:, 1] - topo.n_clamped]
    monkeypatch.setattr(absent_gradient, "BLOCK_ENTRIES", 2 * topo.n_free)
    for k in range(1, len(free) + 1, 5):
        got = absent_gradient.largest_absent_gradients(topo, S, E, k)
        assert torch.equal(got, free[largest(scores, k)])


def test_structure_random_regrowth_by_rejection_draws_absent_allowed_edges(monkeypatch) -> None:
    monkeypatch.setattr(sampling, "RANDOM_DENSE_LIMIT", 0)  # the large-mesh path, on a small one
    topo = mp.Topology.random(4, 6, 3, density=0.6, seed=1)
    present = set(topo.edge_list())
    free = allowed_count(topo) - topo.n_edges
    counts: dict[tuple[int, int], int] = {}
    for seed in range(40):
        drawn = sampling.random_absent_edges(topo, 10, torch.Generator().manual_seed(seed))
        pairs = [tuple(e) for e in drawn.tolist()]
        assert len(pairs) == len(set(pairs)) == 10
        assert all(j >= topo.n_clamped and e not in present for e in pairs for j in e[1:])
        for e in pairs:
            counts[e] = counts.get(e, 0) + 1
    assert len(counts) > free // 2  # not stuck on a few edges
    every = sampling.random_absent_edges(topo, free + 5, torch.Generator().manual_seed(0))
    assert len(every) == free and not {tuple(e) for e in every.tolist()} & present


def test_structure_prune_set_rigl_at_20000_neurons_never_allocate_n_squared(monkeypatch) -> None:
    topo = mp.Topology.sparse_random(18_990, 1_000, 10, degree=6, fan_in=3, seed=0)
    N = topo.n_neurons
    assert N > 20_000
    mp.set_memory_limit("64MiB")  # N² bytes (a boolean mask) are 381 MiB: refused
    try:
        with pytest.raises(MemoryLimitError):
            mp.MeshNet(topo, ticks=2, dtype=F64)  # the dense layout: N×N
        with pytest.raises(MemoryLimitError):
            mp.Topology.mesh(18_990, 1_000, 10)

        def refuse(*args: Any, **kwargs: Any) -> None:
            raise AssertionError("an N×N mask was built")

        monkeypatch.setattr(mp.Topology, "dense_mask", refuse)
        monkeypatch.setattr(mp.Topology, "allowed_mask", refuse)
        net = mp.MeshNet(topo, ticks=2, grad="bptt", dtype=F64, layout="sparse", seed=0)
        g = torch.Generator().manual_seed(0)
        X = torch.randn(8, 18_990, generator=g, dtype=F64)
        y = torch.randint(0, 10, (8,), generator=g)
        opt = torch.optim.Adam([net.parameter], lr=0.01)
        torch.nn.functional.cross_entropy(net(X), y).backward()
        opt.step()
        P = topo.n_edges
        prune = MagnitudePruning(0.9 * P / allowed_count(topo), P / allowed_count(topo))
        schedule = UpdateSchedule(1, 0.1)
        for rule in (prune, SET(), RigL()):
            before = net.topology
            context = UpdateContext(net, 1, schedule, X, y, "cross_entropy", g)
            change = rule.propose(context)
            assert len(change.remove) > 0
            apply_change(net, opt, change)
            assert net.topology == before.with_edges(add=change.add, remove=change.remove)
            assert tuple(net.parameter.shape) == (net.topology.n_edges,)
            assert tuple(opt.state[net.parameter]["exp_avg"].shape) == (net.topology.n_edges,)
            opt.zero_grad()
            torch.nn.functional.cross_entropy(net(X), y).backward()
            opt.step()
        assert net.topology.n_edges == edge_count(0.9 * P / allowed_count(topo), topo)
    finally:
        mp.set_memory_limit()  # back to the default


@pytest.mark.parametrize("layout", _STRUCTURE_LAYOUTS)
def test_structure_resume_is_bit_identical(layout: str, tmp_path) -> None:
    X, y = _structure_data(40)

    def train(ckpt: TrainingCheckpoint | None) -> tuple[mp.MeshNet, StructuralLearning]:
        net = _structure_net(layout)
        structure = StructuralLearning("rigl", UpdateSchedule(2, 0.4, end_step=12), seed=3)
        if ckpt is not None:
            ckpt.extra_state = structure.state_dict
            ckpt.load_extra_state = structure.load_state_dict
        fit(net, (X, y), epochs=4, batch_size=8, seed=1, progress=False,
            after_step=structure, checkpoint=ckpt)  # fmt: skip
        return net, structure

    reference, reference_rule = train(None)
    assert sum(r["added"] for r in reference_rule.log) > 0
    path = tmp_path / "state.pt"
    # 40 samples in batches of 8: fit polls 6 times an epoch; stopped at the 7th poll (inside
    # epoch 2), then 8 polls later, then resumed to the end, each time in a fresh network
    for polls in (7, 8):
        count = {"n": 0}

        def stop(count: dict[str, int] = count, polls: int = polls) -> bool:
            count["n"] += 1
            return count["n"] == polls

        with pytest.raises(TrainingInterruptedError):
            train(TrainingCheckpoint(path, resume=True, stop_requested=stop))
    net, rule = train(TrainingCheckpoint(path, resume=True))
    assert net.topology == reference.topology and net.layout == layout
    assert torch.equal(net.parameter.detach(), reference.parameter.detach())
    assert rule.log == reference_rule.log


def test_structure_change_is_an_edge_change() -> None:
    assert len(EdgeChange.none().add) == len(EdgeChange.none().remove) == 0


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


def _exact_options(method: str, net: mp.MeshNet, length: int) -> dict:
    """The options under which an online method is exact: tbptt with a window as long as the
    stream, SnAp at its saturation order (nothing dropped)."""
    if method == "tbptt":
        return {"truncation": length}
    if method == "snap":
        return {"order": saturation_order(net.topology)}
    return {}


#: the online methods that are exact under :func:`_exact_options` (UORO is unbiased, not
#: exact: tests/test_online_approx.py checks its mean over many seeds)
EXACT_ONLINE = [m for m in mp.ONLINE_METHODS if m != "uoro"]


@pytest.mark.parametrize("layout", ["dense", "sparse"])
@pytest.mark.parametrize("method", EXACT_ONLINE)
@pytest.mark.parametrize("seed", range(3))
def test_every_online_method_equals_sequence_gradient(layout, method, seed) -> None:
    """Every exact online method, weights frozen, step after every element: the sum of its
    per-element gradients is the sequence gradient (fop: exact RTRL; tbptt with a window as
    long as the stream and SnAp at its saturation order: exact)."""
    case = sequence_case(1400 + seed, length=8)
    net = case.net if layout == "dense" else _sparse_twin(case.net)
    L, B = case.x.shape[:2]
    mask = torch.ones(L, B, dtype=torch.bool) if case.mask is None else case.mask
    _, reference = mp.sequence_gradient(
        net, case.x, case.target, loss=case.loss, method="autograd", mask=mask
    )
    accumulated = _frozen_online_sum(
        net, case, mask, method=method, **_exact_options(method, net, L)
    )
    assert relative_error(accumulated, reference) <= TOL, case.description


@pytest.mark.parametrize("method", mp.ONLINE_METHODS)
def test_online_learning_is_the_same_on_both_layouts(method: str) -> None:
    """Adam steps after every element: the same losses and per-edge weights on both layouts."""
    case = sequence_case(1500, length=20)
    dense = copy.deepcopy(case.net)
    sparse = _sparse_twin(dense)
    options = {"tbptt": {"truncation": 4}, "snap": {"order": 1}, "uoro": {"seed": 0}}.get(
        method, {}
    )
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


@pytest.mark.parametrize("representation", ["dense", "pattern"])
def test_fop_representations_learn_the_same_on_both_layouts(representation: str) -> None:
    """Exact fop on its dense and its pattern representation (meshprop.streams.cost), Adam after
    every element: the same losses and per-edge weights on both layouts."""
    case = sequence_case(1600, length=12)
    dense = copy.deepcopy(case.net)
    sparse = _sparse_twin(dense)
    with fop_representation(representation):
        learners = [
            mp.OnlineLearner(n, torch.optim.Adam(n.parameters(), lr=1e-2), loss=case.loss)
            for n in (dense, sparse)
        ]
        for t in range(case.x.shape[0]):
            m = None if case.mask is None else case.mask[t]
            a, b = (learner.step(case.x[t], case.target[t], m) for learner in learners)
            assert (a != a and b != b) or abs(a - b) <= TOL * max(1.0, abs(a))
    assert relative_error(sparse.edge_weights(), dense.edge_weights()) <= TOL


# --- capabilities

CAPABILITY_TOL = 1e-10


def _capability_twin(net: mp.MeshNet) -> mp.MeshNet:
    """A sparse-layout MeshNet with ``net``'s topology, settings and weights."""
    twin = mp.MeshNet(
        net.topology,
        ticks=net.ticks,
        activation=net.activation,
        output_activation=net.output_activation,
        grad=net.grad,
        dtype=net.parameter.dtype,
        layout="sparse",
    )
    with torch.no_grad():
        twin.parameter.copy_(net.edge_weights())
    return twin


def _pair(seed: int) -> tuple[mp.MeshNet, mp.MeshNet, torch.Tensor]:
    """(dense, sparse, x (B, I)): a random float64 mesh with cycles, self-loops and mixed
    activations (``helpers.random_case``) on both layouts."""
    case = random_case(seed)
    x = case.x if case.x.dim() == 2 else case.x[0]
    return case.net, _capability_twin(case.net), x


def _gap(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a.detach().double() - b.detach().double()).abs().max())


@pytest.mark.parametrize("seed", range(3))
def test_checkpoint_round_trip_keeps_the_layout(tmp_path, seed):
    dense, sparse, x = _pair(seed)
    for net in (dense, sparse):
        mp.save_checkpoint(tmp_path / net.layout, net, extra={"note": seed})
        loaded, document = mp.load_checkpoint(tmp_path / net.layout)
        assert loaded.layout == net.layout and document["note"] == seed
        assert document["model"]["layout"] == net.layout
        assert torch.equal(loaded.parameter, net.parameter)
        assert _gap(loaded(x), dense(x)) <= CAPABILITY_TOL


def test_version_2_checkpoint_loads_as_dense(tmp_path):
    dense, _, x = _pair(0)
    mp.save_checkpoint(tmp_path, dense)
    path = tmp_path / "model.json"
    document = json.loads(path.read_text())
    document["version"] = 2
    del document["model"]["layout"]
    path.write_text(json.dumps(document))
    loaded, _ = mp.load_checkpoint(tmp_path)
    assert loaded.layout == "dense" and torch.equal(loaded(x), dense(x))


def test_sparse_checkpoint_refuses_weights_of_the_wrong_shape(tmp_path):
    from safetensors.torch import load_file, save_file

    _, sparse, _ = _pair(1)
    mp.save_checkpoint(tmp_path, sparse)
    tensors = load_file(str(tmp_path / "model.safetensors"))
    tensors["weight"] = tensors["weight"][:-1].contiguous()
    save_file(tensors, str(tmp_path / "model.safetensors"))
    with pytest.raises(ValueError, match=r"expected a floating-point tensor 'weight' of shape"):
        mp.load_checkpoint(tmp_path)


@pytest.mark.parametrize("products", ["matrix", "edges"])
def test_exported_module_is_the_same_on_both_layouts(products):
    for seed in range(4):
        dense, sparse, x = _pair(seed)
        y = dense(x)
        for net in (dense, sparse):
            module = inference_module(net, products=products)
            assert _gap(module(x), y) <= CAPABILITY_TOL
            y32 = inference_module(net, dtype="float32", products=products)(x.float())
            assert y32.dtype == torch.float32 and _gap(y32, y) <= 1e-5


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_onnx_export_of_both_layouts_reproduces_net(tmp_path, dtype):
    ort = pytest.importorskip("onnxruntime")
    pytest.importorskip("onnx")
    dense, sparse, x = _pair(5)
    y = dense(x).detach().numpy()
    tol = 1e-5 if dtype == "float32" else CAPABILITY_TOL
    for net in (dense, sparse):
        for products in ("matrix", "edges"):
            path = mp.export_onnx(
                net, tmp_path / f"{products}.onnx", dtype=dtype, products=products
            )
            session = ort.InferenceSession(str(path))
            for batch in (1, 7):
                xb = torch.randn(batch, net.topology.n_inputs, dtype=torch.float64)
                (out,) = session.run(None, {"x": xb.numpy().astype(dtype)})
                assert out.dtype == np.dtype(dtype)
                assert np.abs(out - dense(xb).detach().numpy()).max() <= tol
            (out,) = session.run(None, {"x": x.numpy().astype(dtype)})
            assert np.abs(out - y).max() <= tol


def test_export_refuses_other_dtypes():
    dense, _, _ = _pair(0)
    with pytest.raises(ValueError, match="float32 or float64"):
        inference_module(dense, dtype="float16")


@pytest.mark.parametrize("seed", range(4))
def test_jacobian_is_the_same_on_both_layouts(seed):
    dense, sparse, x = _pair(seed)
    J = mp.jacobian(dense, x)
    assert _gap(mp.jacobian(sparse, x), J) <= CAPABILITY_TOL

    def f(w: torch.Tensor) -> torch.Tensor:  # autograd through the sparse storage
        return sparse.storage.differentiable_output(sparse.dynamics, w, x)

    reference = torch.autograd.functional.jacobian(f, sparse.edge_weights())
    assert _gap(J, reference) <= CAPABILITY_TOL


def test_parameter_vector_and_levenberg_marquardt_agree_on_both_layouts():
    from meshprop.training.levenberg_marquardt import levenberg_marquardt

    dense, sparse, x = _pair(2)
    target = torch.randn(len(x), dense.topology.n_outputs, dtype=torch.float64)
    for net in (dense, sparse):
        vector = ParameterVector(net)
        theta = vector.get()
        assert torch.equal(theta, dense.edge_weights())
        vector.set(theta * 2)
        assert torch.equal(net.edge_weights(), 2 * theta)
        vector.set(theta)
    histories = [levenberg_marquardt(net, x, target, epochs=3) for net in (dense, sparse)]
    assert _gap(sparse.edge_weights(), dense.edge_weights()) <= CAPABILITY_TOL
    for a, b in zip(histories[0]["train_loss"], histories[1]["train_loss"], strict=True):
        assert abs(a - b) <= CAPABILITY_TOL


@pytest.mark.parametrize("grad", ["fop", "bptt", "autograd"])
def test_fit_and_test_metrics_are_the_same_on_both_layouts(grad):
    from meshprop.data import Standardizer
    from meshprop.runs.evaluation import test_metrics

    gen = torch.Generator().manual_seed(3)
    dense = mp.MeshNet(
        random_topology(gen, 3), ticks=3, activation="tanh", grad=grad, dtype=torch.float64
    )
    sparse = _capability_twin(dense)
    X = torch.randn(40, dense.topology.n_inputs, generator=gen, dtype=torch.float64)
    y = torch.randint(0, dense.topology.n_outputs, (40,), generator=gen)
    histories = [
        mp.fit(net, (X, y), epochs=3, batch_size=8, lr=0.05, progress=False)
        for net in (dense, sparse)
    ]
    assert _gap(sparse.edge_weights(), dense.edge_weights()) <= CAPABILITY_TOL
    for a, b in zip(histories[0]["train_loss"], histories[1]["train_loss"], strict=True):
        assert abs(a - b) <= CAPABILITY_TOL
    scaler = Standardizer.fit(X.numpy())
    metrics = [test_metrics(net, X, y, "classification", scaler) for net in (dense, sparse)]
    assert abs(metrics[0]["test_loss"] - metrics[1]["test_loss"]) <= CAPABILITY_TOL


def test_plots_draw_both_layouts_alike():
    from meshprop import plots

    dense, sparse, _ = _pair(4)
    for pixels in (600, 3):  # one entry per neuron, then blocks of neurons
        image, step = plots.weight_image(dense, pixels)
        image_s, step_s = plots.weight_image(sparse, pixels)
        assert step == step_s and np.array_equal(image, image_s)
    A = dense.dense_weights().numpy()
    assert np.array_equal(plots.weight_image(dense)[0], A)  # small: the matrix itself
    for net in (dense, sparse):
        plots.plt.close(plots.plot_topology(net))
        plots.plt.close(plots.plot_weight_matrix(net, pixels=3))
    topo = mp.Topology.random(2, 4, 2, density=0.7, seed=1)
    two_d = mp.MeshNet(topo, ticks=2, dtype=torch.float64, seed=1)
    X = np.random.default_rng(0).normal(size=(30, 2))
    labels = (X[:, 0] > 0).astype(int)
    grids = []
    for net in (two_d, _capability_twin(two_d)):
        xx, yy = plots._grid(X, 20)
        grids.append(plots._predict_grid(net, xx, yy))
        plots.plt.close(plots.plot_decision_boundary(net, X, labels))
    assert np.array_equal(*grids)


def test_weight_image_of_a_large_sparse_mesh_needs_no_n2():
    from meshprop import plots

    topo = mp.Topology.sparse_random(8, 20_000, 3, degree=5, seed=0)
    net = mp.MeshNet(topo, ticks=2, layout="sparse", dtype=torch.float32, seed=0)
    with mp.memory_limit("64MiB"):
        image, step = plots.weight_image(net)
    step_expected = -(-topo.n_neurons // 600)
    M = -(-topo.n_neurons // step_expected)
    assert step == step_expected and image.shape == (M, M) and M <= 600
    assert np.abs(image).max() == pytest.approx(float(net.edge_weights().abs().max()))


def test_sklearn_estimators_take_a_layout():
    from meshprop.sklearn import MeshClassifier, MeshRegressor

    rng = np.random.default_rng(0)
    X = rng.normal(size=(60, 3))
    y = (X[:, 0] + X[:, 1] > 0).astype(int)
    kwargs = {"hidden": 5, "epochs": 3, "random_state": 0}
    dense = MeshClassifier(**kwargs).fit(X, y)
    sparse = MeshClassifier(layout="sparse", **kwargs).fit(X, y)
    net = sparse.network_
    assert net.layout == "sparse" and net.topology == dense.network_.topology
    assert sparse.score(X, y) > 0.6
    restored = pickle.loads(pickle.dumps(sparse))
    assert restored.network_.layout == "sparse"
    assert np.array_equal(restored.predict_proba(X), sparse.predict_proba(X))
    # the initial draws differ by layout (Layout.initial); with the same weights, the same model
    with torch.no_grad():
        net.parameter.copy_(net.storage.from_edge_values(dense.network_.edge_weights()))
    assert np.abs(sparse.predict_proba(X) - dense.predict_proba(X)).max() <= CAPABILITY_TOL
    regressor = MeshRegressor(layout="sparse", **kwargs).partial_fit(X, X[:, 0])
    assert regressor.network_.layout == "sparse" and np.isfinite(regressor.predict(X)).all()
    with pytest.raises(ValueError, match="layout must be one of"):
        MeshClassifier(layout="csr").fit(X, y)


def test_cli_train_evaluate_predict_export_a_sparse_run(tmp_path, capsys):
    ort = pytest.importorskip("onnxruntime")
    pytest.importorskip("onnx")
    out = tmp_path / "run"
    args = ["train", "--dataset", "iris", "--hidden", "6", "--degree", "3", "--ticks", "2"]
    args += ["--epochs", "2", "--layout", "sparse", "--out", str(out)]
    assert main(args) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    net, _ = mp.load_checkpoint(out / "checkpoint")
    assert net.layout == "sparse" and metrics["config"]["layout"] == "sparse"
    capsys.readouterr()
    assert main(["evaluate", str(out / "checkpoint")]) == 0
    shown = capsys.readouterr().out
    assert f"{metrics['test_accuracy']}" in shown
    model = tmp_path / "m.onnx"
    assert main(["export", str(out / "checkpoint"), "--out", str(model), "--dtype", "float32"]) == 0
    assert "float32" in capsys.readouterr().out
    x = torch.randn(5, 4, dtype=torch.float64)
    (y,) = ort.InferenceSession(str(model)).run(None, {"x": x.numpy().astype(np.float32)})
    assert np.abs(y - net(x).detach().numpy()).max() <= 1e-5
    dense = mp.MeshNet(net.topology, ticks=2, output_activation="identity", dtype=torch.float64)
    with torch.no_grad():
        dense.parameter.copy_(dense.storage.from_edge_values(net.edge_weights()))
    assert _gap(dense(x), net(x)) <= CAPABILITY_TOL


def test_fit_of_a_sparse_net_resumes_bit_identically(tmp_path):
    from meshprop.training import TrainingCheckpoint, TrainingInterruptedError

    gen = torch.Generator().manual_seed(7)
    topo = random_topology(gen, 7)
    X = torch.randn(30, topo.n_inputs, generator=gen, dtype=torch.float64)
    y = torch.randint(0, topo.n_outputs, (30,), generator=gen)

    def train(checkpoint=None):
        net = mp.MeshNet(topo, ticks=3, layout="sparse", dtype=torch.float64, seed=1)
        history = mp.fit(net, (X, y), epochs=4, batch_size=8, progress=False, checkpoint=checkpoint)
        return net, history

    reference = train()
    polls = {"n": 0}

    def stop() -> bool:
        polls["n"] += 1
        return polls["n"] == 7

    with pytest.raises(TrainingInterruptedError):
        train(TrainingCheckpoint(tmp_path / "state.pt", resume=True, stop_requested=stop))
    net, history = train(TrainingCheckpoint(tmp_path / "state.pt", resume=True))
    assert torch.equal(net.parameter, reference[0].parameter)
    assert history.records == reference[1].records


def test_sparse_run_preflight_counts_edges_not_n2():
    from meshprop.runs.config import RunConfig
    from meshprop.runs.preflight import check_run, network_size

    config = RunConfig(dataset="digits", hidden=100_000, degree=10, layout="sparse")
    N, P = network_size(config)
    assert N > 100_000 and 10 * N <= P < 11 * N
    with mp.memory_limit("1GiB"):
        need, disk = check_run(config)
    assert need < 2**30 and disk < 2**30
    dense = RunConfig(dataset="digits", hidden=100_000, degree=10)
    with mp.memory_limit("1GiB"), pytest.raises(mp.MemoryLimitError, match="--layout sparse"):
        check_run(dense)


def test_capabilities_at_2e4_neurons_allocate_nothing_n2(tmp_path):
    """A 2·10⁴-neuron sparse mesh under a 96 MiB limit, where the guard refuses N×N (1.6 GB in
    float32): checkpoint, jacobian, export (per-edge products), metrics — all run."""
    topo = mp.Topology.sparse_random(16, 20_000, 4, degree=8, seed=0)
    net = mp.MeshNet(topo, ticks=2, layout="sparse", dtype=torch.float32, seed=0)
    x = torch.randn(3, 16)
    with mp.memory_limit("96MiB"):
        with pytest.raises(mp.MemoryLimitError):
            net.dense_weights()
        y = net(x).detach()
        mp.save_checkpoint(tmp_path / "ckpt", net)
        loaded, _ = mp.load_checkpoint(tmp_path / "ckpt")
        assert loaded.layout == "sparse" and torch.equal(loaded(x), y)
        J = mp.jacobian(net, x[:1])
        assert J.shape == (1, 4, topo.n_edges) and bool(J.abs().sum() > 0)
        module = inference_module(net)
        assert module.products == "edges" and _gap(module(x), y) <= 1e-5
        ort = pytest.importorskip("onnxruntime")
        pytest.importorskip("onnx")
        path = mp.export_onnx(net, tmp_path / "m.onnx")
    (out,) = ort.InferenceSession(str(path)).run(None, {"x": x.numpy()})
    assert np.abs(out - y.numpy()).max() <= 1e-5


# --- approximate online methods


def _sparse_twin(net: mp.MeshNet) -> mp.MeshNet:
    """The sparse-layout copy of a dense ``net`` (same topology, activations, weights)."""
    twin = mp.MeshNet(
        net.topology,
        ticks=net.ticks,
        activation=_names(net),
        dtype=torch.float64,
        layout="sparse",
    )
    with torch.no_grad():
        twin.parameter.copy_(net.edge_weights())
    return twin


@pytest.mark.parametrize("seed", range(3))
@pytest.mark.parametrize(
    ("method", "options"),
    [("snap", {"order": 1}), ("snap", {"order": 2}), ("uoro", {"seed": 7})],
    ids=["snap1", "snap2", "uoro"],
)
def test_approximate_online_methods_agree_across_layouts(seed, method, options):
    """SnAp-k and UORO (same seed: same signs) learn the same on both layouts: losses and the
    gradients handed to the optimizer agree to 1e-10 (float64), weights updated in between."""
    case = sequence_case(950 + seed, length=8)
    runs = []
    for net in (case.net, _sparse_twin(case.net)):
        opt = torch.optim.SGD(net.parameters(), lr=0.02)
        learner = mp.OnlineLearner(net, opt, loss=case.loss, method=method, **options)
        losses, grads = [], []
        for t in range(case.x.shape[0]):
            losses.append(learner.step(case.x[t], case.target[t]))
            grads.append(at_edges(net, learner.last_gradient))
        runs.append((torch.tensor(losses), torch.stack(grads), net.edge_weights()))
    (loss_d, grad_d, w_d), (loss_s, grad_s, w_s) = runs
    assert grad_d.abs().max() > 0, case.description
    assert relative_error(loss_s, loss_d) <= TOL, case.description
    assert relative_error(grad_s, grad_d) <= TOL, case.description
    assert relative_error(w_s, w_d) <= TOL, case.description


@pytest.mark.parametrize(("method", "options"), [("snap", {"order": 1}), ("uoro", {"seed": 0})])
def test_approximate_online_methods_at_2e4_neurons_allocate_nothing_n2(method, options):
    """SnAp-1 and UORO on a 2·10⁴-neuron sparse mesh under a 96 MiB limit (N×N float32 would
    be 1.6 GB): per-edge vectors only."""
    topo = mp.Topology.sparse_random(8, 20_000, 2, degree=4, seed=0)
    net = mp.MeshNet(topo, ticks=2, layout="sparse", dtype=torch.float32, seed=0)
    with mp.memory_limit("96MiB"):
        learner = mp.OnlineLearner(
            net, torch.optim.SGD(net.parameters(), lr=0.0), method=method, **options
        )
        for _ in range(2):
            learner.step(torch.randn(1, 8), torch.zeros(1, 2))
    assert learner.last_gradient is not None and learner.last_gradient.shape == (topo.n_edges,)
