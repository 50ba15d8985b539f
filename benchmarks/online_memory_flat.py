"""Resident memory of online learning over a long stream: exact ``fop`` (or any online method) on
a grid mesh of ``meshprop.bench.online_grid`` with an Adam step after every element, the input
drawn 100,000 elements at a time, VmRSS and VmHWM printed after every 100,000 elements::

    PYTHONPATH=src OMP_NUM_THREADS=1 python benchmarks/online_memory_flat.py \\
        [--topology self-loops] [--hidden 256] [--layout sparse] [--method fop] [--ticks 1000000]

A memory flat in the stream's length prints the same figures on every line."""

from __future__ import annotations

import argparse
import json
import time

import torch

import meshprop as mp
from meshprop.bench.online_grid import GRID_TOPOLOGIES, grid_topology
from meshprop.bench.peak import status_bytes
from meshprop.sequence import fast_adam, flush_denormals
from meshprop.threads import thread_policy

CHUNK = 100_000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--topology", choices=GRID_TOPOLOGIES, default="self-loops")
    parser.add_argument("--hidden", type=int, default=256)
    parser.add_argument("--layout", choices=("dense", "sparse"), default="sparse")
    parser.add_argument("--method", default="fop")
    parser.add_argument("--order", type=int, default=None)
    parser.add_argument("--ticks", type=int, default=1_000_000)
    args = parser.parse_args()
    topo = grid_topology(args.topology, args.hidden)
    net = mp.MeshNet(topo, ticks=1, activation="tanh", dtype=torch.float32, layout=args.layout)
    learner = mp.OnlineLearner(
        net, fast_adam(net.parameters(), lr=1e-3), method=args.method, order=args.order
    )
    gen = torch.Generator().manual_seed(0)
    start = time.perf_counter()
    with thread_policy(1), flush_denormals():
        for done in range(CHUNK, args.ticks + CHUNK, CHUNK):
            x = torch.randn(CHUNK, 1, 1, generator=gen)
            target = torch.roll(x, 2, 0)
            for t in range(CHUNK):
                learner.step(x[t], target[t])
            row = {
                "ticks": done,
                "vm_rss": status_bytes("VmRSS"),
                "vm_hwm": status_bytes("VmHWM"),
                "seconds": round(time.perf_counter() - start, 1),
                "carry": type(learner._carry).__name__,
            }
            print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
