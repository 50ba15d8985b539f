"""The fast paths of the paper workloads: fop_factored's uniform-activation paths and its
carry, the memory guard's reuse of a MemAvailable reading, and the bench summary lines."""

from __future__ import annotations

import time

import pytest
import torch

import meshprop as mp
from meshprop import memory
from meshprop.bench import Row, summary
from meshprop.engines import ENGINES


def relative_error(a: torch.Tensor, b: torch.Tensor) -> float:
    scale = b.abs().max().clamp_min(torch.finfo(b.dtype).tiny)
    return float((a - b).abs().max() / scale)


@pytest.mark.parametrize("activation", sorted(mp.ACTIVATIONS))
@pytest.mark.parametrize("feedback", [False, True])
def test_fop_factored_uniform_activations_match_autograd(activation, feedback):
    """Every uniform φ (relu runs in place in the state history), 1–5 ticks, inputs per tick
    or constant, with and without output feedback: dE/dA, y and dE/dx to 1e-10 in float64."""
    topo = mp.Topology.random(5, 9, 3, density=0.7, seed=3, output_feedback=feedback)
    engine, oracle = ENGINES["fop_factored"], ENGINES["autograd"]
    for ticks in (1, 2, 3, 5):
        net = mp.MeshNet(topo, ticks=ticks, activation=activation, dtype=torch.float64, seed=1)
        dyn, A = net.dynamics, net.A.detach()
        for shape in ((6, 5), (ticks, 6, 5)):
            x = torch.randn(shape, dtype=torch.float64)
            grad_y = torch.randn(6, 3, dtype=torch.float64)
            y, saved = engine.forward(dyn, A, x)
            dA, dx = engine.backward(dyn, A, x, saved, grad_y)
            y_ref, saved_ref = oracle.forward(dyn, A, x)
            dA_ref, dx_ref = oracle.backward(dyn, A, x, saved_ref, grad_y)
            assert torch.allclose(y, y_ref, rtol=1e-12, atol=1e-14)
            assert relative_error(dA, dA_ref) <= 1e-10, (activation, ticks, shape)
            assert relative_error(dx, dx_ref) <= 1e-10, (activation, ticks, shape)
            assert (dA[~topo.mask] == 0).all()


def test_fop_factored_carries_one_small_matrix_per_sample_at_three_ticks():
    """Paper config, 3 ticks: the only per-sample carry is Q_{1→2} (|R_1| × outputs per sample),
    never the |R_1| × |R_2| matrix J_{1→2}; at 2 ticks nothing per sample is carried."""
    topo = mp.Topology.random(8, 12, 3, density=0.85, seed=0, output_feedback=False)
    engine = ENGINES["fop_factored"]
    for ticks, carried in ((3, (3, 12, 4)), (2, None)):
        net = mp.MeshNet(topo, ticks=ticks, seed=0)
        _, saved = engine.forward(net.dynamics, net.A.detach(), torch.randn(4, 8))
        Q = saved[1]
        assert (None if Q is None else tuple(Q.shape)) == carried


def test_memory_guard_reuses_a_recent_meminfo_reading(monkeypatch):
    monkeypatch.setattr(memory, "_available", (time.monotonic(), 12345))
    assert memory.available_bytes() == 12345  # fresh: reused
    monkeypatch.setattr(memory, "_available", (time.monotonic() - 2 * memory.AVAILABLE_TTL_S, 1))
    with open("/proc/meminfo") as f:
        total = next(int(line.split()[1]) * 1024 for line in f if line.startswith("MemTotal"))
    assert 1 < memory.available_bytes() <= total  # stale: read again


def _row(workload: str, engine: str, median: float, minimum: float, **extra) -> Row:
    return Row(engine, workload, 3, 93, 32, median, minimum, 2 * median, None, extra=extra)


def test_summary_reports_both_paper_workloads_against_autograd_and_auto_against_its_pick():
    rows = []
    for workload, scale in (("paper", 1.0), ("published", 0.5)):
        rows += [
            _row(workload, "fop", 10 * scale, 9 * scale),
            _row(workload, "fop_factored", 0.6 * scale, 0.5 * scale),
            _row(workload, "auto", 0.63 * scale, 0.55 * scale, chose="fop_factored"),
            _row(workload, "autograd", 1.0 * scale, 0.8 * scale),
        ]
    lines = summary(rows, machine_flops=None)
    for workload, what in (
        ("paper", "85 % of the allowed edges kept, 3 ticks"),
        ("published", "15 % of the allowed edges kept, 2 ticks"),
    ):
        assert any(
            line.startswith(f"{workload} ({what}")
            and "fop_factored / autograd = 0.60x median, 0.62x min" in line
            for line in lines
        ), lines
        assert f"{workload}: best forward-only / autograd = 0.60x median" in "\n".join(lines)
        assert (
            f"{workload}: auto / the engine it picked (fop_factored) = 1.05x median, 1.10x min"
            in "\n".join(lines)
        )
