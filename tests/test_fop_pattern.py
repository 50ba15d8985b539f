"""Exact online FOP on the pattern the topology can reach (meshprop.streams.pattern, .cost):
the same gradients as autograd and as the dense representation (float64, 1e-10) on random
topologies with cycles, self-loops, mixed activations and several batch sizes, on both layouts;
the cost model's choice; the memory guard counting before it builds."""

from __future__ import annotations

import copy

import pytest
import torch

import meshprop as mp
from helpers import relative_error
from meshprop.memory import MemoryLimitError, memory_limit
from meshprop.streams import fop_cost, fop_representation
from meshprop.streams.pattern import PatternCarry, pattern_budget, pattern_plan, pattern_size
from meshprop.streams.rtrl import RTRLCarry
from test_sequence import TOL, sequence_case


@pytest.fixture(autouse=True)
def one_thread():
    with mp.threads.thread_policy(1):
        yield


def sparse_twin(net: mp.MeshNet) -> mp.MeshNet:
    twin = mp.MeshNet(
        net.topology,
        ticks=net.ticks,
        activation=net.activation,
        output_activation=net.output_activation,
        dtype=net.parameter.dtype,
        layout="sparse",
    )
    with torch.no_grad():
        twin.parameter.copy_(net.edge_weights())
    return twin


def frozen_sum(net, x, target, loss, mask) -> torch.Tensor:
    """Σ_t (masked share of t) · the learner's gradient at t, weights frozen."""
    L, B = x.shape[:2]
    mask = torch.ones(L, B, dtype=torch.bool) if mask is None else mask
    learner = mp.OnlineLearner(net, torch.optim.SGD(net.parameters(), lr=0.0), loss=loss)
    total = torch.zeros_like(net.parameter)
    for t in range(L):
        learner.step(x[t], target[t], mask[t])
        m = int(mask[t].sum())
        if m:
            total += learner.last_gradient * m / int(mask.sum())
    return total


@pytest.mark.parametrize("layout", ["dense", "sparse"])
@pytest.mark.parametrize("seed", range(6))
def test_pattern_fop_equals_autograd(layout: str, seed: int) -> None:
    """sequence_gradient and the online learner on the pattern: autograd's gradient (random
    topologies: cycles, self-loops, mixed activations, B = 1..5, both losses, masks)."""
    case = sequence_case(2100 + seed, length=7)
    net = case.net if layout == "dense" else sparse_twin(case.net)
    kwargs = {"loss": case.loss, "mask": case.mask}
    _, reference = mp.sequence_gradient(net, case.x, case.target, method="autograd", **kwargs)
    assert reference.abs().max() > 0, case.description
    with fop_representation("pattern"):
        _, grad = mp.sequence_gradient(net, case.x, case.target, method="fop", **kwargs)
        online = frozen_sum(net, case.x, case.target, case.loss, case.mask)
    assert relative_error(grad, reference) <= TOL, case.description
    assert relative_error(online, reference) <= TOL, case.description


@pytest.mark.parametrize("seed", range(3))
def test_pattern_chunks_carry_the_sensitivities(seed: int) -> None:
    """A stream cut into chunks (SequenceState): the pattern hands its sensitivities on (zero off
    the pattern) and takes them back; the dense representation's state enters it too."""
    case = sequence_case(2200 + seed, length=9)
    L, B = case.x.shape[:2]
    mask = torch.ones(L, B, dtype=torch.bool) if case.mask is None else case.mask
    _, whole = mp.sequence_gradient(case.net, case.x, case.target, loss=case.loss, mask=mask)
    for first, second in (("pattern", "pattern"), ("dense", "pattern"), ("pattern", "dense")):
        state, total, grad = mp.SequenceState(), int(mask.sum()), torch.zeros_like(whole)
        for (start, stop), rep in zip([(0, 4), (4, 9)], (first, second), strict=True):
            share = int(mask[start:stop].sum())
            chunk = mask[start:stop] if share else torch.ones(stop - start, B, dtype=torch.bool)
            with fop_representation(rep):
                _, g = mp.sequence_gradient(
                    case.net,
                    case.x[start:stop],
                    case.target[start:stop],
                    loss=case.loss,
                    mask=chunk,
                    state=state,
                )
            grad += g * share / total
        assert relative_error(grad, whole) <= TOL, (first, second, case.description)


def test_pattern_refuses_sensitivities_off_its_pattern() -> None:
    net = mp.MeshNet(mp.Topology.self_loops(1, 3, 1), ticks=1, dtype=torch.float64)
    x, target = torch.randn(2, 1, 1, dtype=torch.float64), torch.zeros(2, 1, 1, dtype=torch.float64)
    P, F = net.topology.n_edges, net.topology.n_free
    state = mp.SequenceState(h=None, sensitivities=torch.ones(1, P, F, dtype=torch.float64))
    with fop_representation("pattern"), pytest.raises(ValueError, match="cannot reach"):
        mp.sequence_gradient(net, x, target, state=state)


@pytest.mark.parametrize("layout", ["dense", "sparse"])
def test_online_learning_is_the_same_on_both_representations(layout: str) -> None:
    """Adam after every element: the pattern and the dense representation give the same losses
    and weights while the weights change (the same RTRL, not an approximation)."""
    case = sequence_case(2300, length=15)
    base = case.net if layout == "dense" else sparse_twin(case.net)
    nets, losses = [], []
    for rep in ("dense", "pattern"):
        net = copy.deepcopy(base)
        with fop_representation(rep):
            learner = mp.OnlineLearner(
                net, torch.optim.Adam(net.parameters(), lr=1e-2), loss=case.loss
            )
            run = []
            for t in range(case.x.shape[0]):
                m = None if case.mask is None else case.mask[t]
                run.append(learner.step(case.x[t], case.target[t], m))
        assert isinstance(learner._carry, PatternCarry if rep == "pattern" else RTRLCarry)
        nets.append(net)
        losses.append(torch.tensor(run))
    finite = torch.isfinite(losses[0])
    assert torch.equal(finite, torch.isfinite(losses[1]))
    assert relative_error(losses[1][finite], losses[0][finite]) <= TOL
    assert relative_error(nets[1].edge_weights(), nets[0].edge_weights()) <= TOL


def test_dense_saved_stream_continues_on_the_pattern() -> None:
    """A learner saved on the dense representation resumes on the pattern exactly."""
    topo = mp.Topology.self_loops(2, 4, 2)
    gen = torch.Generator().manual_seed(5)
    x = torch.randn(8, 2, 2, generator=gen, dtype=torch.float64)
    target = torch.randn(8, 2, 2, generator=gen, dtype=torch.float64)

    def learner_for(net):
        return mp.OnlineLearner(net, torch.optim.SGD(net.parameters(), lr=0.05), update_every=2)

    net = mp.MeshNet(topo, ticks=2, dtype=torch.float64, seed=1)
    with fop_representation("dense"):
        learner = learner_for(net)
        for t in range(4):
            learner.step(x[t], target[t])
    saved = copy.deepcopy((learner.state_dict(), net.state_dict()))
    with fop_representation("dense"):
        expected = [learner.step(x[t], target[t]) for t in range(4, 8)]
    other = mp.MeshNet(topo, ticks=2, dtype=torch.float64, seed=2)
    other.load_state_dict(saved[1])
    with fop_representation("pattern"):
        resumed = learner_for(other)
        resumed.load_state_dict(saved[0])
        got = [resumed.step(x[t], target[t]) for t in range(4, 8)]
    assert isinstance(resumed._carry, PatternCarry)
    assert relative_error(torch.tensor(got), torch.tensor(expected)) <= TOL
    assert relative_error(other.parameter, net.parameter) <= TOL


# --- the cost model's choice


def test_self_loop_recurrence_takes_the_pattern_and_costs_o_of_p() -> None:
    I, H, O = 2, 64, 3
    topo = mp.Topology.self_loops(I, H, O)
    cost = fop_cost(topo)
    assert cost.representation == "pattern"
    # edges into a hidden neuron keep (j, j) and the outputs; edges into an output the outputs
    into_hidden, into_output = H * (I + 2), O * (H + 1)
    assert cost.pairs == into_hidden * (1 + O) + into_output * O
    assert cost.transitions == into_hidden * (1 + O)  # the self-loop and the edges j → outputs
    assert cost.pairs + cost.transitions < 3 * topo.n_edges * (1 + O)
    net = mp.MeshNet(topo, ticks=1, dtype=torch.float64)
    learner = mp.OnlineLearner(net, torch.optim.SGD(net.parameters(), lr=0.0))
    learner.step(torch.zeros(1, I, dtype=torch.float64), torch.zeros(1, O, dtype=torch.float64))
    assert isinstance(learner._carry, PatternCarry)


@pytest.mark.parametrize("layout", ["dense", "sparse"])
def test_full_mesh_stays_dense(layout: str) -> None:
    topo = mp.Topology.random(1, 32, 1, density=1.0, seed=0)
    cost = fop_cost(topo)
    assert cost.representation == "dense" and cost.pairs == topo.n_edges * topo.n_free
    assert cost.work_per_tick == topo.n_free**2 * topo.n_edges
    net = mp.MeshNet(topo, ticks=1, layout=layout)
    learner = mp.OnlineLearner(net, torch.optim.SGD(net.parameters(), lr=0.0))
    learner.step(torch.zeros(1, 1), torch.zeros(1, 1))
    assert isinstance(learner._carry, RTRLCarry)


def test_feed_forward_paths_take_the_pattern() -> None:
    """A layered mesh: an edge into layer h reaches only the layers after it."""
    topo = mp.Topology.layered([8, 64, 64, 4])
    cost = fop_cost(topo)
    assert cost.representation == "pattern"
    into_first, into_second, into_out = 9 * 64, 65 * 64, 65 * 4
    assert cost.pairs == into_first * (1 + 64 + 4) + into_second * (1 + 4) + into_out * 4


def test_modular_mesh_keeps_each_block_to_itself() -> None:
    """32 fully connected blocks of 4 hidden neurons that never reach each other, all read by
    one output: every edge's pattern is its own block and the output, and the pattern wins.
    (Two large blocks would not: the pattern must save more than the ~80× a gathered entry
    costs over a multiply-add of the dense product.)"""
    I, blocks, size = 1, 32, 4
    C = I + 1
    out = C + blocks * size
    edges = []
    for k in range(blocks):
        hidden = range(C + k * size, C + (k + 1) * size)
        edges += [(i, j) for i in range(C) for j in hidden]
        edges += [(i, j) for i in hidden for j in hidden]
        edges += [(i, out) for i in hidden]
    edges.append((I, out))
    topo = mp.Topology.from_edges(I, blocks * size, 1, edges)
    cost = fop_cost(topo)
    assert cost.representation == "pattern"
    into_hidden = blocks * size * (C + size)  # each keeps its block and the output
    assert cost.pairs == into_hidden * (size + 1) + (blocks * size + 1)
    assert cost.transitions == into_hidden * size * (size + 1)
    assert cost.pairs < 0.05 * topo.n_edges * topo.n_free


def test_fop_cost_validates_its_arguments() -> None:
    with pytest.raises(TypeError, match=r"meshprop\.Topology"):
        fop_cost("mesh")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="batch must be an integer >= 1"):
        fop_cost(mp.Topology.self_loops(1, 2, 1), batch=0)
    with pytest.raises(ValueError, match="unknown fop representation"), fop_representation("x"):
        pass


# --- the memory guard


def test_guard_uses_the_chosen_representation() -> None:
    """A self-loop mesh whose dense sensitivities would not fit learns on its pattern; the
    refusal names the representation and its size."""
    topo = mp.Topology.self_loops(1, 600, 1)
    net = mp.MeshNet(topo, ticks=1, layout="sparse")
    dense_bytes = 2 * 4 * topo.n_edges * topo.n_free
    with memory_limit(dense_bytes // 4):
        cost = fop_cost(topo)
        assert cost.representation == "pattern" and cost.bytes < dense_bytes // 4
        learner = mp.OnlineLearner(net, torch.optim.SGD(net.parameters(), lr=0.0))
        learner.step(torch.zeros(1, 1), torch.zeros(1, 1))
    with memory_limit(cost.bytes // 2), pytest.raises(MemoryLimitError, match="pattern"):
        mp.OnlineLearner(net, torch.optim.SGD(net.parameters(), lr=0.0)).step(
            torch.zeros(1, 1), torch.zeros(1, 1)
        )


def test_snap_guard_refuses_before_building_its_plan() -> None:
    """SnAp at a high order on a strongly connected mesh: the count stops at the limit's budget,
    the plan is never built, the refusal is immediate."""
    topo = mp.Topology.sparse_random(2, 2_000, 1, degree=8, seed=0)
    net = mp.MeshNet(topo, ticks=1, layout="sparse")
    before = pattern_plan.cache_info().currsize
    with memory_limit("2MiB"):
        assert pattern_size(topo, 40, pattern_budget()) is None
        with pytest.raises(MemoryLimitError, match="not counted further"):
            mp.OnlineLearner(
                net, torch.optim.SGD(net.parameters(), lr=0.0), method="snap", order=40
            ).step(torch.zeros(1, 2), torch.zeros(1, 1))
    assert pattern_plan.cache_info().currsize == before


# --- sequence_gradient serves every online method


def test_sequence_gradient_takes_snap_and_uoro() -> None:
    case = sequence_case(2400, length=6)
    kwargs = {"loss": case.loss, "mask": case.mask}
    _, reference = mp.sequence_gradient(case.net, case.x, case.target, method="autograd", **kwargs)
    from meshprop.streams.snap import saturation_order

    k = saturation_order(case.net.topology)
    _, snap = mp.sequence_gradient(case.net, case.x, case.target, method="snap", order=k, **kwargs)
    assert relative_error(snap, reference) <= TOL, case.description
    _, uoro = mp.sequence_gradient(case.net, case.x, case.target, method="uoro", seed=0, **kwargs)
    assert uoro.shape == reference.shape and bool(torch.isfinite(uoro).all())
    with pytest.raises(ValueError, match="order=k"):
        mp.sequence_gradient(case.net, case.x, case.target, method="snap", **kwargs)
    with pytest.raises(ValueError, match="order applies to method 'snap' only"):
        mp.sequence_gradient(case.net, case.x, case.target, method="fop", order=2, **kwargs)
    with pytest.raises(ValueError, match="does not apply to method 'autograd'"):
        mp.sequence_gradient(case.net, case.x, case.target, method="autograd", seed=1, **kwargs)


def test_self_loops_builder() -> None:
    no_bias = mp.Topology.self_loops(0, 3, 2, bias=False)
    assert no_bias.edge_list() == [
        (0, 0),
        (0, 3),
        (0, 4),
        (1, 1),
        (1, 3),
        (1, 4),
        (2, 2),
        (2, 3),
        (2, 4),
    ]
    topo = mp.Topology.self_loops(1, 2, 1)  # input 0, bias 1, hidden 2 and 3, output 4
    expected = {(0, 2), (0, 3), (1, 2), (1, 3), (2, 2), (3, 3), (2, 4), (3, 4), (1, 4)}
    assert set(topo.edge_list()) == expected and topo.n_edges == len(expected)
    with pytest.raises(ValueError, match="hidden"):
        mp.Topology.self_loops(1, 0, 1)
