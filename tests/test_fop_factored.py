"""fop (fast), fop_factored and auto against PyTorch autograd on random networks.

Random topologies with cycles and self-loops, mixed activations, ticks 1–6, batch 1–16,
per-tick inputs, both losses; float64 to 1e-10 relative and float32 to 1e-5, and the benchmark
workloads at small scale.
"""

from __future__ import annotations

import logging

import pytest
import torch

import meshprop as mp
from meshprop.bench import WORKLOADS
from meshprop.engines import ENGINES
from meshprop.engines.auto import AutoEngine
from meshprop.engines.reach import needed_columns

FAST = ("fop", "fop_factored", "auto")
ACTS = sorted(mp.ACTIVATIONS)


def random_case(seed: int, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)

    def draw(lo, hi):
        return int(torch.randint(lo, hi + 1, (1,), generator=g))

    inputs, hidden, outputs = draw(0, 4), draw(0, 7), draw(1, 3)
    topo = mp.Topology.random(
        inputs=inputs,
        hidden=hidden,
        outputs=outputs,
        density=0.2 + 0.8 * float(torch.rand(1, generator=g)),
        bias=bool(seed % 2),
        seed=seed,
        output_feedback=bool(seed % 3),
    )
    ticks, batch = draw(1, 6), draw(1, 16)
    names = [ACTS[draw(0, len(ACTS) - 1)] for _ in range(topo.n_neurons)]
    net = mp.MeshNet(topo, ticks=ticks, activation=names, dtype=dtype, seed=seed)
    shape = (ticks, batch, inputs) if seed % 4 == 0 else (batch, inputs)
    x = torch.randn(shape, generator=g, dtype=torch.float64).to(dtype)
    if seed % 2:
        target, loss = torch.randint(0, outputs, (batch,), generator=g), "cross_entropy"
    else:
        target, loss = (
            torch.randn(batch, outputs, generator=g, dtype=torch.float64).to(dtype),
            "mse",
        )
    return net, x, target, loss


def relative_error(a: torch.Tensor, b: torch.Tensor) -> float:
    """max |a − b| / max |b|; where b is all zeros, a must be exactly zero too."""
    assert a.shape == b.shape
    if b.numel() == 0:
        return 0.0
    scale = b.abs().max().clamp_min(torch.finfo(b.dtype).tiny)
    return float((a - b).abs().max() / scale)


@pytest.mark.parametrize("seed", range(40))
def test_fast_engines_match_autograd_float64(seed):
    net, x, target, loss = random_case(seed)
    loss_ref, ref = mp.gradient(net, x, target, loss, method="autograd")
    for method in FAST:
        value, dA = mp.gradient(net, x, target, loss, method=method)
        assert float(value) == pytest.approx(float(loss_ref), rel=1e-12)
        assert relative_error(dA, ref) <= 1e-10, method
        assert (dA[~net.topology.mask] == 0).all()


@pytest.mark.parametrize("seed", range(8))
def test_fast_engines_match_autograd_float32(seed):
    net, x, target, loss = random_case(100 + seed, dtype=torch.float32)
    _, ref = mp.gradient(net, x, target, loss, method="autograd")
    for method in FAST:
        _, dA = mp.gradient(net, x, target, loss, method=method)
        assert relative_error(dA, ref) <= 1e-5, method


@pytest.mark.parametrize("seed", range(8))
def test_fop_factored_input_gradient_matches_autograd(seed):
    net, x, _, _ = random_case(200 + seed)
    dyn, A = net.dynamics, net.A.detach()
    grad_y = torch.randn(x.shape[-2], net.topology.n_outputs, dtype=torch.float64)
    results = {}
    for name in ("fop_factored", "autograd"):
        engine = ENGINES[name]
        y, saved = engine.forward(dyn, A, x)
        results[name] = (y, *engine.backward(dyn, A, x, saved, grad_y))
    (y1, dA1, dx1), (y2, dA2, dx2) = results["fop_factored"], results["autograd"]
    assert torch.allclose(y1, y2, rtol=1e-12, atol=1e-14)
    assert dx1.shape == x.shape
    assert relative_error(dx1, dx2) <= 1e-10
    assert relative_error(dA1, dA2) <= 1e-10


def test_meshnet_backward_through_fast_engines():
    topo = mp.Topology.random(inputs=3, hidden=6, outputs=2, density=0.6, seed=1)
    x = torch.randn(5, 3, dtype=torch.float64)
    labels = torch.tensor([0, 1, 1, 0, 1])
    grads = {}
    for grad in ("autograd", *FAST):
        net = mp.MeshNet(topo, ticks=4, activation="tanh", grad=grad, dtype=torch.float64, seed=3)
        torch.nn.functional.cross_entropy(net(x), labels).backward()
        grads[grad] = net.A.grad
    for grad in FAST:
        assert relative_error(grads[grad], grads["autograd"]) <= 1e-10


def test_unreachable_outputs_give_exact_zero():
    # the output is fed only by the bias, so every hidden edge has zero gradient
    topo = mp.Topology.from_edges(2, 2, 1, edges=[(0, 3), (3, 4), (4, 3), (2, 5)], bias=True)
    net = mp.MeshNet(topo, ticks=3, activation="tanh", dtype=torch.float64, seed=0)
    x, target = torch.randn(4, 2, dtype=torch.float64), torch.randn(4, 1, dtype=torch.float64)
    _, ref = mp.gradient(net, x, target, "mse", method="autograd")
    for method in FAST:
        _, dA = mp.gradient(net, x, target, "mse", method=method)
        assert torch.equal(dA[:, 3:5], torch.zeros(6, 2, dtype=torch.float64))
        assert relative_error(dA, ref) <= 1e-10


def test_needed_columns_are_predecessor_sets():
    # layered 2-4-3-2: at tick T only outputs, one tick earlier only the second hidden layer
    topo = mp.Topology.layered([2, 4, 3, 2], bias=True)
    cols = needed_columns(topo, 3)
    F = topo.n_free
    assert cols[-1].tolist() == list(range(F - 2, F))
    assert cols[-2].tolist() == list(range(4, 7))
    assert cols[-3].tolist() == list(range(0, 4))


@pytest.mark.parametrize("workload", ["paper", "ticks", "neurons", "density", "batch", "rate"])
def test_benchmark_workloads_agree_at_small_scale(workload):
    """Each workload's network shape, shrunk (fewer hidden neurons, ticks ≤ 12, batch ≤ 4)."""
    point = WORKLOADS[workload]()[0]
    small = type(point)(
        **{
            **point.__dict__,
            "hidden": min(point.hidden, 8),
            "inputs": min(point.inputs, 6),
            "ticks": min(point.ticks, 12),
            "batch": min(point.batch, 4),
        }
    )
    net, x, labels = small.build(dtype=torch.float64)
    _, ref = mp.gradient(net, x, labels, "cross_entropy", method="autograd")
    for method in ("fop", "fop_factored", "auto", "bptt"):
        _, dA = mp.gradient(net, x, labels, "cross_entropy", method=method)
        assert relative_error(dA, ref) <= 1e-10, method


def test_auto_prefers_factored_for_few_ticks_and_fop_for_many():
    topo = mp.Topology.random(
        inputs=32, hidden=50, outputs=10, density=0.85, seed=0, output_feedback=False
    )
    auto = AutoEngine()
    few = mp.MeshNet(topo, ticks=3).dynamics
    many = mp.MeshNet(topo, ticks=2000).dynamics
    assert auto.choose(few, 32, 4).engine == "fop_factored"
    assert auto.choose(many, 32, 4).engine == "fop"


def test_auto_reports_its_choice(caplog):
    topo = mp.Topology.random(inputs=3, hidden=4, outputs=2, density=0.7, seed=2)
    net = mp.MeshNet(topo, ticks=2, dtype=torch.float64, seed=0)
    auto = ENGINES["auto"]
    auto.last_choice = None
    with caplog.at_level(logging.INFO, logger="meshprop.engines.auto"):
        mp.gradient(
            net, torch.randn(3, 3, dtype=torch.float64), torch.tensor([0, 1, 1]), method="auto"
        )
    assert auto.last_choice is not None and auto.last_choice.engine in ("fop", "fop_factored")
    assert f"auto chose {auto.last_choice.engine!r}" in caplog.text


def test_auto_rejects_bad_candidates():
    with pytest.raises(ValueError, match="candidates"):
        AutoEngine(candidates=("auto",))
    with pytest.raises(ValueError, match="unknown gradient method"):
        AutoEngine(candidates=("nope",)).choose(
            mp.MeshNet(mp.Topology.mesh(1, 1, 1), ticks=1).dynamics, 1, 8
        )


@pytest.mark.parametrize(
    "topo",
    [
        mp.Topology.mesh(inputs=2, hidden=28, outputs=3),  # F = 31 → padded to 32
        mp.Topology.random(inputs=3, hidden=44, outputs=3, density=0.5, seed=4),  # F = 47 → 48
        mp.Topology.layered([3, 31, 16, 2]),  # differing column sets, one padded
    ],
)
def test_fop_padded_widths_match_autograd(topo):
    from meshprop.engines.fop import padded_width

    assert any(padded_width(len(R)) > len(R) for R in needed_columns(topo, 4)[:-1])
    net = mp.MeshNet(topo, ticks=4, activation="tanh", dtype=torch.float64, seed=0)
    x = torch.randn(3, topo.n_inputs, dtype=torch.float64)
    labels = torch.tensor([0, 1, 1])
    _, ref = mp.gradient(net, x, labels, method="autograd")
    for _ in range(2):  # the second call reuses the cached buffers
        _, dA = mp.gradient(net, x, labels, method="fop")
        assert relative_error(dA, ref) <= 1e-10


def test_fop_cached_buffers_are_per_thread():
    import threading

    topo = mp.Topology.random(inputs=4, hidden=20, outputs=3, density=0.6, seed=1)
    net = mp.MeshNet(topo, ticks=5, activation="tanh", dtype=torch.float64, seed=0)
    x, labels = torch.randn(8, 4, dtype=torch.float64), torch.randint(0, 3, (8,))
    _, ref = mp.gradient(net, x, labels, method="autograd")
    errors: list[float] = []

    def work():
        for _ in range(10):
            _, dA = mp.gradient(net, x, labels, method="fop")
            errors.append(relative_error(dA, ref))

    threads = [threading.Thread(target=work) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(errors) == 30 and max(errors) <= 1e-10
