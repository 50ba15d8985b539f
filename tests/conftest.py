"""Shared fixtures: every test starts from a seeded random state, so a failure replays.

The seed of each test is derived from its node id (stable across runs and independent of test
order); ``MESHPROP_TEST_SEED`` adds an offset to explore other draws.  Tests that need their own
generator take the ``rng`` fixture (a ``torch.Generator`` seeded the same way) or ``seed``.

Under pytest-xdist (``make test`` runs two workers) every worker and the processes its tests
start use one intra-op thread, so the workers do not oversubscribe the cores; tests that change
the thread count restore it themselves.
"""

from __future__ import annotations

import os
import random
import zlib

# scikit-learn's check_estimator runs its array-API check (NumPy inputs with array-API dispatch
# enabled must give the same results) only when SciPy's array-API support is switched on, which must
# happen before SciPy is first imported.
os.environ.setdefault("SCIPY_ARRAY_API", "1")

import numpy as np
import pytest
import torch

#: set in each pytest-xdist worker (gw0, gw1, ...), absent in a plain pytest run
XDIST_WORKER = os.environ.get("PYTEST_XDIST_WORKER")
if XDIST_WORKER is not None:
    torch.set_num_threads(1)
    os.environ.setdefault("OMP_NUM_THREADS", "1")  # inherited by the processes tests start


def _seed_for(nodeid: str) -> int:
    offset = int(os.environ.get("MESHPROP_TEST_SEED", "0"))
    return (zlib.crc32(nodeid.encode()) + offset) % (2**31)


@pytest.fixture(autouse=True)
def seed(request: pytest.FixtureRequest) -> int:
    """Seed Python's, NumPy's and torch's global generators for this test; returns the seed."""
    value = _seed_for(request.node.nodeid)
    random.seed(value)
    np.random.seed(value)
    torch.manual_seed(value)
    return value


@pytest.fixture
def rng(seed: int) -> torch.Generator:
    """A torch generator seeded for this test."""
    return torch.Generator().manual_seed(seed)


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    if report.when == "call" and report.failed:
        report.sections.append(
            ("meshprop seed", f"test seed {_seed_for(report.nodeid)} (replay: same node id)")
        )
