"""The sparse step's fast paths: both branches of the sparse FOP's tick plan, the contraction of
tick T, tick 1's transposed product over the input edges, the cost model's fop/bptt choice and
the allocator setting — each exact against autograd in float64 where it computes a gradient."""

from __future__ import annotations

import resource
import sys

import pytest
import torch

import meshprop as mp
from meshprop.allocator import keep_freed_memory
from meshprop.engines.auto import predict_seconds
from meshprop.engines.fop_sparse import _carry_plan, _plan, sparse_fop_row_operations
from meshprop.engines.registry import get_engine
from meshprop.engines.sparse_layout import SparseAuto, bptt_row_operations

F64 = torch.float64


def _edge_gradients(topo: mp.Topology, ticks: int, method: str, seq: bool = False):
    net = mp.MeshNet(topo, ticks=ticks, activation="tanh", dtype=F64, seed=0, layout="sparse")
    g = torch.Generator().manual_seed(1)
    shape = (ticks, 5, topo.n_inputs) if seq else (5, topo.n_inputs)
    x = torch.randn(*shape, generator=g, dtype=F64)
    target = torch.randint(0, topo.n_outputs, (5,), generator=g)
    _, dw = mp.gradient(net, x, target, loss="cross_entropy", method=method)
    _, ref = mp.gradient(net, x, target, loss="cross_entropy", method="autograd")
    return dw, ref


@pytest.mark.parametrize("ticks", [1, 2, 3, 4])
def test_sparse_fop_both_plan_paths_equal_autograd(ticks):
    wired = mp.Topology.sparse_random(6, 40, 3, degree=4, seed=0)  # ≤ 1 transition per pair
    full = mp.Topology.mesh(3, 5, 2)  # many transitions into one pair
    paths = set()
    for topo in (wired, full):
        for seq in (False, True):
            dw, ref = _edge_gradients(topo, ticks, "fop", seq)
            assert torch.allclose(dw, ref, rtol=0, atol=1e-10 * ref.abs().max().item())
        paths |= {t.gather is not None for t in _carry_plan(topo, ticks)[1:]}
    if ticks >= 3:
        assert paths == {True, False}  # both branches of _advance ran


def test_sparse_fop_carry_plan_is_the_full_plan_without_its_last_tick():
    topo = mp.Topology.sparse_random(6, 40, 3, degree=4, seed=2)
    full, carried = _plan(topo, 3), _carry_plan(topo, 3)
    assert len(carried) == 2
    for a, b in zip(full, carried, strict=False):
        assert torch.equal(a.edge, b.edge) and torch.equal(a.col, b.col)


@pytest.mark.parametrize("layout", ["dense", "sparse"])
def test_input_gradient_of_sparse_bptt_under_torch_func_equals_backward(layout):
    """Tick 1's transposed product runs over the input edges only: still every dE/dx."""
    topo = mp.Topology.random(3, 8, 2, density=0.4, seed=1)
    net = mp.MeshNet(topo, ticks=3, layout=layout, dtype=F64, seed=0, grad="bptt")
    x = torch.randn(4, 3, dtype=F64)

    def f(inputs):
        return net(inputs).square().sum()

    x_leaf = x.clone().requires_grad_(True)
    f(x_leaf).backward()
    assert x_leaf.grad is not None and x_leaf.grad.abs().max() > 0
    torch.testing.assert_close(torch.func.grad(f)(x), x_leaf.grad, rtol=0, atol=1e-12)
    reference = mp.MeshNet(topo, ticks=3, layout=layout, dtype=F64, grad="autograd")
    reference.load_state_dict(net.state_dict())
    x_ref = x.clone().requires_grad_(True)
    reference(x_ref).square().sum().backward()
    torch.testing.assert_close(x_leaf.grad, x_ref.grad, rtol=0, atol=1e-12)


def test_auto_between_fop_and_bptt_follows_the_cost_model():
    wired = mp.Topology.sparse_random(16, 300, 4, degree=6, seed=0)
    for ticks in (1, 2, 3, 4):
        dyn = mp.MeshNet(wired, ticks=ticks, layout="sparse").dynamics
        auto = SparseAuto(("fop", "bptt"))
        costs = {}
        for name in ("fop", "bptt"):
            engine = get_engine(name, "sparse")
            costs[name] = predict_seconds(
                engine.estimate_flops(dyn, 32), engine.estimate_bytes(dyn, 32, 4)
            )
        assert auto.choose(dyn, 32, 4) == min(costs, key=costs.__getitem__)
    # on a wired mesh the FOP carries more rows than bptt moves from T = 2 on
    dyn = mp.MeshNet(wired, ticks=3, layout="sparse").dynamics
    assert sparse_fop_row_operations(dyn) > bptt_row_operations(dyn)
    assert SparseAuto(("fop", "bptt")).choose(dyn, 32, 4) == "bptt"


def test_row_operation_counts_match_the_plan_on_a_wired_mesh():
    """T = 2 on a wired mesh: tick 1 carries one pair per edge into a hidden neuron."""
    topo = mp.Topology.sparse_random(6, 40, 3, degree=4, seed=0)
    dyn = mp.MeshNet(topo, ticks=2, layout="sparse").dynamics
    (tick,) = _carry_plan(topo, 2)
    into_outputs = int((topo.edges[:, 1] >= topo.n_neurons - topo.n_outputs).sum())
    into_hidden = topo.n_edges - into_outputs
    assert len(tick.edge) == into_hidden
    # forward (all edges into R_1 and R_2), injections, contraction gather + dot, tick 2's
    # gradient and transposed product
    expected = into_hidden + into_outputs + into_hidden + 2 * into_hidden + 2 * into_outputs
    assert sparse_fop_row_operations(dyn) == expected


def test_keep_freed_memory_keeps_a_training_loop_free_of_page_faults(monkeypatch):
    """A loop whose steps allocate blocks above glibc's mmap threshold: once the heap has
    settled, a step faults no page in (each would fault 20 000 pages in afresh otherwise)."""
    monkeypatch.delenv("MESHPROP_KEEP_FREED_MEMORY", raising=False)
    applied = keep_freed_memory()
    if not sys.platform.startswith("linux"):  # pragma: no cover
        assert applied is False  # no glibc mallopt: nothing changed
        return
    assert applied is True
    pages = 2 * (40 << 20) // 4096

    def step() -> int:
        before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
        a = torch.empty(40 << 20, dtype=torch.uint8).fill_(1)
        b = torch.empty(40 << 20, dtype=torch.uint8).fill_(2)
        assert int((a[:4096] + b[:4096])[0]) == 3
        del a, b
        return resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before

    for _ in range(8):  # the heap settles
        step()
    assert sum(step() for _ in range(4)) < 4 * pages // 20
    assert keep_freed_memory() is True  # idempotent


def test_keep_freed_memory_can_be_turned_off_by_the_environment(monkeypatch):
    from meshprop import allocator

    monkeypatch.setenv(allocator.ENVIRONMENT_VARIABLE, "0")
    assert allocator._apply() is False
