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
one optimizer step per sequence).  Default network (the prototype's): 1 input, bias,
32 tanh hidden, 1 tanh output, fully connected, 1 tick per element, Adam lr 3e-4 at every
element; default training length 10,000 elements for D ≤ 10, 150,000 for D ≤ 20, 300,000 above.
"""

from __future__ import annotations

import argparse
import json
import math
import resource
import shlex
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from ..atomic import atomic_write_text, atomic_write_with
from ..mesh import MeshNet
from ..runs.artefacts import save_checkpoint_atomically
from ..runs.folder import (
    MANIFEST,
    check_run_folder,
    clear_run_folder,
    new_run_id,
    read_manifest,
    write_manifest,
)
from ..sequence import OnlineLearner, fast_adam, flush_denormals, sequence_gradient
from ..threads import DEFAULT_THREADS, thread_policy
from ..topology import Topology
from .checks import declare_outputs, declare_ranges
from .interrupts import stop_on_signals
from .online_resume import OnlineCheckpoint, OnlineInterruptedError, read_state, write_state
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
#: the settings of a run (config.json) and their defaults; flags left out of ``--resume`` are
#: taken from the run
DEFAULTS: dict[str, Any] = {
    "task": "delayed-recall", "data": None, "column": None, "method": "fop", "truncation": None,
    "delay": 10, "train_ticks": None, "test_ticks": 5000, "sequence_length": None, "hidden": 32,
    "lr": DEFAULT_LR, "init_scale": DEFAULT_INIT_SCALE, "seed": 0, "log_every": 500,
    "dtype": "float32",
}  # fmt: skip
STATE_FILE = "online-state.pt"
CONFIG_FILE = "config.json"
DEFAULT_CHECKPOINT_EVERY = 50_000
#: the files a finished ``meshprop online`` run writes (besides checkpoint/ and the manifest)
OUTPUT_FILES = ("metrics.json", "curve.json", "learning_curve.png")


def default_train_ticks(task: str, delay: int) -> int:
    """Training elements that solved delayed recall in the prototype (prediction: 20,000)."""
    if task != "delayed-recall":
        return 20_000
    return 10_000 if delay <= 10 else 150_000 if delay <= 20 else 300_000


def _setting(parser: argparse.ArgumentParser, option: str, help: str, **kwargs: Any) -> None:
    """An option of the run's settings: not set unless typed (so that ``--resume`` can tell
    the typed ones), its default (:data:`DEFAULTS`) stated in the help."""
    dest = option.lstrip("-").replace("-", "_")
    default = DEFAULTS[dest]
    if default is not None and "default" not in help:
        help = f"{help} (default: {default})"
    parser.add_argument(option, default=argparse.SUPPRESS, help=help.replace("%", "%%"), **kwargs)


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "online",
        help="online learning on a stream (RTRL by FOP, truncated or full BPTT)",
        description=__doc__.split("\n\n")[0] if __doc__ else None,
    )
    _setting(p, "--task", "the stream", choices=TASKS)
    _setting(p, "--data", "predict a CSV column instead of a task", metavar="FILE.csv")
    _setting(p, "--column", "the CSV column (with --data)", metavar="NAME")
    _setting(p, "--method", "gradient method", choices=METHODS)
    _setting(p, "--truncation", "tbptt window (default: max(1, D/2); 10)", type=int)
    _setting(p, "--delay", "delayed recall: D", type=int)
    _setting(p, "--train-ticks", "training elements (default: by task/D)", type=int)
    _setting(p, "--test-ticks", "held-out stream length", type=int)
    _setting(p, "--sequence-length", "bptt: sequence length (default 4·D)", type=int)
    _setting(p, "--hidden", "hidden neurons", type=int)
    _setting(p, "--lr", "Adam learning rate", type=float)
    _setting(
        p,
        "--init-scale",
        "multiplies MeshNet's uniform ±1/√fan-in initial weights (√3: unit variance per "
        "fan-in, recurrent spectral radius ≈ 1)",
        type=float,
    )
    _setting(p, "--seed", "seed of data and weights", type=int)
    _setting(p, "--log-every", "learning-curve resolution", type=int)
    _setting(p, "--dtype", "floating-point type", choices=("float32", "float64"))
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--out", required=True, metavar="DIR", help="output folder")
    p.add_argument(
        "--resume",
        action="store_true",
        help="continue the run in --out from its last saved state (options left out are the "
        "run's; typed ones must equal them)",
    )
    p.add_argument(
        "--overwrite", action="store_true", help="replace the run in --out (its files only)"
    )
    p.add_argument(
        "--checkpoint-every",
        type=int,
        default=DEFAULT_CHECKPOINT_EVERY,
        metavar="N",
        help="save the state every N elements (0: only on SIGINT/SIGTERM)",
    )
    add_threads_option(p, DEFAULT_THREADS)
    p.set_defaults(handler=_handle)
    declare_outputs(p, out="dir")
    declare_ranges(p, checkpoint_every=">= 0")


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
        net.parameter.mul_(init_scale)
    return net


def evaluate(net: MeshNet, stream: Stream) -> dict[str, float]:
    with torch.no_grad():
        y, _ = net.unroll(stream.x_test.to(net.parameter.dtype))
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


def settings_of(args: argparse.Namespace) -> dict[str, Any]:
    """The run's settings (:data:`DEFAULTS`' keys) as ``args`` holds them after
    :func:`check_args`."""
    return {name: getattr(args, name) for name in DEFAULTS}


def run_online(
    args: argparse.Namespace,
    progress: bool = True,
    checkpoint: OnlineCheckpoint | None = None,
) -> tuple[OnlineResult, MeshNet]:
    """Train on the stream by ``args.method``; evaluate; the metrics, the learning curve and
    the trained network.  With ``checkpoint`` the state is saved as it goes and on a stop
    request (then :class:`OnlineInterruptedError`), and a saved one is continued."""
    train_ticks = args.train_ticks or default_train_ticks(args.task, args.delay)
    dtype = getattr(torch, args.dtype)
    stream = make_stream(args, train_ticks)
    net = build_net(args.hidden, args.seed, dtype, args.init_scale)
    optimizer = fast_adam(net.parameters(), args.lr)
    online = args.method in ("fop", "tbptt")
    learner = (
        OnlineLearner(net, optimizer, method=args.method, truncation=args.truncation)
        if online
        else None
    )
    curve: list[dict] = []
    window_loss, window_hits, window_n = 0.0, 0, 0
    first, spent = 0, 0.0  # the first element to train on; seconds spent before (resumed)
    settings = settings_of(args)
    if checkpoint is not None and checkpoint.resume and checkpoint.path.is_file():
        saved = read_state(checkpoint.path, settings)
        with torch.no_grad():
            net.parameter.copy_(saved["weights"])
        optimizer.load_state_dict(saved["optimizer"])
        if learner is not None:
            learner.load_state_dict(saved["learner"])
        curve = list(saved["curve"])
        window_loss, window_hits, window_n = saved["window"]
        first, spent = int(saved["tick"]), float(saved["elapsed"])
    from tqdm import tqdm

    bar = tqdm(total=train_ticks, initial=first, unit="tick", disable=not progress, mininterval=0.5)
    start = time.perf_counter()
    every = checkpoint.every if checkpoint is not None else 0
    next_save = (first // every + 1) * every if every else train_ticks + 1
    stop_requested: Callable[[], bool] = (
        checkpoint.stop_requested
        if checkpoint is not None and checkpoint.stop_requested is not None
        else lambda: False  # (not `or`: a StopRequest is falsy until a signal comes)
    )
    saved_tick = first if checkpoint is not None and first else -1

    def record(t: int) -> None:
        nonlocal window_loss, window_hits, window_n
        if window_n:
            point = {"tick": t, "loss": window_loss / window_n}
            if stream.classification:
                point["accuracy"] = float(window_hits) / window_n
            curve.append(point)
            bar.set_postfix(loss=f"{point['loss']:.3f}")
        window_loss, window_hits, window_n = 0.0, 0, 0

    def save(tick: int) -> None:
        """The state after ``tick`` elements (and a stop request honoured)."""
        nonlocal next_save, saved_tick
        assert checkpoint is not None
        saved_tick = tick
        write_state(
            checkpoint.path,
            settings,
            tick,
            weights=net.parameter.detach().clone(),
            optimizer=optimizer.state_dict(),
            learner=None if learner is None else learner.state_dict(),
            curve=curve,
            window=[window_loss, window_hits, window_n],
            elapsed=spent + time.perf_counter() - start,
        )
        while next_save <= tick:
            next_save += every
        if stop_requested():
            bar.close()
            raise OnlineInterruptedError(tick)

    x, y, m = stream.x_train.to(dtype), stream.y_train.to(dtype), stream.m_train
    if learner is not None:
        masked = m[:, 0].tolist()
        skip = torch.zeros(1, dtype=torch.bool)  # the mask of an element without a target
        log_every = args.log_every
        for t in range(first, train_ticks):
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
                bar.update(t + 1 - bar.n)
            if t + 1 == next_save or stop_requested():
                save(t + 1)
        bar.update(train_ticks - bar.n)
    else:  # offline full BPTT on independent sequences
        S = args.sequence_length
        done = first
        while done < train_ticks:
            L = min(S, train_ticks - done)
            xs, ys, ms = x[done : done + L], y[done : done + L], m[done : done + L].clone()
            if stream.classification:
                ms[: stream.delay] = False  # a fresh zero state: the first D targets are unseen
            if bool(ms.any()):
                seq_loss, dA = sequence_gradient(net, xs, ys, method="bptt", mask=ms)
                net.parameter.grad = dA
                optimizer.step()
                optimizer.zero_grad(set_to_none=True)
                window_loss += float(seq_loss) * int(ms.sum())
                window_n += int(ms.sum())
            done += L
            if done // args.log_every != (done - L) // args.log_every:
                record(done)
            bar.update(L)
            if done >= next_save or stop_requested():
                save(done)
    if checkpoint is not None and saved_tick != train_ticks:
        save(train_ticks)  # a kill while the outputs are written does not train again
    elapsed = spent + time.perf_counter() - start
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
    return OnlineResult(metrics, curve), net


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
    fig.savefig(path, dpi=100, format="png")
    plt.close(fig)


def resolve_settings(args: argparse.Namespace, out: Path, mode: str) -> dict[str, Any] | None:
    """Fill ``args`` with the run's settings: the defaults, or with ``--resume`` the run's
    (config.json), overridden by the options typed, which must equal the run's.  Returns the
    saved settings (None for a new run)."""
    typed = {name: getattr(args, name) for name in DEFAULTS if hasattr(args, name)}
    if typed.get("data") is not None:
        typed["data"] = str(Path(typed["data"]).resolve())
    saved = None
    path = out / CONFIG_FILE
    if mode == "resume" and path.is_file():
        try:
            document = json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as error:
            raise ValueError(f"--resume: {path} is not valid JSON ({error})") from None
        saved = document.get("settings") if isinstance(document, dict) else None
        if not isinstance(saved, dict) or set(saved) != set(DEFAULTS):
            raise ValueError(f"--resume: {path} is not the configuration of a meshprop online run")
    for name, value in {**DEFAULTS, **(saved or {}), **typed}.items():
        setattr(args, name, value)
    check_args(args)  # resolves the defaults that depend on others (truncation, lengths)
    if saved is not None:
        differ = [
            f"--{name.replace('_', '-')} {getattr(args, name)!r} (the run: {saved[name]!r})"
            for name in typed
            if getattr(args, name) != saved[name]
        ]
        if differ:
            raise ValueError(
                f"--resume: options differ from the run in {out}: {', '.join(differ)}; give "
                "the same values, or leave them out to take the run's"
            )
    return saved


def _handle(args: argparse.Namespace) -> int:
    out = Path(args.out)
    mode = check_run_folder(out, args.resume, args.overwrite)  # before any work
    saved = resolve_settings(args, out, mode)
    settings = settings_of(args)
    if mode == "overwrite":
        clear_run_folder(out)
    out.mkdir(parents=True, exist_ok=True)
    run_id = None
    if saved is not None and (out / MANIFEST).is_file():
        run_id = read_manifest(out)["run_id"]
    if run_id is None:  # a new run: its configuration and an incomplete manifest first
        run_id = new_run_id()
        write_manifest(out, run_id)
        atomic_write_text(out / CONFIG_FILE, json.dumps({"settings": settings}, indent=2) + "\n")
    checkpoint = OnlineCheckpoint(
        out / STATE_FILE, every=args.checkpoint_every, resume=saved is not None
    )
    with thread_policy(args.threads), flush_denormals(), stop_on_signals() as stop:
        checkpoint.stop_requested = stop
        try:
            result, net = run_online(args, progress=not args.no_progress, checkpoint=checkpoint)
        except OnlineInterruptedError as interrupted:
            print(
                f"interrupted after element {interrupted.tick}; resume with: meshprop online "
                f"--out {shlex.quote(args.out)} --resume",
                file=sys.stderr,
            )
            return stop.exit_code
    atomic_write_text(out / "metrics.json", json.dumps(result.metrics, indent=2) + "\n")
    atomic_write_text(out / "curve.json", json.dumps(result.curve) + "\n")
    title = f"{result.metrics['task']} · {args.method}"
    atomic_write_with(out / "learning_curve.png", lambda p: plot_curve(result.curve, p, title))
    save_checkpoint_atomically(out / "checkpoint", net, {"online": settings})
    files = [out / name for name in (CONFIG_FILE, STATE_FILE, *OUTPUT_FILES)]
    files += sorted((out / "checkpoint").iterdir())
    write_manifest(out, run_id, [f for f in files if f.is_file()], complete=True)
    shown = {
        k: v
        for k, v in result.metrics.items()
        if k.startswith("test_") or k in ("ticks_per_second", "peak_memory_mib", "train_seconds")
    }
    print(json.dumps(shown, indent=None))
    if stop:
        print(f"{stop.name} received after training: the run finished", file=sys.stderr)
        return stop.exit_code
    return 0
