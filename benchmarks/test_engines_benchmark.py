"""pytest-benchmark entry points: ``pytest benchmarks/ --benchmark-only``.

Not part of ``make test`` (``testpaths`` is ``tests``).  One benchmark per engine on the paper
configuration, and fop versus fop_factored over a short ticks sweep.
"""

from __future__ import annotations

import pytest
import torch

from meshprop.bench import WORKLOADS, Point, _step

torch.set_num_threads(2)

PAPER = WORKLOADS["paper"]()[0]


@pytest.mark.parametrize("engine", ["fop", "fop_factored", "auto", "bptt", "autograd"])
def test_paper_config(benchmark, engine):
    net, x, labels = PAPER.build()
    benchmark.group = "paper"
    benchmark(_step, engine, net, x, labels)


@pytest.mark.parametrize("ticks", [3, 30])
@pytest.mark.parametrize("engine", ["fop", "fop_factored"])
def test_ticks(benchmark, engine, ticks):
    point = Point(
        "ticks",
        inputs=8,
        hidden=24,
        outputs=4,
        density=0.5,
        ticks=ticks,
        batch=16,
        activation="tanh",
        output_feedback=True,
    )
    benchmark.group = f"ticks={ticks}"
    benchmark(_step, engine, *point.build())
