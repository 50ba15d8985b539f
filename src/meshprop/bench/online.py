"""The ``online`` benchmark workload: streams through a MeshNet.

- :func:`throughput`: ticks per second of online FOP (RTRL, ``mp.OnlineLearner`` with method "fop",
  fused torch Adam stepped at every element, denormals flushed) on the delayed-recall network
  (1 input, bias, H tanh hidden, 1 tanh output, fully connected, 1 tick per element, float32,
  one thread) against H, timed in interleaved rounds beside :func:`prototype_rtrl`, a plain
  hand-written RTRL like the first prototype's (8,100 ticks/s at H = 32), so that the two
  share the machine's load.
- :func:`stream_peak`: peak extra resident memory against the stream length L for online FOP (a
  stream of L elements through the learner, its input drawn chunk by chunk: flat in L) and full
  BPTT (``sequence_gradient`` over one sequence of L elements: the stored trajectory grows with
  L; lengths above ``bptt_max`` are skipped), each (method, L) in a fresh process, or with
  ``per_method=True`` each method's lengths in one process, the longest first::

      python -m meshprop.bench.online METHOD LENGTH[,LENGTH...] HIDDEN

  prints ``{"length": ..., "peak_bytes": ...}`` per length: VmHWM − VmRSS, the resident set's
  high-water mark (reset by /proc/self/clear_refs after a 50-element warm-up) minus the
  resident set before the run, with
  glibc told to mmap every block above 128 KiB so that torch's CPU allocations show (tracemalloc
  does not see them).  Linux only.
"""

from __future__ import annotations

import gc
import json
import sys
import time
from collections.abc import Callable, Sequence

import torch

from ..data.tasks import delayed_recall
from ..mesh import MeshNet
from ..sequence import OnlineLearner, fast_adam, flush_denormals, sequence_gradient
from ..threads import thread_policy
from ..topology import Topology
from .peak import probe_environment, run_probe

__all__ = [
    "DEFAULT_HIDDEN",
    "DEFAULT_LENGTHS",
    "prototype_rtrl",
    "stream_peak",
    "throughput",
]

DEFAULT_HIDDEN = (8, 16, 32, 64)
DEFAULT_LENGTHS = (10**3, 10**4, 10**5, 10**6)
#: full BPTT stores the whole trajectory: longer streams are not run by default
BPTT_MAX_LENGTH = 10**5
_CHUNK = 1_000  # online FOP draws its input stream chunk by chunk


def _net(hidden: int) -> MeshNet:
    topo = Topology.random(1, hidden, 1, density=1.0, bias=True, seed=0)
    return MeshNet(topo, ticks=1, activation="tanh", dtype=torch.float32, seed=0)


def _bits(n: int, seed: int = 0) -> torch.Tensor:
    """The input of a delayed-recall stream of ``n`` elements (``meshprop.data.tasks``), float32
    (L, 1, 1)."""
    return delayed_recall(delay=1, train_ticks=n, test_ticks=2, seed=seed).x_train.float()


def prototype_rtrl(hidden: int, delay: int = 10) -> Callable[[torch.Tensor, int], None]:
    """A plain hand-written RTRL step (the kind the first prototype measured): Z[i, j, o] of
    a full mesh, einsum for Z A_f, a fresh tensor per operation, torch Adam at every element.
    Returns step(bits, t) for the delayed-recall stream ``bits`` (L, 1, 1)."""
    N, F, C = hidden + 3, hidden + 1, 2
    gen = torch.Generator().manual_seed(0)
    A = torch.nn.Parameter((torch.rand(N, F, generator=gen) * 2 - 1) / N**0.5)
    optimizer = torch.optim.Adam([A], lr=3e-4)
    diagonal = torch.arange(F)
    h, Z = torch.zeros(F), torch.zeros(N, F, F)

    def step(bits: torch.Tensor, t: int) -> None:
        nonlocal h, Z
        W = A.detach()
        S = torch.cat([bits[t, 0], torch.ones(1), h])
        h = torch.tanh(S @ W)
        Z = torch.einsum("ijk,kl->ijl", Z, W[C:])
        Z[:, diagonal, diagonal] += S[:, None]
        Z = Z * (1 - h * h)
        if t >= delay:
            A.grad = (Z[:, :, -1] * (2 * (h[-1] - bits[t - delay, 0, 0]))).clone()
            optimizer.step()
            optimizer.zero_grad()

    return step


def _lean_step(learner: OnlineLearner, delay: int) -> Callable[[torch.Tensor, int], None]:
    def step(bits: torch.Tensor, t: int) -> None:
        learner.step(bits[t], bits[t - delay])

    return step


def throughput(
    hidden: Sequence[int] = DEFAULT_HIDDEN,
    ticks: int = 2000,
    threads: int = 1,
    rounds: int = 5,
    prototype: bool = True,
) -> list[dict]:
    """Rows {workload, method, hidden, neurons, edges, ticks, ticks_per_second}: online FOP
    ("fop") and, with ``prototype``, :func:`prototype_rtrl` ("prototype"), ``rounds`` rounds
    of ``ticks`` elements each, interleaved; ticks/s of the whole."""
    rows = []
    delay = 10
    with thread_policy(threads), flush_denormals():
        for H in hidden:
            net = _net(H)
            learner = OnlineLearner(net, fast_adam(net.parameters(), lr=3e-4))
            x = _bits(rounds * ticks + delay + 100)

            steps = {"fop": _lean_step(learner, delay)}
            if prototype:
                steps["prototype"] = prototype_rtrl(H, delay)
            elapsed = dict.fromkeys(steps, 0.0)
            for step in steps.values():  # warm-up
                for t in range(delay, delay + 100):
                    step(x, t)
            for r in range(rounds):
                begin = delay + 100 + r * ticks
                for name, step in steps.items():
                    start = time.perf_counter()
                    for t in range(begin, begin + ticks):
                        step(x, t)
                    elapsed[name] += time.perf_counter() - start
            parts = _breakdown(learner, x, ticks)
            for name in steps:
                rows.append(
                    {
                        "workload": "online",
                        "method": name,
                        "hidden": H,
                        "neurons": net.topology.n_neurons,
                        "edges": net.topology.n_edges,
                        "ticks": rounds * ticks,
                        "ticks_per_second": rounds * ticks / elapsed[name],
                        **(parts if name == "fop" else {}),
                    }
                )
    return rows


def _mean_us(fn: Callable[[], object], n: int) -> float:
    start = time.perf_counter()
    for _ in range(n):
        fn()
    return (time.perf_counter() - start) / n * 1e6


def _breakdown(learner: OnlineLearner, x: torch.Tensor, n: int) -> dict[str, float]:
    """What bounds a step (µs each, mean of n): the (F×F)·(F×P) sensitivity product alone
    (the RTRL work, P·F² multiply-adds per tick, O(F⁴) on a full mesh), the whole
    forward-and-sensitivity part of the step (the RTRL carry's ``advance``),
    ``optimizer.step()`` alone, and the same Adam step as the learner makes it
    (``FastAdam.direct_step``: torch's functional Adam called directly)."""
    carry = learner._carry
    stepper = getattr(carry, "stepper", None)
    if carry is None or stepper is None:
        return {}
    matrix, Mt, out = stepper.bank.matrix, stepper.Mt_matrix, stepper.spare.matrix
    if matrix is None or out is None:  # B > 1: no single product to time
        return {}
    theta = learner.net.parameter
    return {
        "us_sensitivity_product": _mean_us(lambda: torch.mm(Mt, matrix, out=out), n),
        "us_advance": _mean_us(lambda: carry.advance(theta, x[0]), n),
        "us_optimizer_step": _mean_us(learner.optimizer.step, n),
        "us_learner_adam_step": _mean_us(
            getattr(learner.optimizer, "direct_step", learner.optimizer.step), n
        ),
    }


def _status(key: str) -> int:
    with open("/proc/self/status") as handle:
        for line in handle:
            if line.startswith(key + ":"):
                return int(line.split()[1]) * 1024
    raise OSError(f"/proc/self/status has no {key}")


def _run(method: str, length: int, hidden: int) -> None:
    net = _net(hidden)
    if method == "fop":
        learner = OnlineLearner(net, fast_adam(net.parameters(), lr=3e-4))
        previous = torch.zeros(1, 1)
        for start in range(0, length, _CHUNK):  # the input drawn chunk by chunk: flat in L
            n = min(_CHUNK, length - start)
            x = _bits(n, seed=start)
            for t in range(n):
                learner.step(x[t], previous)
                previous = x[t]
    elif method == "bptt":
        x = _bits(length)
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
    bptt_max: int = BPTT_MAX_LENGTH,
    per_method: bool = False,
) -> list[dict]:
    """Rows {workload, method, hidden, length, peak_bytes, seconds}, one fresh process each,
    the methods side by side at each length (full BPTT up to ``bptt_max`` elements).  With
    ``per_method`` one process measures all the lengths of a method, the longest first (its
    run bears whatever a first run costs, so the shorter ones are not favoured by it); each
    length is still measured from its own reset high-water mark (``seconds``: the process's
    time, on its first row)."""
    probe_environment()  # OSError off Linux, before any run
    runs: list[tuple[str, list[int]]] = []
    if per_method:
        for method in methods:
            kept = [n for n in lengths if method != "bptt" or n <= bptt_max]
            if kept:
                runs.append((method, sorted(kept, reverse=True)))
    else:
        runs = [(m, [n]) for n in lengths for m in methods if m != "bptt" or n <= bptt_max]
    rows = []
    for method, group in runs:
        began = time.perf_counter()
        arguments = [method, ",".join(map(str, group)), str(hidden)]
        lines = run_probe("meshprop.bench.online", arguments, "stream probe", timeout)
        seconds = time.perf_counter() - began
        for line in lines[-len(group) :]:
            measured = json.loads(line)
            rows.append(
                {
                    "workload": "online",
                    "method": method,
                    "hidden": hidden,
                    "length": int(measured["length"]),
                    "peak_bytes": int(measured["peak_bytes"]),
                    "seconds": seconds,
                }
            )
            seconds = 0.0
    return rows


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if len(args) != 3:
        print(
            "usage: python -m meshprop.bench.online METHOD LENGTH[,LENGTH...] HIDDEN",
            file=sys.stderr,
        )
        return 2
    with thread_policy(1), flush_denormals():
        for length in (int(n) for n in args[1].split(",")):
            peak = peak_here(args[0], length, int(args[2]))
            print(json.dumps({"length": length, "peak_bytes": peak}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
