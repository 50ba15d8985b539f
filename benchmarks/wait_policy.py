"""One paper-config step per engine, 15 repetitions, 2 threads: shows the OpenMP wait policy's
effect on a shared CPU.

    OMP_WAIT_POLICY=ACTIVE python benchmarks/wait_policy.py
    OMP_WAIT_POLICY=PASSIVE python benchmarks/wait_policy.py
"""

from __future__ import annotations

import os
import statistics
import time

from meshprop.bench import WORKLOADS, step
from meshprop.threads import thread_policy


def main() -> None:
    net, x, labels = WORKLOADS["paper"]()[0].build()
    print(f"OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY', 'unset')}")
    for engine in ("fop", "fop_factored", "autograd"):
        step(engine, net, x, labels)
        times = []
        for _ in range(15):
            t0 = time.perf_counter()
            step(engine, net, x, labels)
            times.append(time.perf_counter() - t0)
        print(
            f"{engine}: median {statistics.median(times) * 1e3:.2f} ms, "
            f"min {min(times) * 1e3:.2f} ms"
        )


if __name__ == "__main__":
    with thread_policy(2):
        main()
