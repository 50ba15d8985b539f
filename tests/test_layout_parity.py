"""Layout parity: the dense layout (N×N ``A``) and the sparse layout (one weight per edge) mean
the same thing everywhere — each section below checks one part of the package on both."""

from __future__ import annotations

from typing import Any

import pytest
import torch

import meshprop as mp
from meshprop.memory import MemoryLimitError
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
        mp.set_memory_limit(None)


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
