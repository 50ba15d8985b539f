"""``meshprop online``: learn from a stream one element at a time (``mp.OnlineLearner``).

Tasks:

- ``delayed-recall``: the input at tick t is a random bit b_t = ±1; the target is the bit shown
  D ticks earlier, b_{t−D} (no loss for t < D).  MSE on the ±1 bits; accuracy = sign(y) = target
  on a fresh held-out stream of ``--test-ticks`` elements with frozen weights, started from 0.
- ``mackey-glass`` (or ``--data FILE.csv --column NAME``): one-step-ahead prediction of a series
  standardised with its training part (the first 70 %); the training part is streamed (cycled
  when ``--train-ticks`` exceeds it); test NMSE = mean((y − x)²)/var(x) over the last 30 %,
  predicted by one frozen run over the whole series.

Methods: ``fop`` (RTRL: exact gradient through the whole past, memory flat), ``tbptt`` (truncated
BPTT through the last ``--truncation`` elements, one optimizer step per element) and ``bptt``
(offline full BPTT: independent sequences of ``--sequence-length`` elements from a zero state,
one optimizer step per sequence).  Default network (the prototype of issue 10): 1 input, bias,
32 tanh hidden, 1 tanh output, fully connected, 1 tick per element, Adam lr 3e-4 at every
element; default training length 10,000 elements for D ≤ 10, 150,000 for D ≤ 20, 300,000 above.
"""

from __future__ import annotations

import argparse
import json
import math
import resource
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch

from ..mesh import MeshNet
from ..sequence import OnlineLearner, fast_adam, flush_denormals, sequence_gradient
from ..threads import DEFAULT_THREADS, thread_policy
from ..topology import Topology
from .checks import declare_outputs
from .options import add_threads_option

__all__ = [
    "OnlineResult",
    "Stream",
    "build_net",
    "default_train_ticks",
    "flush_denormals",
    "register",
    "run_online",
]

TASKS = ("delayed-recall", "mackey-glass")
DEFAULT_LR = 3e-4
DEFAULT_INIT_SCALE = math.sqrt(3.0)
METHODS = ("fop", "tbptt", "bptt")


def default_train_ticks(task: str, delay: int) -> int:
    """Training elements that solved delayed recall in the prototype (prediction: 20,000)."""
    if task != "delayed-recall":
        return 20_000
    return 10_000 if delay <= 10 else 150_000 if delay <= 20 else 300_000


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "online",
        help="online learning on a stream (RTRL by FOP, truncated or full BPTT)",
        description=__doc__.split("\n\n")[0] if __doc__ else None,
    )
    p.add_argument("--task", choices=TASKS, default="delayed-recall", help="the stream")
    p.add_argument("--data", metavar="FILE.csv", help="predict a CSV column instead of a task")
    p.add_argument("--column", metavar="NAME", help="the CSV column (with --data)")
    p.add_argument("--method", choices=METHODS, default="fop", help="gradient method")
    p.add_argument("--truncation", type=int, help="tbptt window (default: max(1, D/2); 10)")
    p.add_argument("--delay", type=int, default=10, help="delayed recall: D")
    p.add_argument("--train-ticks", type=int, help="training elements (default: by task/D)")
    p.add_argument("--test-ticks", type=int, default=5000, help="held-out stream length")
    p.add_argument("--sequence-length", type=int, help="bptt: sequence length (default 4·D)")
    p.add_argument("--hidden", type=int, default=32, help="hidden neurons")
    p.add_argument("--lr", type=float, default=DEFAULT_LR, help="Adam learning rate")
    p.add_argument(
        "--init-scale",
        type=float,
        default=DEFAULT_INIT_SCALE,
        help="multiplies MeshNet's uniform ±1/√fan-in initial weights (√3: unit variance "
        "per fan-in, recurrent spectral radius ≈ 1)",
    )
    p.add_argument("--seed", type=int, default=0, help="seed of data and weights")
    p.add_argument("--log-every", type=int, default=500, help="learning-curve resolution")
    p.add_argument(
        "--dtype", choices=("float32", "float64"), default="float32", help="floating-point type"
    )
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--out", required=True, metavar="DIR", help="output folder")
    add_threads_option(p, DEFAULT_THREADS)
    p.set_defaults(handler=_handle)
    declare_outputs(p, out="dir")


@dataclass
class Stream:
    """A training stream and a held-out evaluation of a network on the task."""

    task: str
    classification: bool
    x_train: torch.Tensor  # (T, 1, 1)
    y_train: torch.Tensor  # (T, 1, 1)
    m_train: torch.Tensor  # (T, 1) bool
    x_test: torch.Tensor
    y_test: torch.Tensor
    m_test: torch.Tensor
    delay: int = 0
    extras: dict = field(default_factory=dict)


def _recall(n: int, delay: int, gen: torch.Generator) -> tuple[torch.Tensor, ...]:
    bits = torch.randint(0, 2, (n,), generator=gen).double() * 2 - 1
    target = torch.zeros(n, dtype=torch.float64)
    target[delay:] = bits[: n - delay]
    mask = torch.arange(n) >= delay
    return bits.view(n, 1, 1), target.view(n, 1, 1), mask.view(n, 1)


def make_stream(args: argparse.Namespace, train_ticks: int) -> Stream:
    gen = torch.Generator().manual_seed(args.seed)
    if args.data is None and args.task == "delayed-recall":
        x, y, m = _recall(train_ticks, args.delay, gen)
        xt, yt, mt = _recall(args.test_ticks, args.delay, gen)
        return Stream("delayed-recall", True, x, y, m, xt, yt, mt, args.delay)
    if args.data is not None:
        from .timeseries import load_series

        series = load_series(args.data, args.column)
        name = f"{Path(args.data).name}:{args.column}"
    else:
        from ..diagram.series import mackey_glass

        series = mackey_glass(2000, tau=17.0, sample_every=1.0)
        name = "mackey-glass"
    if len(series) < 20:
        raise ValueError(f"the series has {len(series)} values; at least 20 are needed")
    n_train = int(0.7 * len(series))
    mean, std = series[:n_train].mean(), series[:n_train].std()
    if std == 0:
        raise ValueError("the training part of the series is constant")
    z = torch.as_tensor((series - mean) / std, dtype=torch.float64)
    idx = torch.arange(train_ticks) % (n_train - 1)
    x = z[idx].view(-1, 1, 1)
    y = z[idx + 1].view(-1, 1, 1)
    m = torch.ones(train_ticks, 1, dtype=torch.bool)
    whole_x, whole_y = z[:-1].view(-1, 1, 1), z[1:].view(-1, 1, 1)
    test = torch.arange(len(z) - 1) >= n_train - 1
    return Stream(name, False, x, y, m, whole_x, whole_y, test.view(-1, 1))


def build_net(
    hidden: int, seed: int, dtype: torch.dtype, init_scale: float = DEFAULT_INIT_SCALE
) -> MeshNet:
    """1 input, bias, ``hidden`` tanh, 1 tanh output, fully connected (self-loops and output
    feedback included), 1 tick per element; MeshNet's initial weights times ``init_scale``."""
    topo = Topology.random(1, hidden, 1, density=1.0, bias=True, seed=seed)
    net = MeshNet(topo, ticks=1, activation="tanh", dtype=dtype, seed=seed)
    with torch.no_grad():
        net.A.mul_(init_scale)
    return net


def evaluate(net: MeshNet, stream: Stream) -> dict[str, float]:
    with torch.no_grad():
        y, _ = net.unroll(stream.x_test.to(net.A.dtype))
    y = y.double()
    m = stream.m_test
    if stream.classification:
        correct = (torch.sign(y) == stream.y_test)[..., 0][m]
        return {"test_accuracy": float(correct.double().mean())}
    err = ((y - stream.y_test)[..., 0][m] ** 2).mean()
    return {"test_nmse": float(err / stream.y_test[..., 0][m].var(unbiased=False))}


@dataclass
class OnlineResult:
    metrics: dict
    curve: list[dict]


def _peak_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def run_online(args: argparse.Namespace, progress: bool = True) -> OnlineResult:
    """Train on the stream by ``args.method``; evaluate; the metrics and the learning curve."""
    train_ticks = args.train_ticks or default_train_ticks(args.task, args.delay)
    dtype = getattr(torch, args.dtype)
    stream = make_stream(args, train_ticks)
    net = build_net(args.hidden, args.seed, dtype, args.init_scale)
    optimizer = fast_adam(net.parameters(), args.lr)
    curve: list[dict] = []
    from tqdm import tqdm

    bar = tqdm(total=train_ticks, unit="tick", disable=not progress, mininterval=0.5)
    window_loss, window_hits, window_n = 0.0, 0, 0
    start = time.perf_counter()

    def record(t: int) -> None:
        nonlocal window_loss, window_hits, window_n
        if window_n:
            point = {"tick": t, "loss": window_loss / window_n}
            if stream.classification:
                point["accuracy"] = float(window_hits) / window_n
            curve.append(point)
            bar.set_postfix(loss=f"{point['loss']:.3f}")
        window_loss, window_hits, window_n = 0.0, 0, 0

    x, y, m = stream.x_train.to(dtype), stream.y_train.to(dtype), stream.m_train
    if args.method in ("fop", "tbptt"):
        learner = OnlineLearner(net, optimizer, method=args.method, truncation=args.truncation)
        masked = m[:, 0].tolist()
        skip = torch.zeros(1, dtype=torch.bool)  # the mask of an element without a target
        log_every, shown = args.log_every, 0
        for t in range(train_ticks):
            if masked[t]:
                value = learner.step(x[t], y[t])
                window_loss += value
                window_n += 1
                # ±1 targets, one output: sign(y) = target ⇔ (y − target)² < 1
                window_hits += value < 1.0
            else:
                learner.step(x[t], y[t], skip)
            if (t + 1) % log_every == 0:
                record(t + 1)
                bar.update(t + 1 - shown)
                shown = t + 1
        bar.update(train_ticks - shown)
    else:  # offline full BPTT on independent sequences
        S = args.sequence_length
        done = 0
        while done < train_ticks:
            L = min(S, train_ticks - done)
            xs, ys, ms = x[done : done + L], y[done : done + L], m[done : done + L].clone()
            if stream.classification:
                ms[: stream.delay] = False  # a fresh zero state: the first D targets are unseen
            if bool(ms.any()):
                seq_loss, dA = sequence_gradient(net, xs, ys, method="bptt", mask=ms)
                net.A.grad = dA
                optimizer.step()
                optimizer.zero_grad(set_to_none=True)
                window_loss += float(seq_loss) * int(ms.sum())
                window_n += int(ms.sum())
            done += L
            if done // args.log_every != (done - L) // args.log_every:
                record(done)
            bar.update(L)
    elapsed = time.perf_counter() - start
    bar.close()
    metrics = {
        "task": stream.task,
        "method": args.method,
        "delay": stream.delay if stream.classification else None,
        "truncation": args.truncation,
        "train_ticks": train_ticks,
        "seed": args.seed,
        "train_seconds": elapsed,
        "ticks_per_second": train_ticks / elapsed,
        "peak_memory_mib": _peak_mib(),
        **evaluate(net, stream),
    }
    return OnlineResult(metrics, curve)


def check_args(args: argparse.Namespace) -> None:
    """Every argument checked before any work (ValueError naming the option)."""
    if args.data is not None and args.column is None:
        raise ValueError("--data needs --column NAME")
    if args.column is not None and args.data is None:
        raise ValueError("--column applies with --data FILE.csv only")
    if args.data is not None and not Path(args.data).is_file():
        raise FileNotFoundError(f"no such file: {args.data}")
    if args.data is not None and args.task == "delayed-recall":
        args.task = "mackey-glass"  # --data replaces the built-in task by a prediction task
    for name, low in (("delay", 1), ("test_ticks", 1), ("hidden", 1), ("log_every", 1)):
        if getattr(args, name) < low:
            raise ValueError(
                f"--{name.replace('_', '-')} must be >= {low}, got {getattr(args, name)}"
            )
    if args.train_ticks is not None and args.train_ticks < 1:
        raise ValueError(f"--train-ticks must be >= 1, got {args.train_ticks}")
    if args.task == "delayed-recall" and args.test_ticks <= args.delay:
        raise ValueError(f"--test-ticks must exceed --delay ({args.delay}), got {args.test_ticks}")
    if not (math.isfinite(args.lr) and args.lr > 0):
        raise ValueError(f"--lr must be a positive number, got {args.lr}")
    if not (math.isfinite(args.init_scale) and args.init_scale > 0):
        raise ValueError(f"--init-scale must be a positive number, got {args.init_scale}")
    if args.method == "tbptt":
        if args.truncation is None:
            args.truncation = max(1, args.delay // 2) if args.task == "delayed-recall" else 10
        if args.truncation < 1:
            raise ValueError(f"--truncation must be >= 1, got {args.truncation}")
    elif args.truncation is not None:
        raise ValueError("--truncation applies to --method tbptt only")
    if args.method == "bptt":
        if args.sequence_length is None:
            args.sequence_length = 4 * args.delay if args.task == "delayed-recall" else 100
        if args.sequence_length < 2:
            raise ValueError(f"--sequence-length must be >= 2, got {args.sequence_length}")
        if args.task == "delayed-recall" and args.sequence_length <= args.delay:
            raise ValueError(
                f"--sequence-length must exceed --delay ({args.delay}) for full BPTT to see a "
                f"target, got {args.sequence_length}"
            )
    elif args.sequence_length is not None:
        raise ValueError("--sequence-length applies to --method bptt only")


def plot_curve(curve: list[dict], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.5))
    ticks = [p["tick"] for p in curve]
    ax.plot(ticks, [p["loss"] for p in curve], color="C0", label="loss")
    ax.set_xlabel("ticks (stream elements)")
    ax.set_ylabel("training loss (window mean)")
    if curve and "accuracy" in curve[0]:
        twin = ax.twinx()
        twin.plot(ticks, [p["accuracy"] for p in curve], color="C1", label="accuracy")
        twin.set_ylabel("training accuracy")
        twin.set_ylim(0, 1.02)
    ax.set_title(title)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def _handle(args: argparse.Namespace) -> int:
    check_args(args)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    with thread_policy(args.threads), flush_denormals():
        result = run_online(args, progress=not args.no_progress)
    (out / "metrics.json").write_text(json.dumps(result.metrics, indent=2) + "\n")
    (out / "curve.json").write_text(json.dumps(result.curve) + "\n")
    title = f"{result.metrics['task']} · {args.method}"
    plot_curve(result.curve, out / "learning_curve.png", title)
    shown = {
        k: v
        for k, v in result.metrics.items()
        if k.startswith("test_") or k in ("ticks_per_second", "peak_memory_mib", "train_seconds")
    }
    print(json.dumps(shown, indent=None))
    return 0
