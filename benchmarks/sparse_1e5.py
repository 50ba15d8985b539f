"""A 100,000-neuron, ~10⁶-edge sparse mesh learning scikit-learn's digits.

The topology is ``Topology.sparse_random`` (every hidden neuron reads ``--fan-in`` random pixels
and the bias and feeds one output; the rest of the mean degree 10 is random hidden → hidden
edges), so the inputs reach the outputs in two ticks.  Each engine (sparse ``bptt`` and sparse
FOP ``fop``) trains its own copy of the same initial network with Adam for ``--steps`` steps of
batch 32 in its own process, and reports the median step time, the maximum resident memory of
that process (``ru_maxrss``), the training loss at the start and end, and the accuracy on 397
held-out digits.  The dense layout is asked for the same mesh first and refused by the memory
guard (its error is printed).

Quick check:   PYTHONPATH=src python benchmarks/sparse_1e5.py --neurons 10000 --steps 100
Final figure:  PYTHONPATH=src python benchmarks/sparse_1e5.py            (10⁵ neurons, 300 steps)
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import time

import torch
from sklearn.datasets import load_digits

import meshprop as mp
from meshprop.threads import thread_policy

INPUTS, OUTPUTS, BATCH, TEST = 64, 10, 32, 397


def topology(neurons: int, fan_in: int, seed: int) -> mp.Topology:
    return mp.Topology.sparse_random(
        INPUTS, neurons - INPUTS - 1 - OUTPUTS, OUTPUTS, degree=10, fan_in=fan_in, seed=seed
    )


def train(args: argparse.Namespace) -> dict:
    """One engine's run (in this process): the figures as a dict."""
    X, y = load_digits(return_X_y=True)
    X = torch.tensor(X / 16.0, dtype=torch.float32)
    y = torch.tensor(y)
    order = torch.randperm(len(X), generator=torch.Generator().manual_seed(0))
    test, train_idx = order[:TEST], order[TEST:]
    t0 = time.perf_counter()
    topo = topology(args.neurons, args.fan_in, args.seed)
    build_s = time.perf_counter() - t0
    net = mp.MeshNet(
        topo,
        ticks=args.ticks,
        layout="sparse",
        seed=args.seed,
        activation="tanh",
        output_activation="identity",
    )
    opt = torch.optim.Adam(net.parameters(), lr=args.lr)
    batches = torch.Generator().manual_seed(args.seed)
    times, losses = [], []
    with thread_policy(args.threads):
        for _ in range(args.steps):
            idx = train_idx[torch.randint(0, len(train_idx), (BATCH,), generator=batches)]
            t = time.perf_counter()
            opt.zero_grad()
            loss, g = mp.gradient(net, X[idx], y[idx], method=args.engine)
            net.weight.grad = g
            opt.step()
            times.append(time.perf_counter() - t)
            losses.append(float(loss))
        with torch.no_grad():
            accuracy = float((net(X[test]).argmax(1) == y[test]).float().mean())
    k = max(1, min(20, args.steps // 5))
    return {
        "engine": args.engine,
        "neurons": topo.n_neurons,
        "edges": topo.n_edges,
        "ticks": args.ticks,
        "steps": args.steps,
        "topology_s": round(build_s, 2),
        "median_step_s": statistics.median(times),
        "loss_first": sum(losses[:k]) / k,
        "loss_last": sum(losses[-k:]) / k,
        "test_accuracy": accuracy,
        "max_rss_MiB": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024,
    }


def dense_check(args: argparse.Namespace) -> str:
    """The dense layout asked for the same mesh under a 12 GiB limit: refused, or 'fits'."""
    topo = topology(args.neurons, args.fan_in, args.seed)
    try:
        with mp.memory_limit("12GiB"):
            mp.MeshNet(topo, ticks=args.ticks)
    except mp.MemoryLimitError as error:
        return f"dense layout refused: {error}"
    return "dense layout: fits (12 GiB limit)"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--neurons", type=int, default=100_000)
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--ticks", type=int, default=2)
    parser.add_argument("--fan-in", type=int, default=3)
    parser.add_argument("--lr", type=float, default=3e-3)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--engines", nargs="+", default=["bptt", "fop"])
    parser.add_argument("--engine", help=argparse.SUPPRESS)  # one engine, in this process
    args = parser.parse_args()
    if args.engine == "dense":
        print(json.dumps({"dense": dense_check(args)}), flush=True)
        return
    if args.engine:
        print(json.dumps(train(args)), flush=True)
        return
    # every run in its own process, this one allocating nothing: ru_maxrss is per process (and
    # a child started from a large parent would start from the parent's high-water mark)
    for engine in ["dense", *args.engines]:
        command = [sys.argv[0], *sys.argv[1:], "--engine", engine]
        out = subprocess.run([sys.executable, *command], capture_output=True, text=True)
        if out.returncode:
            print(f"{engine}: failed\n{out.stderr[-2000:]}")
            continue
        r = json.loads(out.stdout.strip().splitlines()[-1])
        if engine == "dense":
            print(r["dense"], flush=True)
            continue
        print(
            f"{engine:5s} median step {r['median_step_s'] * 1e3:8.1f} ms  max RSS "
            f"{r['max_rss_MiB']:6d} MiB  loss {r['loss_first']:.3f} -> {r['loss_last']:.3f} "
            f"(ln 10 = 2.303)  test accuracy {r['test_accuracy']:.3f} ({r['steps']} steps, "
            f"{r['neurons']} neurons, {r['edges']} edges, T = {r['ticks']}, topology built in "
            f"{r['topology_s']} s)",
            flush=True,
        )


if __name__ == "__main__":
    main()
