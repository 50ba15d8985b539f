"""The memory guard: estimates before allocation, a configurable limit, a clear refusal."""

from __future__ import annotations

import pytest
import torch

import meshprop as mp
from meshprop import memory
from meshprop.engines import ENGINES


@pytest.fixture
def paper_net():
    topo = mp.Topology.random(
        inputs=32, hidden=50, outputs=10, density=0.85, seed=0, output_feedback=False
    )
    net = mp.MeshNet(topo, ticks=3, dtype=torch.float32, seed=0)
    return net, torch.randn(32, 32), torch.randint(0, 10, (32,))


def test_parse_bytes_units_and_errors(monkeypatch):
    assert memory.parse_bytes(1234) == 1234
    assert memory.parse_bytes("512MiB") == 512 * 2**20
    assert memory.parse_bytes("2GB") == 2 * 10**9
    assert memory.parse_bytes("1.5k") == 1500
    assert memory.parse_bytes("none") is None and memory.parse_bytes(0) is None
    monkeypatch.setattr(memory, "available_bytes", lambda: 1000)
    assert memory.parse_bytes("25%") == 250
    for bad in ("lots", "12 parsecs", "-5", "150%"):
        with pytest.raises(ValueError, match="memory limit"):
            memory.parse_bytes(bad)
    with pytest.raises(TypeError):
        memory.parse_bytes(True)


def test_default_limit_is_half_the_available_ram(monkeypatch):
    monkeypatch.delenv(memory.MEMORY_LIMIT_ENV, raising=False)
    monkeypatch.setattr(memory, "available_bytes", lambda: 8000)
    assert mp.get_memory_limit() == 4000


def test_available_bytes_reads_meminfo():
    with open("/proc/meminfo") as f:
        total = next(int(line.split()[1]) * 1024 for line in f if line.startswith("MemTotal"))
    assert 0 < memory.available_bytes() <= total


def test_env_var_and_context_manager_precedence(monkeypatch):
    monkeypatch.setenv(memory.MEMORY_LIMIT_ENV, "3MiB")
    assert mp.get_memory_limit() == 3 * 2**20
    with mp.memory_limit("1KiB"):
        assert mp.get_memory_limit() == 1024
        with mp.memory_limit(None):
            assert mp.get_memory_limit() is None
        assert mp.get_memory_limit() == 1024
    assert mp.get_memory_limit() == 3 * 2**20
    mp.set_memory_limit(5000)
    try:
        assert mp.get_memory_limit() == 5000
    finally:
        mp.set_memory_limit()
    assert mp.get_memory_limit() == 3 * 2**20
    monkeypatch.setenv(memory.MEMORY_LIMIT_ENV, "plenty")
    with pytest.raises(ValueError, match="MESHPROP_MEMORY_LIMIT"):
        mp.get_memory_limit()


@pytest.mark.parametrize("method", ["fop", "reference", "fop_factored", "bptt", "autograd"])
def test_gradient_refuses_before_allocating(paper_net, method, monkeypatch):
    net, x, labels = paper_net
    engine = ENGINES[method]
    estimate = engine.estimate_bytes(net.dynamics, 32, 4)

    def must_not_run(*args, **kwargs):
        raise AssertionError("the engine ran although its estimate exceeds the limit")

    monkeypatch.setattr(engine, "forward", must_not_run)
    with mp.memory_limit(estimate - 1), pytest.raises(mp.MemoryLimitError) as info:
        mp.gradient(net, x, labels, method=method)
    error = info.value
    assert isinstance(error, MemoryError)
    assert (error.engine, error.estimate, error.limit) == (method, estimate, estimate - 1)
    text = str(error)
    assert memory.format_bytes(estimate) in text and memory.format_bytes(estimate - 1) in text
    if error.suggestion is not None:
        assert f"method={error.suggestion!r}" in text
        assert ENGINES[error.suggestion].estimate_bytes(net.dynamics, 32, 4) <= estimate - 1


def test_fop_refusal_names_the_cheaper_engine(paper_net):
    net, x, labels = paper_net
    fop = ENGINES["fop"].estimate_bytes(net.dynamics, 32, 4)
    with mp.memory_limit(fop // 2), pytest.raises(mp.MemoryLimitError) as info:
        mp.gradient(net, x, labels, method="fop")
    assert info.value.suggestion in ("bptt", "fop_factored", "autograd")
    with mp.memory_limit(16), pytest.raises(mp.MemoryLimitError, match="no registered engine"):
        mp.gradient(net, x, labels, method="fop")


def test_meshnet_forward_is_guarded(paper_net):
    net, x, _ = paper_net
    for grad in ("fop", "autograd", "auto"):
        net.grad = grad
        with mp.memory_limit(1024), pytest.raises(mp.MemoryLimitError):
            net(x)
    with torch.no_grad(), mp.memory_limit(1024):
        assert net(x).shape == (32, 10)  # no gradient, no sensitivities: nothing to guard


def test_auto_falls_back_to_the_engine_that_fits(paper_net):
    net, x, labels = paper_net
    dyn = net.dynamics
    fop, factored = (ENGINES[m].estimate_bytes(dyn, 32, 4) for m in ("fop", "fop_factored"))
    assert factored < fop
    with mp.memory_limit(factored):
        _, dA = mp.gradient(net, x, labels, method="auto")
        assert ENGINES["auto"].last_choice.engine == "fop_factored"
    _, ref = mp.gradient(net, x, labels, method="autograd")
    assert torch.allclose(dA, ref, rtol=1e-5, atol=1e-6 * float(ref.abs().max()))
    long = mp.MeshNet(net.topology, ticks=400, dtype=torch.float32).dynamics
    auto = ENGINES["auto"]
    fop_long = ENGINES["fop"].estimate_bytes(long, 32, 4)
    assert ENGINES["fop_factored"].estimate_bytes(long, 32, 4) > fop_long
    with mp.memory_limit(fop_long):
        assert auto.choose(long, 32, 4).engine == "fop"


def test_estimates_bound_the_largest_tensors():
    """Each estimate covers the sensitivity tensor the engine's maths requires."""
    topo = mp.Topology.random(inputs=4, hidden=12, outputs=3, density=0.6, seed=0)
    dyn = mp.MeshNet(topo, ticks=20).dynamics
    B, itemsize, N, P = 8, 8, topo.n_neurons, topo.n_edges
    assert ENGINES["reference"].estimate_bytes(dyn, B, itemsize) >= B * N**3 * itemsize
    assert ENGINES["fop"].estimate_bytes(dyn, B, itemsize) >= B * P * topo.n_outputs * itemsize
    assert ENGINES["bptt"].estimate_bytes(dyn, B, itemsize) >= 20 * B * N * itemsize
    assert ENGINES["fop_factored"].estimate_bytes(dyn, B, itemsize) >= 20 * B * N * itemsize
    # fop is flat in the ticks, the history-keeping engines grow
    longer = mp.MeshNet(topo, ticks=200).dynamics
    for name in ("fop", "reference"):
        assert ENGINES[name].estimate_bytes(longer, B, 4) == ENGINES[name].estimate_bytes(dyn, B, 4)
    for name in ("bptt", "autograd", "fop_factored"):
        assert ENGINES[name].estimate_bytes(longer, B, 4) > ENGINES[name].estimate_bytes(dyn, B, 4)


def test_topology_builders_refuse_what_cannot_fit_before_allocating():
    """A full mesh of 200,000 neurons (4·10¹⁰ edges) or a random one keeping 5·10¹¹ edges: one
    MemoryLimitError naming the builder, the size and the way out, before any allocation."""
    with pytest.raises(mp.MemoryLimitError, match=r"Topology\.mesh: 200005 neurons") as info:
        mp.Topology.mesh(2, 200_000, 2)
    assert "Topology.sparse_random" in str(info.value) and info.value.engine == "topology"
    with pytest.raises(mp.MemoryLimitError, match=r"Topology\.random: 1000005 neurons"):
        mp.Topology.random(2, 10**6, 2, density=0.5)
    # the estimate is what is compared: just below it refuses, at it builds
    n, edges = 2 + 1 + 30 + 2, 35 * 32
    need = edges * mp.topology.BUILD_BYTES_PER_EDGE + n * n
    with mp.memory_limit(need - 1), pytest.raises(mp.MemoryLimitError):
        mp.Topology.mesh(2, 30, 2)
    with mp.memory_limit(need):
        assert mp.Topology.mesh(2, 30, 2).n_edges == edges
