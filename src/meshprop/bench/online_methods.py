"""The online methods side by side: ticks per second and how close each gradient is to RTRL's.

:func:`compare_methods` streams one random sparse mesh per size through ``mp.OnlineLearner``
with every online method — "fop" (exact RTRL), "snap" (SnAp-1, SnAp-2), "uoro" and "tbptt" —
with the weights frozen (SGD, lr = 0) and one optimizer update at the end, so that each method's
gradient of the whole stream's mean loss can be compared with the exact one (method "fop") by
cosine similarity.  Beside each method's ticks per second stands the plain inference rate of the
same mesh (``Layout.unroll`` one element at a time from the carried state), measured in the same
process right before: compare the ratio, not the absolute figures.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

import torch

from ..mesh import MeshNet
from ..sequence import OnlineLearner
from ..threads import thread_policy
from ..topology import Topology

__all__ = ["METHODS", "compare_methods"]

#: (row name, OnlineLearner method, its options)
METHODS: tuple[tuple[str, str, dict[str, int]], ...] = (
    ("fop", "fop", {}),
    ("snap-1", "snap", {"order": 1}),
    ("snap-2", "snap", {"order": 2}),
    ("uoro", "uoro", {"seed": 0}),
    ("tbptt-4", "tbptt", {"truncation": 4}),
)


def _stream(inputs: int, length: int, delay: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Random inputs (L, 1, I) and the target: the first input ``delay`` elements ago."""
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(length, 1, inputs, generator=gen, dtype=torch.float64)
    target = torch.roll(x[:, :, :1], delay, dims=0)
    target[:delay] = 0
    return x, target


def _inference_rate(net: MeshNet, x: torch.Tensor) -> float:
    """Ticks per second of the forward pass alone, one element at a time from the carried
    state (``Layout.unroll``: no validation, no gradient)."""
    storage, dyn, theta = net.storage, net.dynamics, net.parameter.detach()
    h = net.initial_state(x.shape[1])
    start = time.perf_counter()
    with torch.no_grad():
        for t in range(x.shape[0]):
            _, h = storage.unroll(dyn, theta, x[t : t + 1], h)
    return x.shape[0] * net.ticks / (time.perf_counter() - start)


def compare_methods(
    hidden: Sequence[int] = (16, 64, 256),
    degree: int = 4,
    length: int = 200,
    ticks: int = 1,
    delay: int = 2,
    threads: int = 1,
    seed: int = 0,
    layout: str = "sparse",
) -> list[dict]:
    """Rows {workload, method, hidden, neurons, edges, ticks, ticks_per_second,
    inference_ticks_per_second, cosine}: one stream of ``length`` elements per method and size
    (module docstring); ``cosine`` is the cosine similarity of the method's gradient of the
    stream's mean mse to the exact one (1 for "fop")."""
    rows = []
    with thread_policy(threads):
        for H in hidden:
            topo = Topology.sparse_random(2, H, 1, degree=degree, seed=seed)
            net = MeshNet(
                topo, ticks=ticks, activation="tanh", dtype=torch.float64, seed=seed, layout=layout
            )
            x, target = _stream(2, length, delay, seed)
            exact: torch.Tensor | None = None
            for name, method, options in METHODS:
                inference = _inference_rate(net, x)
                optimizer = torch.optim.SGD(net.parameters(), lr=0.0)
                learner = OnlineLearner(
                    net,
                    optimizer,
                    method=method,
                    update_every=length,
                    truncation=options.get("truncation"),
                    order=options.get("order"),
                    seed=options.get("seed"),
                )
                start = time.perf_counter()
                for t in range(length):
                    learner.step(x[t], target[t])
                elapsed = time.perf_counter() - start
                grad = learner.last_gradient
                assert grad is not None
                grad = net.storage.edge_values(grad)
                if exact is None:
                    exact = grad
                cosine = float(
                    torch.dot(grad, exact) / (grad.norm() * exact.norm()).clamp_min(1e-300)
                )
                rows.append(
                    {
                        "workload": "online-methods",
                        "method": name,
                        "hidden": H,
                        "neurons": topo.n_neurons,
                        "edges": topo.n_edges,
                        "ticks": length * ticks,
                        "ticks_per_second": length * ticks / elapsed,
                        "inference_ticks_per_second": inference,
                        "cosine": cosine,
                    }
                )
    return rows
