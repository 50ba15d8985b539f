"""pytest-benchmark entry points: ``pytest benchmarks/ --benchmark-only``.

Not part of ``make test`` (``testpaths`` is ``tests``).  One benchmark per engine on the paper
configuration, and fop versus fop_factored over a short ticks sweep.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator

import pytest

from meshprop.bench import WORKLOADS, step
from meshprop.threads import thread_policy

PAPER = WORKLOADS["paper"]()[0]


@pytest.fixture(autouse=True)
def two_threads() -> Iterator[None]:
    """The thread count of ``meshprop bench`` and docs/performance.md."""
    with thread_policy(2):
        yield


@pytest.mark.parametrize("engine", ["fop", "fop_factored", "auto", "bptt", "autograd"])
def test_paper_config(benchmark, engine):
    net, x, labels = PAPER.build()
    benchmark.group = "paper"
    benchmark(step, engine, net, x, labels)


@pytest.mark.parametrize("ticks", [3, 30])
@pytest.mark.parametrize("engine", ["fop", "fop_factored"])
def test_ticks(benchmark, engine, ticks):
    point = dataclasses.replace(WORKLOADS["ticks"]()[0], ticks=ticks)  # the ticks workload's mesh
    benchmark.group = f"ticks={ticks}"
    benchmark(step, engine, *point.build())
