"""Every engine's memory estimate bounds the memory one step really allocates.

The memory guard refuses a step before it allocates, trusting ``estimate_bytes``; an estimate
below the real peak would let a step through that does not fit.  The peak is measured exactly,
not from the process's resident size: torch's profiler records every allocation and free of the
CPU allocator (their running sum's maximum is the peak of live tensor bytes;
``meshprop.bench.scale.peak_tensor_bytes``, the probe of the scale benchmark), and tracemalloc
sees NumPy's allocations (the literal ``reference`` engine works in NumPy).  The probe itself is
checked on a known sequence of allocations.
"""

from __future__ import annotations

import tracemalloc
from collections.abc import Callable

import pytest
import torch

import meshprop as mp
from meshprop.bench.scale import peak_tensor_bytes as torch_peak_bytes
from meshprop.engines import ENGINES


def python_peak_bytes(step: Callable[[], object]) -> int:
    """Peak bytes allocated through Python's and NumPy's allocators during ``step``."""
    tracemalloc.start()
    try:
        step()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def peak_bytes(method: str, step: Callable[[], object]) -> int:
    """The step's peak: torch tensors, plus NumPy arrays for the NumPy ``reference`` engine
    (measured in a second run; the sum of the two peaks bounds the joint peak from above)."""
    peak = torch_peak_bytes(step)
    if method == "reference":
        peak += python_peak_bytes(step)
    return peak


def test_the_probe_measures_a_known_sequence_exactly():
    def step() -> None:
        a = torch.empty(1000, 1000)  # 4 MB
        b = a + 1  # 8 MB live
        del a  # 4 MB
        c = b * 2  # 8 MB
        d = c * 3  # 12 MB: the peak
        del b, c, d

    # 12 MB at the peak, plus the three scalar operands, each wrapped as a 0-dim tensor of at
    # most 8 bytes
    assert 12_000_000 <= torch_peak_bytes(step) <= 12_000_000 + 3 * 8
    assert python_peak_bytes(lambda: bytearray(10**6)) >= 10**6


CONFIGS = [
    # (inputs, hidden, outputs, density, output_feedback, ticks, batch)
    (32, 50, 10, 0.85, False, 3, 32),  # the paper workload
    (32, 50, 10, 1.0, True, 6, 8),
    (32, 50, 10, 0.3, True, 1, 5),
    (4, 12, 3, 0.6, True, 2, 1),
    (10, 30, 2, 0.5, True, 12, 16),
]


@pytest.mark.slow
@pytest.mark.parametrize("method", sorted(ENGINES))
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_estimate_bounds_the_measured_peak(method, dtype):
    engine = ENGINES[method]
    for k, (inputs, hidden, outputs, density, feedback, ticks, batch) in enumerate(CONFIGS):
        topo = mp.Topology.random(
            inputs, hidden, outputs, density=density, seed=0, output_feedback=feedback
        )
        net = mp.MeshNet(topo, ticks=ticks, dtype=dtype, seed=0)
        per_tick = k % 2 == 1  # constant inputs and one input per tick alternate
        x = torch.randn(*((ticks,) if per_tick else ()), batch, inputs, dtype=dtype)
        labels = torch.randint(0, outputs, (batch,))

        def step(net=net, x=x, labels=labels) -> None:
            mp.gradient(net, x, labels, loss="cross_entropy", method=method)

        step()  # warm-up: lazy plans and caches are not part of a step
        measured = peak_bytes(method, step)
        estimate = engine.estimate_bytes(net.dynamics, batch, x.element_size())
        assert measured <= estimate, (
            f"{method} {dtype} N={topo.n_neurons} T={ticks} B={batch}: measured {measured} "
            f"bytes > estimate {estimate}"
        )
