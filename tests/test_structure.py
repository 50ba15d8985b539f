"""Structural learning (meshprop.structure): updates keep weights inside the mask, hold the
density at its target, move the optimiser state with the edges, leave the gradient exact on the
new topology, and a seeded run repeats exactly."""

from __future__ import annotations

import math

import pytest
import torch

import meshprop as mp
from meshprop.structure import (
    SET,
    EdgeChange,
    MagnitudePruning,
    RigL,
    StructuralLearning,
    UpdateContext,
    UpdateSchedule,
    apply_change,
    dense_gradient,
    density,
    pruning_density,
)
from meshprop.structure.edges import allowed_count, edge_count

F64 = torch.float64


def _data(n: int = 48, inputs: int = 4, classes: int = 3, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    X = torch.randn(n, inputs, generator=g, dtype=F64)
    y = torch.randint(0, classes, (n,), generator=g)
    return X, y


def _net(d: float = 0.3, grad: str = "fop", seed: int = 0, hidden: int = 6) -> mp.MeshNet:
    topo = mp.Topology.random(4, hidden, 3, density=d, seed=seed)
    return mp.MeshNet(topo, ticks=3, grad=grad, dtype=F64, seed=seed)


def _outside(net: mp.MeshNet) -> float:
    return float((net.A.detach() * ~net.topology.mask).abs().max())


class Checker:
    """Wraps a StructuralLearning; after every step records what the tests assert on."""

    def __init__(self, structure: StructuralLearning) -> None:
        self.structure = structure
        self.outside: list[float] = []
        self.edges: list[tuple[int, int]] = []  # (step, n_edges) after each update

    def __call__(self, step, net, optimizer, x, target) -> None:
        self.structure(step, net, optimizer, x, target)
        self.outside.append(_outside(net))
        if self.structure.schedule.is_update(step):
            self.edges.append((step, net.topology.n_edges))


@pytest.mark.parametrize("rule", ["set", "rigl", "magnitude"])
@pytest.mark.parametrize("optimizer", ["adam", "sgd", "adagrad"])
def test_no_weight_outside_the_mask_and_density_on_target(rule: str, optimizer: str) -> None:
    X, y = _data()
    start = 1.0 if rule == "magnitude" else 0.3
    net = _net(start)
    schedule = UpdateSchedule(update_every=2, drop_fraction=0.4, end_step=20)
    rule_obj = MagnitudePruning(0.2, 1.0) if rule == "magnitude" else rule
    check = Checker(StructuralLearning(rule_obj, schedule, seed=1))
    momentum = 0.9 if optimizer == "sgd" else 0.0
    mp.fit(
        net,
        (X, y),
        epochs=4,
        batch_size=8,
        optimizer=optimizer,
        momentum=momentum,
        lr=0.05,
        progress=False,
        after_step=check,
    )
    assert len(check.outside) == 24
    assert max(check.outside) == 0.0  # exactly: moments of removed edges were reset too
    log = check.structure.log
    assert [r["step"] for r in log] == list(range(2, 21, 2))
    assert sum(r["added"] + r["removed"] for r in log) > 0
    for step, n_edges in check.edges:
        if rule == "magnitude":
            target = pruning_density(step, 1.0, 0.2, 20)
            assert n_edges == edge_count(target, net.topology)
        else:
            assert n_edges == edge_count(0.3, net.topology)
    assert net.topology.n_edges == edge_count(0.3 if rule != "magnitude" else 0.2, net.topology)
    assert density(net.topology) == pytest.approx(
        net.topology.n_edges / allowed_count(net.topology)
    )


def test_update_count_follows_the_schedule_and_cosine_decay() -> None:
    s = UpdateSchedule(update_every=3, drop_fraction=0.3, end_step=12)
    assert [t for t in range(1, 20) if s.is_update(t)] == [3, 6, 9, 12]
    assert s.fraction(0) == pytest.approx(0.3, abs=1e-15)
    assert s.fraction(6) == pytest.approx(0.15, abs=1e-15)
    assert s.fraction(12) == pytest.approx(0.0, abs=1e-15)
    assert s.fraction(4) == pytest.approx(0.15 * (1 + math.cos(math.pi / 3)), abs=1e-15)
    assert UpdateSchedule(5, 0.2).fraction(1000) == 0.2
    assert pruning_density(0, 1.0, 0.1, 10) == 1.0
    assert pruning_density(5, 1.0, 0.1, 10) == pytest.approx(0.1 + 0.9 * 0.125, abs=1e-15)
    assert pruning_density(12, 1.0, 0.1, 10) == 0.1


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"update_every": 0}, "update_every must be >= 1"),
        ({"drop_fraction": 1.0}, "drop_fraction must be in"),
        ({"end_step": 0}, "end_step must be >= 1"),
    ],
)
def test_bad_schedule_is_an_error(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        UpdateSchedule(**kwargs)


def test_bad_rule_and_model_are_errors() -> None:
    with pytest.raises(ValueError, match="unknown structure rule 'prune'"):
        StructuralLearning("prune")
    with pytest.raises(ValueError, match="magnitude pruning needs its target density"):
        StructuralLearning("magnitude")
    with pytest.raises(ValueError, match="lowers the density"):
        MagnitudePruning(0.5, initial_density=0.2)
    X, y = _data()
    s = StructuralLearning("set", UpdateSchedule(1, 0.3))
    model = torch.nn.Linear(4, 3).double()
    with pytest.raises(TypeError, match="changes a MeshNet's topology"):
        mp.fit(model, (X, y), epochs=1, progress=False, after_step=s)


def _adam_state_after_steps(net: mp.MeshNet, steps: int = 3) -> torch.optim.Adam:
    X, y = _data()
    opt = torch.optim.Adam([net.A], lr=0.01)
    for _ in range(steps):
        opt.zero_grad()
        torch.nn.functional.cross_entropy(net(X), y).backward()
        opt.step()
    return opt


def test_optimizer_state_follows_the_edges() -> None:
    net = _net(0.4)
    opt = _adam_state_after_steps(net)
    before = {k: v.clone() for k, v in opt.state[net.A].items()}
    A_before = net.A.detach().clone()
    old = net.topology
    X, y = _data()
    context = UpdateContext(
        net, 4, UpdateSchedule(4, 0.3), X, y, "cross_entropy", torch.Generator()
    )
    change = RigL().propose(context)
    assert len(change.add) == len(change.remove) == round(0.3 * old.n_edges)
    param = net.A
    new = apply_change(net, opt, change)
    assert net.topology == new == old.with_edges(add=change.add, remove=change.remove)
    assert net.A is param and opt.param_groups[0]["params"][0] is net.A
    state = opt.state[net.A]
    assert state["step"] == before["step"]
    kept = old.dense_mask() & new.dense_mask()
    for key in ("exp_avg", "exp_avg_sq"):
        assert torch.equal(state[key][kept], before[key][kept])
        assert bool((before[key][kept] != 0).any())
        for edges in (change.add, change.remove):
            assert torch.all(state[key][edges[:, 0], edges[:, 1]] == 0)
        removed = before[key][change.remove[:, 0], change.remove[:, 1]]
        assert bool((removed != 0).any())  # there was state to reset
    assert torch.equal(net.A.detach()[kept], A_before[kept])
    assert torch.all(net.A.detach()[change.add[:, 0], change.add[:, 1]] == 0)
    assert _outside(net) == 0.0


def test_adagrad_state_resets_to_its_initial_accumulator() -> None:
    net = _net(0.4)
    opt = torch.optim.Adagrad([net.A], lr=0.1, initial_accumulator_value=0.25)
    X, y = _data()
    opt.zero_grad()
    torch.nn.functional.cross_entropy(net(X), y).backward()
    opt.step()
    removed = net.topology.edges[:3]
    grown = next(
        (i, j) for i, j in net.topology.allowed_mask().nonzero().tolist()
        if not bool(net.topology.mask[i, j])
    )  # fmt: skip
    change = EdgeChange(torch.tensor([grown]), removed)
    apply_change(net, opt, change)
    assert float(opt.state[net.A]["sum"][grown]) == 0.25  # a new edge starts at the initial
    assert torch.all(opt.state[net.A]["sum"][removed[:, 0], removed[:, 1]] == 0)  # gone: 0
    other = torch.optim.SGD([torch.nn.Parameter(torch.zeros(2))], lr=0.1)
    with pytest.raises(ValueError, match="does not hold this network's weights"):
        apply_change(net, other, EdgeChange(removed, torch.zeros(0, 2, dtype=torch.long)))


@pytest.mark.parametrize("engine", ["fop", "bptt", "fop_factored"])
def test_gradient_after_an_update_equals_autograd(engine: str) -> None:
    X, y = _data()
    net = _net(0.3, grad=engine)
    structure = StructuralLearning("rigl", UpdateSchedule(3, 0.5), seed=0)
    mp.fit(net, (X, y), epochs=1, batch_size=16, progress=False, after_step=structure)
    assert structure.log[0]["added"] > 0
    # the net's own engine through loss.backward() on the new topology ...
    net.A.grad = None
    torch.nn.functional.cross_entropy(net(X), y).backward()
    reference = net.with_topology(net.topology)
    reference.grad = "autograd"
    with torch.no_grad():
        reference.A.copy_(net.A)
    torch.nn.functional.cross_entropy(reference(X), y).backward()
    torch.testing.assert_close(net.A.grad, reference.A.grad, rtol=0, atol=1e-10)
    assert float(reference.A.grad.abs().sum()) > 0
    # ... and mp.gradient by the engine
    _, dA = mp.gradient(net, X, y, method=engine)
    torch.testing.assert_close(dA, reference.A.grad, rtol=0, atol=1e-10)


def test_rigl_dense_gradient_is_exact_and_grows_its_largest_entries() -> None:
    X, y = _data()
    net = _net(0.3)
    _adam_state_after_steps(net)
    dA = dense_gradient(net, X, y, "cross_entropy")
    # independent: autograd through the dynamics with a dense A (zeros on absent edges)
    A = net.A.detach().clone().requires_grad_(True)
    dense = mp.MeshNet(mp.Topology.mesh(4, 6, 3), ticks=3, grad="autograd", dtype=F64)
    with torch.no_grad():
        dense.A.copy_(A)
    torch.nn.functional.cross_entropy(dense(X), y).backward()
    torch.testing.assert_close(dA, dense.A.grad, rtol=0, atol=1e-10)
    absent = net.topology.allowed_mask() & ~net.topology.mask
    assert float(dA[absent].abs().max()) > 0  # gradient where no edge exists yet
    _, sparse = mp.gradient(net, X, y, method="autograd")
    torch.testing.assert_close(dA * net.topology.mask, sparse, rtol=0, atol=1e-10)
    # RigL grows the k absent edges (not just removed) of largest |dE/dA|
    schedule = UpdateSchedule(1, 0.25)
    change = RigL().propose(
        UpdateContext(net, 1, schedule, X, y, "cross_entropy", torch.Generator())
    )
    free = absent.clone()
    free[change.remove[:, 0], change.remove[:, 1]] = False
    grown = dA.abs()[change.add[:, 0], change.add[:, 1]]
    assert float(grown.min()) >= float(dA.abs()[free].sort(descending=True).values[len(grown) - 1])
    # the removed edges are the smallest |A|
    present = net.A.detach().abs()[net.topology.mask]
    removed = net.A.detach().abs()[change.remove[:, 0], change.remove[:, 1]]
    assert float(removed.max()) <= float(present.sort().values[len(removed) - 1])


def test_set_grows_absent_allowed_edges_only() -> None:
    X, y = _data()
    net = _net(0.3)
    old = net.topology
    change = SET().propose(
        UpdateContext(
            net, 1, UpdateSchedule(1, 0.5), X, y, "cross_entropy", torch.Generator().manual_seed(0)
        )
    )
    added = {tuple(e) for e in change.add.tolist()}
    removed = {tuple(e) for e in change.remove.tolist()}
    assert len(added) == len(removed) == round(0.5 * old.n_edges)
    assert not added & removed
    assert not added & set(old.edge_list())
    assert removed <= set(old.edge_list())
    allowed = old.allowed_mask()
    assert all(bool(allowed[i, j]) for i, j in added)


def test_no_change_is_a_valid_update() -> None:
    net = _net(1.0)
    X, y = _data()
    change = SET().propose(
        UpdateContext(net, 1, UpdateSchedule(1, 0.5), X, y, "cross_entropy", torch.Generator())
    )
    assert len(change.add) == len(change.remove) == 0  # a full mesh has nowhere to grow
    assert len(EdgeChange.none().add) == 0


@pytest.mark.parametrize("rule", ["set", "rigl"])
def test_a_seeded_run_is_reproducible(rule: str) -> None:
    X, y = _data()

    def run(seed: int):
        net = _net(0.3, seed=0)
        s = StructuralLearning(rule, UpdateSchedule(2, 0.3, end_step=12), seed=seed)
        mp.fit(net, (X, y), epochs=3, batch_size=8, seed=0, progress=False, after_step=s)
        return net, s.log

    (a, log_a), (b, log_b) = run(0), run(0)
    assert a.topology == b.topology and log_a == log_b
    assert torch.equal(a.A.detach(), b.A.detach())
    if rule == "set":
        c, _ = run(1)
        assert c.topology != a.topology  # the seed does drive SET's regrowth
