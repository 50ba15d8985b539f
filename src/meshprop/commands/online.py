"""``meshprop online``: learn from a stream one element at a time (``mp.OnlineLearner``).

Tasks (``meshprop.data.tasks``; each scored on held-out data beside simple baselines):

- ``delayed-recall`` (``--delay D``): input a random ±1 bit per element, target the bit of D
  elements earlier.  Accuracy (sign(y) = target) on a fresh ``--test-ticks`` stream with frozen
  weights; baselines chance and majority class.
- ``copy`` (``--length K``, ``--delay D``): a pattern of K bits, D blanks, then K recall
  elements (a cue input) whose targets are the pattern.  Accuracy on the recall elements.
- ``adding`` (``--length L``): episodes of L (value, marker) pairs; target the sum of the two
  marked values at the last element.  MSE; baseline the training targets' mean.
- ``mackey-glass`` and a CSV series (``--data FILE.csv --column NAME``): predict the value
  ``--horizon H`` steps ahead from the last ``--window W`` values.  The series is split in
  time: the first (1 − ``--test-fraction``) of it (default 70 %) is the training part, streamed
  in order and cycled for as many elements as training takes; the rest is the test part,
  scored (NMSE) by one frozen run over the whole series.  Baselines: persistence (the last
  value) and a ridge AR(5) fitted on the training part.  A blank, NaN or non-number cell is
  refused with its row.

An option that does not apply to the task is refused before anything is written.  With
nothing but ``--task`` (and its length), a network and settings able to learn it are picked
and printed at the start with the task's description: for delayed recall, copy and adding a
learned delay line (``--topology chain``: ReLU features, then a line of identity neurons 1.5 ×
the task's span long whose links start at gain 1, every tap read by the output); for
prediction a full mesh whose input → output edges start at the ridge fit of the window
(``--start linear``) and learn on with a decaying rate (``--lr-decay``).  Methods: ``fop``
(RTRL: exact gradient through the whole past, memory flat), ``snap`` (SnAp-k, ``--order K``:
the sensitivities within K ticks of each edge, the outputs' in full), ``uoro`` (an unbiased
rank-one estimate, its signs seeded by ``--seed``), ``tbptt`` (truncated BPTT through the last
``--truncation`` elements, one optimizer step per element) and ``bptt`` (offline full BPTT on
independent sequences of ``--sequence-length`` elements from a zero state, one step per
sequence).
"""

from __future__ import annotations

import argparse
import json
import math
import resource
import shlex
import sys
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from ..atomic import atomic_write_text, atomic_write_with
from ..data.tasks import TaskStream
from ..devices import DEVICES, require_device
from ..mesh import MeshNet
from ..runs.artefacts import save_checkpoint_atomically
from ..runs.folder import (
    MANIFEST,
    RunFolder,
    clear_run_folder,
    new_run_id,
    read_manifest,
    write_manifest,
)
from ..sequence import OnlineLearner, fast_adam, flush_denormals, sequence_gradient
from ..streams import fop_cost
from ..threads import DEFAULT_THREADS, thread_policy
from .checks import declare_outputs, declare_ranges
from .interrupts import stop_on_signals
from .online_resume import OnlineCheckpoint, OnlineInterruptedError, read_state, write_state
from .online_tasks import (
    DEFAULT_INIT_SCALE,
    SERIES,
    STARTS,
    TASK_CHOICES,
    TOPOLOGIES,
    build_net,
    default_train_ticks,
    describe_network,
    linear_start_,
    make_task,
    output_activation,
    resolve_task,
)
from .options import SHARED_OPTIONS, add_threads_option

__all__ = [
    "DEFAULT_INIT_SCALE",
    "OnlineResult",
    "build_net",
    "default_train_ticks",
    "flush_denormals",
    "register",
    "run_online",
]

DEFAULT_LR = 1e-3  # delayed recall's (online_tasks.TASK_DEFAULTS has every task's)
METHODS = ("fop", "snap", "uoro", "tbptt", "bptt")
#: the methods that learn online (an optimizer step per element); bptt is offline
ONLINE = ("fop", "snap", "uoro", "tbptt")
#: the settings of a run (config.json) and their defaults (None: the task's, see
#: online_tasks.TASK_DEFAULTS; an option of another task stays None); flags left out of
#: ``--resume`` are taken from the run
DEFAULTS: dict[str, Any] = {
    "task": None, "data": None, "column": None, "method": "fop", "truncation": None,
    "order": None,
    "delay": None, "length": None, "horizon": None, "window": None, "test_fraction": None,
    "train_ticks": None, "test_ticks": None, "sequence_length": None, "hidden": None,
    "lr": None, "init_scale": DEFAULT_INIT_SCALE, "seed": 0, "log_every": 500,
    "dtype": "float32", "topology": None, "start": None, "lr_decay": None,
}  # fmt: skip
STATE_FILE = "online-state.pt"
CONFIG_FILE = "config.json"
DEFAULT_CHECKPOINT_EVERY = 50_000
#: the files a finished ``meshprop online`` run writes (besides checkpoint/ and the manifest)
OUTPUT_FILES = ("metrics.json", "curve.json", "learning_curve.png")
#: test elements shown in the plot of the prediction against the target
PLOT_ELEMENTS = 400
#: with a time budget, the clock is read every this many elements
BUDGET_CHECK = 32


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
        help="online learning on a stream (RTRL by FOP, SnAp, UORO, truncated or full BPTT)",
        description=__doc__,
    )
    _setting(p, "--task", "the stream (default: delayed-recall)", choices=TASK_CHOICES)
    _setting(
        p,
        "--data",
        "predict a CSV column instead of a built-in task (split and use: see above)",
        metavar="FILE.csv",
    )
    _setting(p, "--column", "the CSV column (with --data)", metavar="NAME")
    _setting(p, "--method", "gradient method", choices=METHODS)
    _setting(p, "--truncation", "tbptt window (default: max(1, D/2); 10)", type=int)
    _setting(
        p, "--order", "snap: SnAp's k, the ticks of influence kept (default 1)", type=int
    )  # fmt: skip
    _setting(p, "--delay", "delayed-recall, copy: D (default 10; copy 5)", type=int)
    _setting(
        p, "--length", "copy: pattern length K; adding: L (default: 3 for copy, 10 for adding)",
        type=int,
    )  # fmt: skip
    _setting(p, "--horizon", "prediction: steps ahead (default 1)", type=int)
    _setting(p, "--window", "prediction: inputs = the last W values (default 5)", type=int)
    _setting(
        p, "--test-fraction", "prediction: the series' last part held out (default 0.3)",
        type=float,
    )  # fmt: skip
    _setting(
        p, "--train-ticks", "training elements (default: by task: 20,000 recall and copy on "
        "the delay line, 200,000 adding, 100,000 prediction)", type=int,
    )  # fmt: skip
    _setting(
        p, "--test-ticks", "recall, copy, adding: held-out stream length (default 5000)", type=int
    )
    _setting(p, "--sequence-length", "bptt: sequence length (default 4·D; 100)", type=int)
    _setting(
        p, "--hidden", "hidden neurons; for chain and ring the line's length (default: 1.5 × "
        "the task's span on a chain or ring; prediction 16; otherwise 32)", type=int,
    )  # fmt: skip
    _setting(
        p,
        "--topology",
        "the network (default: chain for delayed-recall, copy, adding; full for prediction). "
        "full: fully connected; chain: relu features, then a delay line of --hidden identity "
        "neurons (1.5 × the task's span unless --hidden) read by the output, links started at "
        "gain 1; "
        "ring: a closed tanh chain; self-loops: a tanh layer with self-loops only, started at "
        "1; reservoir: sparse random tanh recurrence at spectral radius 0.9",
        choices=TOPOLOGIES,
    )
    _setting(
        p,
        "--start",
        "initial weights: random (memory tasks' default), or linear (prediction's default: "
        "the output starts as the ridge fit of the target on the window, then learns on)",
        choices=STARTS,
    )
    _setting(p, "--lr", "Adam learning rate (default: by task, 1e-3; 3e-3 adding; 1e-4 "
             "prediction)", type=float)  # fmt: skip
    _setting(
        p,
        "--lr-decay",
        "the learning rate decays exponentially to lr × this by the last training element "
        "(torch LambdaLR; default: 1, constant; 0.01 prediction)",
        type=float,
    )
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
    p.add_argument("--no-progress", action="store_true", help=SHARED_OPTIONS["--no-progress"])
    p.add_argument("--out", required=True, metavar="DIR", help=SHARED_OPTIONS["--out"])
    p.add_argument("--resume", action="store_true", help=SHARED_OPTIONS["--resume"])
    p.add_argument("--overwrite", action="store_true", help=SHARED_OPTIONS["--overwrite"])
    p.add_argument(
        "--checkpoint-every",
        type=int,
        default=DEFAULT_CHECKPOINT_EVERY,
        metavar="N",
        help="save the state every N elements (0: only on SIGINT/SIGTERM)",
    )
    p.add_argument(
        "--device",
        default="cpu",
        choices=DEVICES,
        help="where the network and the stream live: cpu, or cuda (refused before any work "
        "when torch sees no CUDA device) (default: cpu)",
    )
    add_threads_option(p, DEFAULT_THREADS)
    p.set_defaults(handler=_handle)
    declare_outputs(p, out="dir")
    declare_ranges(p, checkpoint_every=">= 0")


def evaluate(net: MeshNet, task: TaskStream) -> tuple[dict[str, Any], torch.Tensor]:
    """The test metric and the baselines of ``task`` for ``net`` (frozen, from a zero state),
    and the outputs of the held-out stream."""
    with torch.no_grad():
        y, _ = net.unroll(task.x_test.to(net.parameter.device, net.parameter.dtype))
    y = y.double().cpu()
    return {task.metric_key: task.score(y), "baselines": dict(task.baselines)}, y


@dataclass
class OnlineResult:
    """The metrics, the learning curve, and the held-out stream's scored elements (the
    first :data:`PLOT_ELEMENTS`: ``{"element": [...], "target": [...], "output": [...]}``)."""

    metrics: dict
    curve: list[dict]
    test_trace: dict[str, list] = field(default_factory=dict)


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
    describe: Callable[[TaskStream, int], None] | None = None,
    task: TaskStream | None = None,
    budget: float | None = None,
) -> tuple[OnlineResult, MeshNet]:
    """Train on the stream by ``args.method``; evaluate; the metrics, the learning curve and
    the trained network.  ``describe(task, train_ticks)`` is called once the task's streams
    are made, before training; ``task``: the streams when already made (by :func:`make_task`
    with these ``args``).  With ``checkpoint`` the state is saved as it goes and on a stop
    request (then :class:`OnlineInterruptedError`), and a saved one is continued.  With
    ``budget`` (seconds) training stops at the first element (sequence, for bptt) that ends
    after that much training time, or at the stream's end; the metrics count the elements
    trained on (the study's equal-time cells; not with ``checkpoint``)."""
    if budget is not None and checkpoint is not None:
        raise ValueError("a time budget and a checkpoint do not go together")
    train_ticks = args.train_ticks or train_ticks_of(args)
    dtype = getattr(torch, args.dtype)
    stream = task if task is not None else make_task(args, train_ticks)
    if describe is not None:
        describe(stream, train_ticks)
    net = build_net(
        args.hidden,
        args.seed,
        dtype,
        args.init_scale,
        inputs=stream.n_inputs,
        output=output_activation(args.task),
        topology=args.topology,
    )
    if args.start == "linear":
        linear_start_(net, stream)
    net = net.to(torch.device(getattr(args, "device", "cpu")))
    optimizer = fast_adam(net.parameters(), args.lr)
    online = args.method in ONLINE
    learner = (
        OnlineLearner(
            net,
            optimizer,
            method=args.method,
            truncation=args.truncation,
            order=args.order,
            seed=args.seed if args.method == "uoro" else None,
        )
        if online
        else None
    )
    if describe is not None and args.method == "fop":  # what exact fop will cost, before it runs
        print(fop_cost(net.topology, 1, dtype).describe(), flush=True)
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
    schedule = lr_schedule(optimizer, args, train_ticks, first)
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

    device = net.parameter.device
    x, y = stream.x_train.to(device, dtype), stream.y_train.to(device, dtype)
    m = stream.m_train.to(device)
    if learner is not None:
        masked = m[:, 0].tolist()
        # the mask of an element without a target
        skip = torch.zeros(1, dtype=torch.bool, device=device)
        log_every = args.log_every
        deadline = math.inf if budget is None else time.perf_counter() + budget
        for t in range(first, train_ticks):
            if t % BUDGET_CHECK == 0 and time.perf_counter() >= deadline:
                train_ticks = t
                break
            if masked[t]:
                value = learner.step(x[t], y[t])
                window_loss += value
                window_n += 1
                # ±1 targets, one output: sign(y) = target ⇔ (y − target)² < 1
                window_hits += value < 1.0
            else:
                learner.step(x[t], y[t], skip)
            if schedule is not None:
                advance(schedule)
            if (t + 1) % log_every == 0:
                record(t + 1)
                bar.update(t + 1 - bar.n)
            if t + 1 == next_save or stop_requested():
                save(t + 1)
        bar.update(train_ticks - bar.n)
    else:  # offline full BPTT on independent sequences
        S = args.sequence_length
        done = first
        deadline = math.inf if budget is None else time.perf_counter() + budget
        while done < train_ticks:
            if time.perf_counter() >= deadline:
                train_ticks = done
                break
            L = min(S, train_ticks - done)
            xs, ys, ms = x[done : done + L], y[done : done + L], m[done : done + L].clone()
            ms[: stream.warmup] = False  # a fresh zero state: targets it cannot know
            if bool(ms.any()):
                seq_loss, dA = sequence_gradient(net, xs, ys, method="bptt", mask=ms)
                net.parameter.grad = dA
                optimizer.step()
                optimizer.zero_grad(set_to_none=True)
                window_loss += float(seq_loss) * int(ms.sum())
                window_n += int(ms.sum())
            done += L
            if schedule is not None:
                advance(schedule)
            if done // args.log_every != (done - L) // args.log_every:
                record(done)
            bar.update(L)
            if done >= next_save or stop_requested():
                save(done)
    if checkpoint is not None and saved_tick != train_ticks:
        save(train_ticks)  # a kill while the outputs are written does not train again
    elapsed = spent + time.perf_counter() - start
    bar.close()
    scores, y_test = evaluate(net, stream)
    metrics = {
        "task": args.task if args.task != SERIES else stream.name,
        "method": args.method,
        "delay": args.delay,
        "truncation": args.truncation,
        "order": args.order,
        "train_ticks": train_ticks,
        "seed": args.seed,
        "train_seconds": elapsed,
        "ticks_per_second": train_ticks / elapsed,
        "peak_memory_mib": _peak_mib(),
        "metric": stream.metric,
        **scores,
    }
    scored = stream.m_test[:, 0].nonzero().flatten()[:PLOT_ELEMENTS]
    trace = {
        "element": scored.tolist(),
        "target": stream.y_test[scored, 0, 0].tolist(),
        "output": y_test[scored, 0, 0].tolist(),
    }
    return OnlineResult(metrics, curve, trace), net


def train_ticks_of(args: argparse.Namespace) -> int:
    """The training elements of resolved ``args``: ``--train-ticks`` or the task's default."""
    return args.train_ticks or default_train_ticks(
        args.task, args.delay, args.length, args.topology
    )


def lr_schedule(
    optimizer: torch.optim.Optimizer, args: argparse.Namespace, train_ticks: int, first: int
) -> torch.optim.lr_scheduler.LambdaLR | None:
    """``--lr-decay``: the learning rate lr · decay^(t / train_ticks) after t training
    elements (online methods step it per element, bptt per sequence of ``S`` elements); None
    for a constant rate.  A resumed run (``first`` elements done) continues the curve."""
    if args.lr_decay == 1.0:
        return None
    per = 1 if args.method in ONLINE else args.sequence_length
    decay = args.lr_decay

    def factor(step: int) -> float:
        return float(decay ** (min(step * per, train_ticks) / train_ticks))

    if first:
        for group in optimizer.param_groups:
            group.setdefault("initial_lr", args.lr)
    steps = first if args.method in ONLINE else -(-first // per)
    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor, last_epoch=steps - 1)


def advance(schedule: torch.optim.lr_scheduler.LRScheduler) -> None:
    """One step of the learning-rate schedule.  The learner steps a FastAdam by
    ``direct_step`` (not ``step()``), which the scheduler's order check cannot see: its
    warning that ``optimizer.step()`` was not called first is wrong here and is silenced."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r"Detected call of `lr_scheduler\.step\(\)`")
        schedule.step()


def check_args(args: argparse.Namespace) -> None:
    """Every argument checked before any work (ValueError naming the option); the task's
    defaults filled in (:func:`~meshprop.commands.online_tasks.resolve_task`)."""
    resolve_task(args)
    for name, low in (
        ("delay", 1), ("length", 1), ("horizon", 1), ("window", 1), ("test_ticks", 1),
        ("hidden", 1), ("log_every", 1),
    ):  # fmt: skip
        value = getattr(args, name)
        if value is not None and value < low:
            raise ValueError(f"--{name.replace('_', '-')} must be >= {low}, got {value}")
    if args.task == "adding" and args.length < 2:
        raise ValueError(f"--length must be >= 2 for the adding problem, got {args.length}")
    if args.test_fraction is not None and not 0.0 < args.test_fraction < 1.0:
        raise ValueError(f"--test-fraction must be in (0, 1), got {args.test_fraction}")
    if args.train_ticks is not None and args.train_ticks < 1:
        raise ValueError(f"--train-ticks must be >= 1, got {args.train_ticks}")
    if args.task == "delayed-recall" and args.test_ticks <= args.delay:
        raise ValueError(f"--test-ticks must exceed --delay ({args.delay}), got {args.test_ticks}")
    if args.task == "copy" and args.test_ticks < 2 * args.length + args.delay:
        raise ValueError(
            f"--test-ticks must hold one episode ({2 * args.length + args.delay}), got "
            f"{args.test_ticks}"
        )
    if args.task == "adding" and args.test_ticks < args.length:
        raise ValueError(f"--test-ticks must be >= --length ({args.length}), got {args.test_ticks}")
    if not (math.isfinite(args.lr) and args.lr > 0):
        raise ValueError(f"--lr must be a positive number, got {args.lr}")
    if not (math.isfinite(args.lr_decay) and 0 < args.lr_decay <= 1):
        raise ValueError(f"--lr-decay must be in (0, 1], got {args.lr_decay}")
    if not (math.isfinite(args.init_scale) and args.init_scale > 0):
        raise ValueError(f"--init-scale must be a positive number, got {args.init_scale}")
    memory = args.delay if args.task == "delayed-recall" else None
    if args.method == "tbptt":
        if args.truncation is None:
            args.truncation = max(1, memory // 2) if memory is not None else 10
        if args.truncation < 1:
            raise ValueError(f"--truncation must be >= 1, got {args.truncation}")
    elif args.truncation is not None:
        raise ValueError("--truncation applies to --method tbptt only")
    if args.method == "snap":
        if args.order is None:
            args.order = 1
        if args.order < 1:
            raise ValueError(f"--order must be >= 1, got {args.order}")
    elif args.order is not None:
        raise ValueError("--order applies to --method snap only")
    if args.method == "bptt":
        if args.sequence_length is None:
            args.sequence_length = 4 * memory if memory is not None else 100
        if args.sequence_length < 2:
            raise ValueError(f"--sequence-length must be >= 2, got {args.sequence_length}")
        if memory is not None and args.sequence_length <= memory:
            raise ValueError(
                f"--sequence-length must exceed --delay ({args.delay}) for full BPTT to see a "
                f"target, got {args.sequence_length}"
            )
    elif args.sequence_length is not None:
        raise ValueError("--sequence-length applies to --method bptt only")


def plot_run(result: OnlineResult, path: Path, title: str) -> None:
    """The learning curve (window-mean training loss, and accuracy for ±1 tasks) beside the
    network's output against the target on the first scored test elements, with the metric
    and the baselines in the legend."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    curve, trace, metrics = result.curve, result.test_trace, result.metrics
    fig, (ax, right) = plt.subplots(1, 2, figsize=(11, 3.8))
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
    metric = metrics.get("metric", "")
    score = metrics.get(f"test_{metric}")
    if trace.get("element"):
        marker = "." if metric != "nmse" else None
        right.plot(trace["element"], trace["target"], color="k", lw=1, marker=marker,
                   label="target")  # fmt: skip
        right.plot(trace["element"], trace["output"], color="C3", lw=1, marker=marker,
                   label=f"network ({metric} {score:.3g})")  # fmt: skip
        for name, value in metrics.get("baselines", {}).items():
            right.plot([], [], " ", label=f"{name}: {value:.3g}")
        right.legend(fontsize=7, loc="upper right")
    right.set_xlabel("test element")
    right.set_title("held-out stream: output against target")
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


def summary_line(metrics: dict[str, Any]) -> str:
    """``test nmse 0.00098 · baselines: persistence 0.022, ridge_ar5 2.2e-05``."""
    metric = metrics["metric"]
    baselines = ", ".join(f"{k} {v:.3g}" for k, v in metrics["baselines"].items())
    return f"test {metric} {metrics[f'test_{metric}']:.3g} · baselines: {baselines}"


def _handle(args: argparse.Namespace) -> int:
    require_device(args.device)
    out = Path(args.out)
    # before any work: a folder of another run (or of another command) is refused
    mode = RunFolder.check(out, "online", resume=args.resume, overwrite=args.overwrite).mode
    saved = resolve_settings(args, out, mode)
    settings = settings_of(args)
    # the data checked (a CSV's cells, the split) before anything is written
    task = make_task(args, train_ticks_of(args))
    if mode == "overwrite":
        clear_run_folder(out)
    out.mkdir(parents=True, exist_ok=True)
    run_id = None
    if saved is not None and (out / MANIFEST).is_file():
        run_id = read_manifest(out)["run_id"]
    if run_id is None:  # a new run: its configuration and an incomplete manifest first
        run_id = new_run_id()
        write_manifest(out, run_id, command="online")
        atomic_write_text(out / CONFIG_FILE, json.dumps({"settings": settings}, indent=2) + "\n")
    checkpoint = OnlineCheckpoint(
        out / STATE_FILE, every=args.checkpoint_every, resume=saved is not None
    )

    def describe(task: TaskStream, train_ticks: int) -> None:
        print(task.description, flush=True)
        print(describe_network(args, task, train_ticks), flush=True)

    with thread_policy(args.threads), flush_denormals(), stop_on_signals() as stop:
        checkpoint.stop_requested = stop
        try:
            result, net = run_online(
                args,
                progress=not args.no_progress,
                checkpoint=checkpoint,
                describe=describe,
                task=task,
            )
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
    atomic_write_with(out / "learning_curve.png", lambda p: plot_run(result, p, title))
    save_checkpoint_atomically(out / "checkpoint", net, {"online": settings})
    files = [out / name for name in (CONFIG_FILE, STATE_FILE, *OUTPUT_FILES)]
    files += sorted((out / "checkpoint").iterdir())
    write_manifest(out, run_id, [f for f in files if f.is_file()], complete=True, command="online")
    shown = {
        k: v
        for k, v in result.metrics.items()
        if k.startswith("test_")
        or k in ("baselines", "ticks_per_second", "peak_memory_mib", "train_seconds")
    }
    print(summary_line(result.metrics))
    print(json.dumps(shown, indent=None))
    if stop:
        print(f"{stop.name} received after training: the run finished", file=sys.stderr)
        return stop.exit_code
    return 0
