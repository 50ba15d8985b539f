"""The ``online`` benchmark workload: streams through a MeshNet (issue 10).

- :func:`throughput`: ticks per second of online FOP (RTRL, ``mp.OnlineLearner``, Adam stepped at
  every element) on the delayed-recall network (1 input, bias, H tanh hidden, 1 tanh output,
  fully connected, 1 tick per element, float32) against H.
- :func:`stream_peak`: peak extra resident memory against the stream length L for online FOP (a
  stream of L elements through the learner: flat in L) and full BPTT (``sequence_gradient`` over
  one sequence of L elements: the trajectory grows with L), each measured in a fresh process::

      python -m meshprop.bench.online METHOD LENGTH HIDDEN

  prints ``{"peak_bytes": ...}`` (VmHWM − VmRSS before the run, after a warm-up; Linux only).
"""

from __future__ import annotations

import gc
import json
import os
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import torch

from ..mesh import MeshNet
from ..sequence import OnlineLearner, sequence_gradient
from ..threads import thread_policy
from ..topology import Topology

__all__ = ["DEFAULT_HIDDEN", "DEFAULT_LENGTHS", "stream_peak", "throughput"]

DEFAULT_HIDDEN = (8, 16, 32, 64)
DEFAULT_LENGTHS = (10**3, 10**4, 10**5, 10**6)
_SOURCE = str(Path(__file__).resolve().parents[2])


def _net(hidden: int) -> MeshNet:
    topo = Topology.random(1, hidden, 1, density=1.0, bias=True, seed=0)
    return MeshNet(topo, ticks=1, activation="tanh", dtype=torch.float32, seed=0)


def _bits(n: int) -> torch.Tensor:
    gen = torch.Generator().manual_seed(0)
    return (torch.randint(0, 2, (n, 1, 1), generator=gen) * 2 - 1).float()


def throughput(
    hidden: Sequence[int] = DEFAULT_HIDDEN, ticks: int = 2000, threads: int = 1
) -> list[dict]:
    """Rows {workload, method, hidden, neurons, edges, ticks, ticks_per_second}."""
    rows = []
    with thread_policy(threads):
        for H in hidden:
            net = _net(H)
            learner = OnlineLearner(net, torch.optim.Adam(net.parameters(), lr=3e-4))
            x = _bits(ticks + 100)
            for t in range(100):  # warm-up
                learner.step(x[t], x[t])
            start = time.perf_counter()
            for t in range(100, ticks + 100):
                learner.step(x[t], x[t - 10])
            elapsed = time.perf_counter() - start
            rows.append(
                {
                    "workload": "online",
                    "method": "fop",
                    "hidden": H,
                    "neurons": net.topology.n_neurons,
                    "edges": net.topology.n_edges,
                    "ticks": ticks,
                    "ticks_per_second": ticks / elapsed,
                }
            )
    return rows


def _status(key: str) -> int:
    with open("/proc/self/status") as handle:
        for line in handle:
            if line.startswith(key + ":"):
                return int(line.split()[1]) * 1024
    raise OSError(f"/proc/self/status has no {key}")


def _run(method: str, length: int, hidden: int) -> None:
    net = _net(hidden)
    x = _bits(length)
    if method == "fop":
        learner = OnlineLearner(net, torch.optim.Adam(net.parameters(), lr=3e-4))
        for t in range(length):
            learner.step(x[t], x[t - 1] if t else x[t])
    elif method == "bptt":
        target = torch.roll(x, 1, dims=0)
        sequence_gradient(net, x, target, method="bptt")
    else:
        raise ValueError(f"unknown stream method {method!r}; expected 'fop' or 'bptt'")


def peak_here(method: str, length: int, hidden: int) -> int:
    """Peak extra resident bytes of a stream of ``length`` elements (this process; fresh)."""
    _run(method, 50, hidden)  # warm-up: kernels, optimizer state, lazy caches
    gc.collect()
    with open("/proc/self/clear_refs", "w") as handle:
        handle.write("5")
    before = _status("VmRSS")
    _run(method, length, hidden)
    return max(0, _status("VmHWM") - before)


def stream_peak(
    lengths: Sequence[int] = DEFAULT_LENGTHS,
    methods: Sequence[str] = ("fop", "bptt"),
    hidden: int = 32,
    timeout: float = 3600,
) -> list[dict]:
    """Rows {workload, method, hidden, length, peak_bytes}, one fresh process each."""
    if not os.path.exists("/proc/self/clear_refs"):
        raise OSError("peak memory needs Linux /proc/self/clear_refs")
    path = os.pathsep.join(p for p in (_SOURCE, os.environ.get("PYTHONPATH")) if p)
    env = {**os.environ, "MALLOC_MMAP_THRESHOLD_": "131072", "PYTHONPATH": path}
    rows = []
    for method in methods:
        for length in lengths:
            command = [sys.executable, "-m", "meshprop.bench.online", method, str(length)]
            result = subprocess.run(
                [*command, str(hidden)],
                capture_output=True,
                text=True,
                timeout=timeout,
                check=False,
                env=env,
            )
            if result.returncode != 0:
                raise RuntimeError(f"stream probe failed: {result.stderr.strip()[-500:]}")
            peak = int(json.loads(result.stdout.strip().splitlines()[-1])["peak_bytes"])
            rows.append(
                {
                    "workload": "online",
                    "method": method,
                    "hidden": hidden,
                    "length": length,
                    "peak_bytes": peak,
                }
            )
    return rows


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if len(args) != 3:
        print("usage: python -m meshprop.bench.online METHOD LENGTH HIDDEN", file=sys.stderr)
        return 2
    with thread_policy(1):
        peak = peak_here(args[0], int(args[1]), int(args[2]))
    print(json.dumps({"peak_bytes": peak}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
