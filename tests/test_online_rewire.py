"""mp.OnlineLearner across structure changes, the memory guard and masked elements: a learner
follows the network's topology value (its carry, its gradient buffer and the optimizer's
per-weight state), so no public sequence of calls leaves a weight off the mask."""

from __future__ import annotations

import warnings

import pytest
import torch

import meshprop as mp
from meshprop import structure


@pytest.fixture(autouse=True)
def one_thread():
    with mp.threads.thread_policy(1):
        yield


def _net(layout: str = "dense", hidden: int = 5) -> mp.MeshNet:
    topo = mp.Topology.random(1, hidden, 1, density=1.0, bias=True, seed=0)
    return mp.MeshNet(topo, ticks=1, activation="tanh", dtype=torch.float64, seed=0, layout=layout)


def _smaller(topo: mp.Topology) -> mp.Topology:
    """The topology without a third of its edges (every third, self-loops included)."""
    edges = [tuple(int(v) for v in e) for e in topo.edges]
    return topo.with_edges(remove=edges[::3])


def _stream(n: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 1, 1, generator=gen, dtype=torch.float64)
    return x, torch.roll(x, 2, dims=0)


def _options(method: str, truncation: int) -> dict[str, int]:
    """The keyword options ``method`` needs (tbptt's window, SnAp's order)."""
    return {"tbptt": {"truncation": truncation}, "snap": {"order": 2}}.get(method, {})


def _off_mask(net: mp.MeshNet) -> torch.Tensor:
    """The largest |weight| off the topology's edges (0 for a healthy dense net)."""
    if net.layout != "dense":
        return torch.zeros(())
    return (net.A.detach() * ~net.topology.dense_mask()).abs().max()


def _checkpoint_round_trip(net: mp.MeshNet, tmp_path) -> None:
    mp.save_checkpoint(tmp_path / "ckpt", net)
    loaded, _ = mp.load_checkpoint(tmp_path / "ckpt")
    assert torch.equal(loaded.edge_weights(), net.edge_weights())


@pytest.mark.parametrize("layout", ["dense", "sparse"])
@pytest.mark.parametrize("method", mp.ONLINE_METHODS)
def test_rewire_then_reset_keeps_every_weight_on_the_mask(layout, method, tmp_path) -> None:
    """Bugs (a) and (b): ``structure.rewire(net, smaller)`` without the optimizer, then
    ``learner.reset()``: the learner must neither write gradient on removed edges nor let Adam's
    old moments move them; the checkpoint then loads."""
    net = _net(layout)
    optimizer = torch.optim.Adam(net.parameters(), lr=1e-2)
    options = _options(method, 3)
    learner = mp.OnlineLearner(net, optimizer, method=method, **options)
    x, target = _stream(60)
    for t in range(30):
        learner.step(x[t], target[t])
    smaller = _smaller(net.topology)
    structure.rewire(net, smaller)  # the optimizer's state is not passed: the learner follows
    learner.reset()
    for t in range(30, 60):
        learner.step(x[t], target[t])
    assert net.topology == smaller
    assert float(_off_mask(net)) == 0.0
    assert learner.last_gradient is not None
    assert learner.last_gradient.shape == net.storage.shape
    assert torch.equal(net.storage.project(learner.last_gradient), learner.last_gradient)
    _checkpoint_round_trip(net, tmp_path)


@pytest.mark.parametrize("layout", ["dense", "sparse"])
def test_rewire_mid_stream_carries_the_state(layout) -> None:
    """Without reset: the carry is rebuilt for the new topology with the state h carried over
    (the sensitivities restart), and the stream goes on from that state."""
    net = _net(layout)
    learner = mp.OnlineLearner(net, torch.optim.SGD(net.parameters(), lr=0.0))
    x, target = _stream(20)
    for t in range(10):
        learner.step(x[t], target[t])
    h = learner.state
    net.rewire_(_smaller(net.topology))
    learner.step(x[10], target[10])
    with torch.no_grad():
        _, expected = net.unroll(x[10:11], state=h)
    assert torch.allclose(learner.state, expected, rtol=0, atol=1e-12)
    assert learner.sensitivities.shape == (1, net.topology.n_edges, net.topology.n_free)


def test_rewire_with_the_optimizer_then_grow_back(tmp_path) -> None:
    """rewire_ with the optimizer (already remapped) and a later growth: still on the mask."""
    net = _net()
    optimizer = torch.optim.Adam(net.parameters(), lr=1e-2)
    learner = mp.OnlineLearner(net, optimizer)
    x, target = _stream(45)
    full = net.topology
    for t in range(15):
        learner.step(x[t], target[t])
    net.rewire_(_smaller(full), optimizer)
    for t in range(15, 30):
        learner.step(x[t], target[t])
    assert float(_off_mask(net)) == 0.0
    net.rewire_(full)
    for t in range(30, 45):
        learner.step(x[t], target[t])
    assert float(_off_mask(net)) == 0.0
    _checkpoint_round_trip(net, tmp_path)


@pytest.mark.parametrize("method", mp.ONLINE_METHODS)
def test_a_fully_masked_element_has_no_last_gradient(method) -> None:
    """Bug (c): at an update point with no masked sample since the last one the optimizer is
    not stepped and ``last_gradient`` is None (not the previous element's gradient)."""
    net = _net()
    options = _options(method, 2)
    learner = mp.OnlineLearner(
        net, torch.optim.SGD(net.parameters(), lr=0.1), method=method, **options
    )
    x, target = _stream(3)
    learner.step(x[0], target[0])
    assert learner.last_gradient is not None
    weights = net.A.detach().clone()
    value = learner.step(x[1], target[1], torch.zeros(1, dtype=torch.bool))
    assert value != value  # NaN: no sample carries a loss
    assert learner.last_gradient is None
    assert torch.equal(net.A.detach(), weights)  # no optimizer step


@pytest.mark.parametrize("method", mp.ONLINE_METHODS)
def test_the_online_path_is_memory_guarded(method) -> None:
    """Bug (d): a carry that cannot fit is refused before it is allocated."""
    net = _net(hidden=12)
    options = _options(method, 2)
    learner = mp.OnlineLearner(
        net, torch.optim.SGD(net.parameters(), lr=0.1), method=method, **options
    )
    with mp.memory_limit(1000), pytest.raises(mp.MemoryLimitError, match=method) as caught:
        learner.step(
            torch.zeros(64, 1, dtype=torch.float64), torch.zeros(64, 1, dtype=torch.float64)
        )
    assert "memory limit" in str(caught.value) and caught.value.estimate > 1000
    assert learner.state is None  # nothing was built
    with pytest.raises(mp.MemoryLimitError), mp.memory_limit(1000):
        mp.sequence_gradient(net, torch.zeros(3, 64, 1), torch.zeros(3, 64, 1))


def test_lean_is_deprecated_and_changes_nothing() -> None:
    net = _net()
    with pytest.warns(DeprecationWarning, match="lean"):
        old = mp.OnlineLearner(net, torch.optim.SGD(net.parameters(), lr=0.0), lean=False)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        new = mp.OnlineLearner(net, torch.optim.SGD(net.parameters(), lr=0.0))
    x, target = _stream(5)
    for t in range(5):
        assert old.step(x[t], target[t]) == new.step(x[t], target[t])
    assert old.state_dict()["carry"].keys() == new.state_dict()["carry"].keys()


def test_online_methods_are_registered_by_name() -> None:
    assert mp.ONLINE_METHODS[:1] == ("fop",) and "tbptt" in mp.ONLINE_METHODS
    assert "bptt" not in mp.ONLINE_METHODS  # not online: it stores the stream
    net = _net()
    with pytest.raises(ValueError, match="truncation applies to method 'tbptt'"):
        mp.OnlineLearner(net, torch.optim.SGD(net.parameters(), lr=0.1), truncation=3)


@pytest.mark.parametrize("layout", ["dense", "sparse"])
def test_a_swap_of_edges_gives_the_same_run_whether_or_not_rewire_gets_the_optimizer(layout):
    """A change that keeps the edge count (one edge out, another in, as SET does): the learner
    remaps the optimizer's state itself when ``rewire_`` did not, and leaves it alone when it
    did — both runs end with the same weights and Adam state, edge for edge."""
    x, target = _stream(40)
    runs = []
    for give_optimizer in (True, False):
        net = _net(layout)
        net.rewire_(_smaller(net.topology))
        optimizer = torch.optim.Adam(net.parameters(), lr=1e-2)
        learner = mp.OnlineLearner(net, optimizer)
        for t in range(20):
            learner.step(x[t], target[t])
        topo = net.topology
        present = {tuple(int(v) for v in e) for e in topo.edges}
        absent = next(
            (i, j)
            for i in range(topo.n_neurons)
            for j in range(topo.n_clamped, topo.n_neurons)
            if (i, j) not in present
        )
        swapped = topo.with_edges(add=[absent], remove=[min(present)])
        assert swapped.n_edges == topo.n_edges
        net.rewire_(swapped, optimizer if give_optimizer else None)
        for t in range(20, 40):
            learner.step(x[t], target[t])
        state = optimizer.state[net.parameter]
        runs.append(
            [net.edge_weights()]
            + [net.storage.edge_values(state[k]).clone() for k in ("exp_avg", "exp_avg_sq")]
        )
    for given, remapped in zip(*runs, strict=True):
        assert torch.equal(given, remapped)
