"""The sparse layout: builders that never allocate N×N, sparse engines equal to the
dense ones, the sparse FOP, auto's cached choice, the dense layout's refusal at 10⁵ neurons."""

from __future__ import annotations

import pytest
import torch

import meshprop as mp
import meshprop.memory as memory
from helpers import random_case, relative_error
from meshprop.bench.scale import peak_tensor_bytes as torch_peak_bytes
from meshprop.engines import GRADIENT_METHODS, get_engine
from meshprop.engines import auto as auto_module
from meshprop.engines.auto import AutoEngine
from meshprop.engines.fop_sparse import FOP_SPARSE, _plan, pair_counts
from meshprop.engines.reach import needed_columns
from meshprop.topology import RANDOM_DENSE_LIMIT, _sample_without_replacement

SPARSE_METHODS = sorted(GRADIENT_METHODS)


def old_random(inputs, hidden, outputs, density, bias, seed, output_feedback):
    """Topology.random as it was before the O(P) path (the mask and randperm over it)."""
    full = mp.Topology.mesh(inputs, hidden, outputs, bias, output_feedback)
    candidates = full.mask.nonzero()
    keep = max(1, round(density * len(candidates)))
    generator = torch.Generator().manual_seed(0 if seed is None else int(seed))
    chosen = candidates[torch.randperm(len(candidates), generator=generator)[:keep]]
    mask = torch.zeros_like(full.mask)
    mask[chosen[:, 0], chosen[:, 1]] = True
    return mp.Topology(inputs, hidden, outputs, bias, mask)


@pytest.mark.parametrize(
    "sizes",
    [
        (32, 50, 10, 0.85, True, 0, False),  # the paper workload
        (32, 50, 10, 0.15, True, 0, False),  # the published configuration
        (4, 12, 3, 0.6, False, 7, True),
        (64, 300, 10, 0.25, True, None, True),
        (256, 1700, 16, 0.01, True, 3, True),  # 3.9·10⁶ allowed edges: just below the limit
    ],
)
def test_random_keeps_todays_draws_below_the_threshold(sizes):
    inputs, hidden, outputs, density, bias, seed, feedback = sizes
    new = mp.Topology.random(inputs, hidden, outputs, density, bias, seed, feedback)
    old = old_random(inputs, hidden, outputs, density, bias, seed, feedback)
    assert torch.equal(new.edges, old.edges)
    assert new == old


def test_sampling_without_replacement_is_exact_and_uniform():
    g = torch.Generator().manual_seed(0)
    drawn = _sample_without_replacement(10**12, 5000, g)
    assert len(drawn) == 5000 and len(torch.unique(drawn)) == 5000
    assert int(drawn.min()) >= 0 and int(drawn.max()) < 10**12
    # uniformity on a small range: each of 20 values kept with probability 7/20
    counts = torch.zeros(20)
    for _ in range(2000):
        counts[_sample_without_replacement(20, 7, g)] += 1
    expected = 2000 * 7 / 20  # binomial std ≈ 21: 6 std is a failure, not noise
    assert float((counts - expected).abs().max()) < 6 * (2000 * 0.35 * 0.65) ** 0.5


def test_large_random_topology_is_valid_and_deterministic():
    args = (64, 5000, 10)
    density = 8 / 5010
    assert RANDOM_DENSE_LIMIT < (65 + 5010) * 5010  # takes the O(P) path
    a = mp.Topology.random(*args, density=density, seed=1)
    b = mp.Topology.random(*args, density=density, seed=1)
    c = mp.Topology.random(*args, density=density, seed=2)
    assert a == b and a != c
    assert a.n_edges == round(density * a.n_neurons * a.n_free)
    edges = a.edges
    assert int(edges[:, 1].min()) >= a.n_clamped  # nothing enters a clamped neuron
    assert len(torch.unique(edges[:, 0] * a.n_neurons + edges[:, 1])) == a.n_edges


def test_builders_and_sparse_net_at_1e5_neurons_allocate_no_n2():
    N2 = 10**10  # one N×N boolean mask at 10⁵ neurons; its float32 A would be 4·10¹⁰ bytes

    def build():
        topo = mp.Topology.random(64, 100_000 - 75, 10, density=1 / 99_935, seed=0)
        hash(topo)
        assert topo.n_edges >= 10**5
        needed_columns(topo, 3)
        net = mp.MeshNet(topo, ticks=3, layout="sparse", grad="fop")
        x = torch.randn(4, 64)
        mp.gradient(net, x, torch.randint(0, 10, (4,)), method="bptt")
        mp.gradient(net, x, torch.randint(0, 10, (4,)), method="fop")
        edges = topo.edges
        mp.Topology.from_edges(64, 100_000 - 75, 10, edges[: len(edges) // 2])

    peak = torch_peak_bytes(build)
    assert peak < 2 * 10**8  # O(P) structures only: 1/50 of one N×N boolean mask
    assert peak < N2 / 50


def test_dense_layout_refuses_1e5_neurons_with_the_guards_error():
    topo = mp.Topology.random(64, 100_000 - 75, 10, density=1 / 99_935, seed=0)
    with mp.memory_limit("8GiB"), pytest.raises(mp.MemoryLimitError, match="layout='sparse'"):
        mp.MeshNet(topo, ticks=2)
    net = mp.MeshNet(topo, ticks=2, layout="sparse")
    with pytest.raises(AttributeError, match=r"net\.weight"):
        net.A  # noqa: B018
    with mp.memory_limit("8GiB"), pytest.raises(mp.MemoryLimitError, match="dense layout"):
        net.dense_weights()


def sparse_copy(net: mp.MeshNet) -> mp.MeshNet:
    sparse = mp.MeshNet(
        net.topology,
        ticks=net.ticks,
        activation=net.activation,
        output_activation=net.output_activation,
        dtype=net.A.dtype,
        layout="sparse",
    )
    src, dst = net.topology.edges.unbind(1)
    with torch.no_grad():
        sparse.weight.copy_(net.A[src, dst])
    return sparse


@pytest.mark.parametrize("method", SPARSE_METHODS)
def test_sparse_engines_equal_dense_autograd_per_edge(method):
    for seed in range(12):
        case = random_case(seed)
        sparse = sparse_copy(case.net)
        src, dst = case.net.topology.edges.unbind(1)
        loss_d, dA = mp.gradient(case.net, case.x, case.target, case.loss, method="autograd")
        loss_s, dw = mp.gradient(sparse, case.x, case.target, case.loss, method=method)
        assert dw.shape == (case.net.topology.n_edges,)
        assert abs(float(loss_s) - float(loss_d)) <= 1e-12 * max(1.0, abs(float(loss_d)))
        assert relative_error(dw, dA[src, dst]) < 1e-10, case.description
        assert relative_error(sparse(case.x), case.net(case.x)) < 1e-12, case.description


@pytest.mark.parametrize("method", ["bptt", "autograd", "fop", "auto"])
def test_sparse_backward_fills_weight_grad_and_input_grad(method):
    for seed in range(8):
        case = random_case(100 + seed)
        sparse = sparse_copy(case.net)
        sparse.grad = method
        case.net.grad = "autograd"
        x_d = case.x.clone().requires_grad_(True)
        y_d = case.net(x_d)
        (y_d.square().sum()).backward()
        x_s = case.x.clone().requires_grad_(get_engine(method, "sparse").provides_input_grad)
        sparse(x_s).square().sum().backward()
        src, dst = case.net.topology.edges.unbind(1)
        assert relative_error(sparse.weight.grad, case.net.A.grad[src, dst]) < 1e-10
        if x_s.requires_grad:
            assert relative_error(x_s.grad, x_d.grad) < 1e-10


def test_sparse_fop_on_a_large_sparse_mesh_equals_sparse_bptt_and_dense_autograd():
    topo = mp.Topology.random(16, 400, 6, density=3 / 406, seed=4)
    names = ["tanh", "relu", "sigmoid"] * (topo.n_neurons // 3 + 1)
    for ticks in (2, 3, 4):
        net = mp.MeshNet(topo, ticks=ticks, activation=names[: topo.n_neurons], dtype=torch.float64)
        sparse = sparse_copy(net)
        x = torch.randn(5, 16, dtype=torch.float64)
        target = torch.randint(0, 6, (5,))
        _, dA = mp.gradient(net, x, target, method="autograd")
        src, dst = topo.edges.unbind(1)
        for method in ("fop", "bptt"):
            _, dw = mp.gradient(sparse, x, target, method=method)
            assert relative_error(dw, dA[src, dst]) < 1e-10
        # the pairs carried are far fewer than fop's P·F
        K, _ = pair_counts(topo, ticks)
        exact = [len(t.edge) for t in _plan(topo, ticks)]
        assert all(e <= k for e, k in zip(exact, K, strict=True))  # the model bounds them
        assert max(exact) < topo.n_edges * topo.n_free / 20


def test_fop_sparse_on_the_dense_layout_equals_autograd():
    for seed in range(12):
        case = random_case(200 + seed)
        _, ref = mp.gradient(case.net, case.x, case.target, case.loss, method="autograd")
        value = FOP_SPARSE.forward(case.net.dynamics, case.net.A.detach(), case.x)
        _, g = mp.losses.loss_and_grad(case.loss, value[0], case.target)
        dA, _ = FOP_SPARSE.backward(case.net.dynamics, case.net.A, case.x, value[1], g)
        assert relative_error(dA, ref) < 1e-10, case.description


def test_auto_caches_its_choice_and_reads_no_meminfo_after_the_first_step(monkeypatch):
    topo = mp.Topology.random(8, 30, 3, density=0.5, seed=0)
    net = mp.MeshNet(topo, ticks=3, grad="auto", dtype=torch.float64)
    x, target = torch.randn(4, 8, dtype=torch.float64), torch.randint(0, 3, (4,))
    auto = AutoEngine()
    calls = []
    original = auto._choose
    monkeypatch.setattr(auto, "_choose", lambda *a: calls.append(1) or original(*a))
    mp.gradient(net, x, target, method=auto)
    first = auto.last_choice

    def no_meminfo():
        raise AssertionError("auto read /proc/meminfo again")

    monkeypatch.setattr(memory, "available_bytes", no_meminfo)
    monkeypatch.setattr(auto_module, "get_memory_limit", no_meminfo)
    for _ in range(3):
        auto.forward(net.dynamics, net.A.detach(), x)
    assert len(calls) == 1 and auto.last_choice is first
    monkeypatch.setattr(auto_module, "get_memory_limit", memory.get_memory_limit)
    with mp.memory_limit("1GiB"):  # a different limit setting is a different key
        auto.forward(net.dynamics, net.A.detach(), x)
    assert len(calls) == 2


def test_auto_picks_the_sparse_fop_on_a_large_sparse_mesh_and_fop_factored_on_the_paper():
    sparse_topo = mp.Topology.random(16, 3000, 6, density=3 / 3006, seed=0)
    dyn = mp.MeshNet(sparse_topo, ticks=3, layout="sparse").dynamics
    assert AutoEngine().choose(dyn, 32, 4).engine == "fop_sparse"
    paper = mp.Topology.random(32, 50, 10, density=0.85, seed=0, output_feedback=False)
    dyn = mp.MeshNet(paper, ticks=3).dynamics
    assert AutoEngine().choose(dyn, 32, 4).engine == "fop_factored"


def test_with_topology_keeps_shared_edge_weights_in_the_sparse_layout():
    topo = mp.Topology.random(4, 10, 3, density=0.4, seed=1)
    net = mp.MeshNet(topo, ticks=2, layout="sparse", dtype=torch.float64, seed=0)
    drop = topo.edge_list()[:3]
    new_topo = topo.with_edges(
        add=[(0, topo.n_clamped)] if (0, topo.n_clamped) not in topo.edge_list() else [],
        remove=drop,
    )
    new = net.with_topology(new_topo)
    old_w = dict(zip(topo.edge_list(), net.weight.tolist(), strict=True))
    for edge, w in zip(new_topo.edge_list(), new.weight.tolist(), strict=True):
        assert w == old_w.get(edge, 0.0)


def test_sparse_layout_errors_name_what_was_wrong():
    topo = mp.Topology.random(3, 5, 2, density=0.5, seed=0)
    with pytest.raises(ValueError, match="layout must be one of"):
        mp.MeshNet(topo, layout="csr")
    with pytest.raises(ValueError, match="unknown gradient method"):
        mp.MeshNet(topo, layout="sparse", grad="nope")
