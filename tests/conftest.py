"""Shared fixtures: every test starts from a seeded random state, so a failure replays.

The seed of each test is derived from its node id (stable across runs and independent of test
order); ``MESHPROP_TEST_SEED`` adds an offset to explore other draws.  Tests that need their own
generator take the ``rng`` fixture (a ``torch.Generator`` seeded the same way) or ``seed``.

The suite runs on the device named by ``MESHPROP_TEST_DEVICE`` (``cpu``, the default, or
``cuda``): tests that take the ``device`` fixture build their networks and data there (data is
drawn on the CPU, then moved, so every device sees the same numbers).  Asking for ``cuda`` where
torch sees no CUDA device stops the run at once with a usage error; nothing is skipped.

Under pytest-xdist (``make test`` runs two workers) every worker and the processes its tests
start use one intra-op thread and one BLAS thread, so the workers do not oversubscribe the
cores; tests that change the thread count restore it themselves.
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
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    # NumPy's BLAS started its threads when torch imported NumPy, before the lines above: one
    # thread for it too (the NumPy ``reference`` engine, SciPy, scikit-learn)
    from threadpoolctl import threadpool_limits

    threadpool_limits(1)


#: test modules whose tests share a module-scoped fixture (one trained run, one wheel build, one
#: fresh interpreter): under ``--dist loadgroup`` each module runs on one xdist worker, so that
#: the fixture is made once, not once per worker.  (pytest-xdist's ``xdist_group`` mark cannot
#: do it with pytest 9.2: xdist 3.8 appends the group to ``item._nodeid``, which pytest 9.2 no
#: longer reads, so every marked test is scheduled alone.)
SHARED_FIXTURE_MODULES = frozenset(
    {
        "tests/test_api.py",  # the modules of one fresh interpreter after each import stage
        "tests/test_cli_answers.py",  # one trained run
        "tests/test_package.py",  # the wheel, built once
        "tests/test_validation.py",  # one trained run
    }
)


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config: pytest.Config, log: object) -> object:
    """``--dist loadgroup`` with the modules of :data:`SHARED_FIXTURE_MODULES` as units."""
    if config.getvalue("dist") != "loadgroup":
        return None
    from xdist.scheduler import LoadGroupScheduling

    class SharedFixtureScheduling(LoadGroupScheduling):
        def _split_scope(self, nodeid: str) -> str:
            module = nodeid.split("::", 1)[0]
            return module if module in SHARED_FIXTURE_MODULES else super()._split_scope(nodeid)

    return SharedFixtureScheduling(config, log)


#: the environment variable naming the device the suite runs on
TEST_DEVICE_ENV = "MESHPROP_TEST_DEVICE"


def requested_device() -> str:
    """The device the suite runs on (``MESHPROP_TEST_DEVICE``, default ``cpu``)."""
    return os.environ.get(TEST_DEVICE_ENV, "cpu").strip() or "cpu"


def pytest_configure(config: pytest.Config) -> None:
    """Fail fast, before collecting anything, when the requested device cannot be used."""
    name = requested_device()
    if name not in ("cpu", "cuda"):
        raise pytest.UsageError(f"{TEST_DEVICE_ENV}={name!r}: expected cpu or cuda")
    if name == "cuda" and not torch.cuda.is_available():
        raise pytest.UsageError(
            f"{TEST_DEVICE_ENV}=cuda: no CUDA device is available "
            "(torch.cuda.is_available() is False); unset it or use cpu"
        )


@pytest.fixture(scope="session")
def device() -> torch.device:
    """The device the tests that take it run on (``MESHPROP_TEST_DEVICE``, default cpu)."""
    return torch.device(requested_device())


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
