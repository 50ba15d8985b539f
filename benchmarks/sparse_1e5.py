"""A 100,000-neuron, 10^6-edge sparse mesh on scikit-learn digits: 30 Adam steps with bptt and
sparse FOP, median step time and max RSS (issue 15).

Run: PYTHONPATH=src python benchmarks/sparse_1e5.py
"""

import resource
import time

import torch
from sklearn.datasets import load_digits

import meshprop as mp
from meshprop.threads import thread_policy

X, y = load_digits(return_X_y=True)
X = torch.tensor(X / 16.0, dtype=torch.float32)
y = torch.tensor(y)
t0 = time.perf_counter()
topo = mp.Topology.random(64, 100_000 - 75, 10, density=10 / 99_935, seed=0)
print("topology", topo.n_neurons, topo.n_edges, f"{time.perf_counter() - t0:.1f}s", flush=True)
try:
    with mp.memory_limit("12GiB"):
        mp.MeshNet(topo, ticks=2)
except mp.MemoryLimitError as e:
    print("dense refused:", str(e)[:160])
with thread_policy(1):
    for engine in ("bptt", "fop"):
        net = mp.MeshNet(
            topo, ticks=2, layout="sparse", seed=0, activation="tanh", output_activation="identity"
        )
        opt = torch.optim.Adam(net.parameters(), lr=1e-2)
        times = []
        losses = []
        for _step in range(30):
            idx = torch.randint(0, len(X), (32,))
            t = time.perf_counter()
            opt.zero_grad()
            loss, g = mp.gradient(net, X[idx], y[idx], method=engine)
            net.weight.grad = g
            opt.step()
            times.append(time.perf_counter() - t)
            losses.append(float(loss))
        with torch.no_grad():
            acc = float((net(X).argmax(1) == y).float().mean())
        times.sort()
        print(
            engine,
            f"median step {times[len(times) // 2] * 1e3:.0f} ms",
            "loss first/last5",
            f"{sum(losses[:5]) / 5:.3f} {sum(losses[-5:]) / 5:.3f}",
            f"acc {acc:.3f}",
            "maxrss MiB",
            resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024,
            flush=True,
        )
