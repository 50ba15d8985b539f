"""Peak memory of one step, measured in a fresh Python process (:mod:`meshprop.bench.probe`).

glibc is told to mmap every block above 128 KiB, so large tensors always show and a freed
warm-up tensor cannot hide the measured step's allocations inside the heap; small blocks that
fit into heap space the warm-up freed do not (on 3-tick points the small-footprint engines read
close to 0).  Linux only.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from .workloads import Point

__all__ = ["measure_peak_bytes", "probe_environment", "run_probe", "status_bytes"]

#: the package folder holding this meshprop, so the probe imports the same code
_SOURCE = str(Path(__file__).resolve().parents[2])


def probe_environment() -> dict[str, str]:
    """The environment of a fresh probe process: this meshprop first on the path, glibc told to
    mmap every block above 128 KiB (module docstring).  OSError off Linux."""
    if not os.path.exists("/proc/self/clear_refs"):
        raise OSError("peak memory needs Linux /proc/self/clear_refs")
    path = os.pathsep.join(p for p in (_SOURCE, os.environ.get("PYTHONPATH")) if p)
    return {**os.environ, "MALLOC_MMAP_THRESHOLD_": "131072", "PYTHONPATH": path}


def status_bytes(key: str) -> int:
    """A byte count of this process's /proc/self/status (``VmRSS``, ``VmHWM``)."""
    with open("/proc/self/status") as handle:
        for line in handle:
            if line.startswith(key + ":"):
                return int(line.split()[1]) * 1024
    raise OSError(f"/proc/self/status has no {key}")


def run_probe(module: str, arguments: list[str], what: str, timeout: float) -> list[str]:
    """The lines ``python -m module arguments`` prints, run in :func:`probe_environment`;
    RuntimeError naming ``what`` (with the end of its standard error) when it fails."""
    result = subprocess.run(
        [sys.executable, "-m", module, *arguments],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        env=probe_environment(),
    )
    if result.returncode != 0:
        raise RuntimeError(f"{what} failed: {result.stderr.strip()[-500:]}")
    return result.stdout.strip().splitlines()


def measure_peak_bytes(point: Point, engine: str, threads: int = 2, timeout: float = 600) -> int:
    """Extra resident memory (bytes) of one step of ``engine`` on ``point``."""
    arguments = [json.dumps(point.to_dict()), engine, "--threads", str(threads)]
    lines = run_probe("meshprop.bench.probe", arguments, f"memory probe of {engine}", timeout)
    return int(json.loads(lines[-1])["peak_bytes"])
