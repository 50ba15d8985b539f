"""Approximate online methods: SnAp-k ("snap") and UORO ("uoro") through mp.OnlineLearner
(float64, small nets)."""

from __future__ import annotations

import copy
import math

import pytest
import torch

import meshprop as mp
from helpers import relative_error
from meshprop.streams import get_stream_method
from meshprop.streams.snap import saturation_order, snap_plan
from test_sequence import TOL, sequence_case


@pytest.fixture(autouse=True)
def one_thread():
    with mp.threads.thread_policy(1):
        yield


def frozen(net: mp.MeshNet) -> torch.optim.Optimizer:
    return torch.optim.SGD(net.parameters(), lr=0.0)


def accumulated(net, x, target, loss="mse", mask=None, **options) -> torch.Tensor:
    """Σ_t (masked share of t) · the learner's gradient at t, weights frozen: the online
    method's estimate of the sequence gradient."""
    L, B = x.shape[:2]
    mask = torch.ones(L, B, dtype=torch.bool) if mask is None else mask
    learner = mp.OnlineLearner(net, frozen(net), loss=loss, **options)
    total = torch.zeros_like(net.parameter)
    for t in range(L):
        learner.step(x[t], target[t], mask[t])
        m = int(mask[t].sum())
        if m:
            assert learner.last_gradient is not None
            total += learner.last_gradient * m / int(mask.sum())
    return total


def self_loop_net(layout: str = "dense") -> mp.MeshNet:
    """Inputs and bias → 3 hidden neurons with self-loops only → 2 outputs (which also read
    each other): every hidden sensitivity stays on its own edge's target."""
    I, H, O = 2, 3, 2
    C = I + 1
    hidden = range(C, C + H)
    outputs = range(C + H, C + H + O)
    edges = [(i, j) for i in range(C) for j in hidden]
    edges += [(j, j) for j in hidden]
    edges += [(j, o) for j in hidden for o in outputs]
    edges += [(o, p) for o in outputs for p in outputs]
    topo = mp.Topology.from_edges(I, H, O, edges, bias=True)
    return mp.MeshNet(topo, ticks=2, activation="tanh", dtype=torch.float64, seed=0, layout=layout)


# --- SnAp-k


def test_snap_1_is_exact_on_a_self_loop_recurrence() -> None:
    net = self_loop_net()
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(12, 3, 2, generator=gen, dtype=torch.float64)
    target = torch.randn(12, 3, 2, generator=gen, dtype=torch.float64)
    _, reference = mp.sequence_gradient(net, x, target, method="fop")
    snap = accumulated(net, x, target, method="snap", order=1)
    assert reference.abs().max() > 0
    assert relative_error(snap, reference) <= TOL


@pytest.mark.parametrize("seed", range(4))
def test_snap_at_the_saturation_order_equals_exact_rtrl(seed: int) -> None:
    """k ≥ saturation_order: nothing is ever dropped, SnAp-k is RTRL (any loss, masks)."""
    case = sequence_case(900 + seed, length=10)
    k = saturation_order(case.net.topology)
    _, reference = mp.sequence_gradient(
        case.net, case.x, case.target, loss=case.loss, method="autograd", mask=case.mask
    )
    for order in (k, k + 1):
        snap = accumulated(
            case.net, case.x, case.target, case.loss, case.mask, method="snap", order=order
        )
        assert relative_error(snap, reference) <= TOL, case.description


def test_snap_below_saturation_drops_entries_but_every_edge_learns() -> None:
    """On a mesh with hidden→hidden edges SnAp-1 is an approximation; keeping the outputs' rows
    in full still gives the edges into hidden neurons a gradient."""
    topo = mp.Topology.random(inputs=2, hidden=6, outputs=2, density=0.4, seed=3)
    assert saturation_order(topo) > 1
    net = mp.MeshNet(topo, ticks=2, activation="tanh", dtype=torch.float64, seed=1)
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(8, 2, 2, generator=gen, dtype=torch.float64)
    target = torch.randn(8, 2, 2, generator=gen, dtype=torch.float64)
    _, reference = mp.sequence_gradient(net, x, target, method="fop")
    snap = net.storage.edge_values(accumulated(net, x, target, method="snap", order=1))
    assert 1e-6 < relative_error(net.storage.edge_values(reference), snap) < 1.0
    F, O = topo.n_free, topo.n_outputs
    into_hidden = topo.edges[:, 1] - topo.n_clamped < F - O
    assert bool((snap[into_hidden] != 0).any())


def test_snap_1_pairs_are_linear_in_the_edges() -> None:
    """SnAp-1 keeps P·(1 + O) pairs at most (the edge's own target and the outputs)."""
    topo = mp.Topology.sparse_random(3, 2_000, 2, degree=4, seed=0)
    plan = snap_plan(topo, 1)
    P, O = topo.n_edges, topo.n_outputs
    assert plan.pairs <= P * (1 + O)
    assert plan.transitions <= P * (2 + 2 * O + O * O)


def test_snap_order_is_validated() -> None:
    net = self_loop_net()
    for bad in (None, 0, -1, 1.5, True, "2"):
        with pytest.raises(ValueError, match="order=k, an integer >= 1"):
            mp.OnlineLearner(net, frozen(net), method="snap", order=bad)  # type: ignore[arg-type]
    for method, extra in (("fop", {}), ("tbptt", {"truncation": 3}), ("uoro", {})):
        with pytest.raises(ValueError, match="order applies to method 'snap' only"):
            mp.OnlineLearner(net, frozen(net), method=method, order=2, **extra)
    with pytest.raises(ValueError, match="seed applies to method 'uoro' only"):
        mp.OnlineLearner(net, frozen(net), method="snap", order=1, seed=0)
    assert {"fop", "snap", "uoro", "tbptt"} <= set(mp.ONLINE_METHODS)


# --- UORO


def test_uoro_is_unbiased() -> None:
    """The mean of 2,000 independent UORO estimates (20 seeds × a batch of 100 copies of one
    stream; the batch's mean gradient is the mean of its copies' estimates) converges to the
    exact gradient: ‖mean − exact‖ stays below 3 standard errors (√(Σ_p var_p / 20) from the
    spread of the 20 seed means; E‖mean − exact‖² is Σ_p var_p / 20, so 3 standard errors fail
    with probability < 1/9 by Markov's bound, far less in practice — and the seeds are fixed).
    One estimate alone is far off: the test also checks that averaging is what brings it in."""
    topo = mp.Topology.random(inputs=2, hidden=4, outputs=1, density=0.4, seed=3)
    net = mp.MeshNet(topo, ticks=2, activation="tanh", dtype=torch.float64, seed=1)
    gen = torch.Generator().manual_seed(0)
    L, copies, seeds = 5, 100, 20
    x1 = torch.randn(L, 1, 2, generator=gen, dtype=torch.float64)
    t1 = torch.randn(L, 1, 1, generator=gen, dtype=torch.float64)
    _, exact = mp.sequence_gradient(net, x1, t1, method="fop")
    x, target = x1.expand(L, copies, 2), t1.expand(L, copies, 1)
    means = []
    for seed in range(seeds):
        learner = mp.OnlineLearner(net, frozen(net), method="uoro", seed=seed, update_every=L)
        for t in range(L):
            learner.step(x[t], target[t])
        assert learner.last_gradient is not None
        means.append(learner.last_gradient)
    estimates = torch.stack(means)
    mean = estimates.mean(dim=0)
    standard_error = float(estimates.std(dim=0).norm()) / math.sqrt(seeds)
    error = float((mean - exact).norm())
    assert error <= 3 * standard_error
    assert error <= 0.1 * float(exact.norm())
    single = mp.OnlineLearner(net, frozen(net), method="uoro", seed=0, update_every=L)
    for t in range(L):
        single.step(x1[t], t1[t])
    assert single.last_gradient is not None
    assert float((single.last_gradient - exact).norm()) > 5 * error


def test_uoro_seed_fixes_the_signs() -> None:
    net = self_loop_net()
    gen = torch.Generator().manual_seed(2)
    x = torch.randn(6, 2, 2, generator=gen, dtype=torch.float64)
    target = torch.randn(6, 2, 2, generator=gen, dtype=torch.float64)
    a = accumulated(net, x, target, method="uoro", seed=5)
    b = accumulated(net, x, target, method="uoro", seed=5)
    c = accumulated(net, x, target, method="uoro", seed=6)
    assert torch.equal(a, b) and not torch.equal(a, c)
    with pytest.raises(ValueError, match="seed=an integer"):
        get_stream_method("uoro", online=True, seed=1.5)


# --- resume


@pytest.mark.parametrize(("method", "options"), [("snap", {"order": 2}), ("uoro", {"seed": 3})])
def test_state_dict_continues_the_stream_exactly(method: str, options: dict) -> None:
    topo = mp.Topology.random(inputs=2, hidden=5, outputs=2, density=0.4, seed=4)
    gen = torch.Generator().manual_seed(3)
    x = torch.randn(10, 2, 2, generator=gen, dtype=torch.float64)
    target = torch.randn(10, 2, 2, generator=gen, dtype=torch.float64)

    def learner_for(net):
        opt = torch.optim.SGD(net.parameters(), lr=0.05)
        return mp.OnlineLearner(net, opt, method=method, update_every=2, **options), opt

    net = mp.MeshNet(topo, ticks=2, activation="tanh", dtype=torch.float64, seed=2)
    learner, opt = learner_for(net)
    for t in range(5):
        learner.step(x[t], target[t])
    saved = copy.deepcopy((learner.state_dict(), net.state_dict(), opt.state_dict()))
    losses = [learner.step(x[t], target[t]) for t in range(5, 10)]

    other = mp.MeshNet(topo, ticks=2, activation="tanh", dtype=torch.float64, seed=9)
    resumed, other_opt = learner_for(other)
    other.load_state_dict(saved[1])
    other_opt.load_state_dict(saved[2])
    resumed.load_state_dict(saved[0])
    assert [resumed.step(x[t], target[t]) for t in range(5, 10)] == losses
    assert torch.equal(other.parameter, net.parameter)


# --- benchmark rows


def test_bench_rows_per_online_method() -> None:
    from meshprop.bench.online_methods import METHODS, compare_methods

    rows = compare_methods(hidden=(6,), length=12, degree=3)
    assert [r["method"] for r in rows] == [name for name, _, _ in METHODS]
    assert rows[0]["method"] == "fop" and abs(rows[0]["cosine"] - 1.0) <= 1e-12
    for r in rows:
        assert -1.0 <= r["cosine"] <= 1.0 + 1e-12
        assert r["ticks_per_second"] > 0 and r["inference_ticks_per_second"] > 0


# --- the online grid (meshprop bench --workload online)


def test_grid_refuses_out_loud_instead_of_dropping_a_cell() -> None:
    """A cell exact fop could not afford in time, or any method above the memory limit, is a
    row with its reason, and the table shows it; nothing is started for it."""
    from meshprop.bench.online_grid import grid, grid_table

    slow = grid(hidden=(20,), topologies=("sparse-16",), layouts=("sparse",), methods=("fop",),
                max_tick_s=1e-12)  # fmt: skip
    assert len(slow) == 1 and slow[0]["note"].startswith("too slow: est. ")
    assert "ticks_per_second" not in slow[0]
    with mp.memory_limit(300):  # the sparse mesh fits, neither method's carry does
        refused = grid(hidden=(4,), topologies=("self-loops",), layouts=("sparse",),
                       methods=("snap-1", "uoro"))  # fmt: skip
    with mp.memory_limit(16):  # nor the dense layout's N×N weights
        unbuilt = grid(hidden=(4,), topologies=("self-loops",), layouts=("dense",),
                       methods=("fop",))  # fmt: skip
    for r in [*refused, *unbuilt]:
        assert r["note"].startswith("refused: would need ") and "> limit" in r["note"], r
    assert "dense layout" in unbuilt[0]["note"]
    table = grid_table(slow + refused)
    assert table.count("\n") == 4 and "too slow" in table and "refused" in table


@pytest.mark.subprocess
def test_grid_cell_measures_learning_beside_inference() -> None:
    from meshprop.bench.online_grid import grid

    rows = grid(hidden=(64,), topologies=("self-loops",), layouts=("sparse",), methods=("fop",),
                budget_s=0.2, rounds=1, cosine_length=6)  # fmt: skip
    assert len(rows) == 1
    r = rows[0]
    assert r["note"] == "", r["note"]
    assert r["representation"] == "pattern"  # a self-loop recurrence
    assert r["ticks_per_second"] > 0 and r["inference_ticks_per_second"] > 0
    assert r["slowdown"] == pytest.approx(r["inference_ticks_per_second"] / r["ticks_per_second"])
    assert r["peak_bytes"] >= 0 and r["peak_growth_bytes"] >= 0
    assert abs(r["cosine"] - 1.0) <= 1e-9  # exact
