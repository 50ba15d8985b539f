"""The experiment of ``meshprop online``: learn from a stream one element at a time
(``mp.OnlineLearner``; offline full BPTT on sequences for ``bptt``), then score the network on
the task's held-out part beside its baselines (:func:`run_online`), for a configuration
:class:`~meshprop.runs.online_config.OnlineConfig`.

Given a run folder, the state (:mod:`meshprop.runs.online_state`) is saved into it every
``checkpoint_every`` elements and when a stop is requested, and a resumed folder continues
from it with bit-identical weights, curve and metrics; :func:`write_online_run` writes the
outputs and completes the folder's manifest.
"""

from __future__ import annotations

import math
import resource
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch

from ..data.tasks import TaskStream
from ..mesh import MeshNet
from ..sequence import OnlineLearner, fast_adam, sequence_gradient
from ..streams import fop_cost
from .folder import RunFolder
from .online_config import ONLINE, OnlineConfig, state_settings
from .online_networks import build_net
from .online_state import STATE_FILE, OnlineInterruptedError, read_state, write_state
from .online_tasks import SERIES, linear_start_, make_task, output_activation

__all__ = [
    "PLOT_ELEMENTS",
    "OnlineResult",
    "advance",
    "evaluate",
    "lr_schedule",
    "run_online",
]

#: test elements shown in the plot of the prediction against the target
PLOT_ELEMENTS = 400
#: with a time budget, the clock is read every this many elements
BUDGET_CHECK = 32


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


def run_online(
    config: OnlineConfig,
    progress: bool = True,
    folder: RunFolder | None = None,
    stop_requested: Callable[[], bool] | None = None,
    describe: Callable[[TaskStream, int], None] | None = None,
    task: TaskStream | None = None,
    budget: float | None = None,
) -> tuple[OnlineResult, MeshNet]:
    """Train on the stream by ``config.method``; evaluate; the metrics, the learning curve and
    the trained network.  ``describe(task, train_ticks)`` is called once the task's streams
    are made, before training; ``task``: the streams when already made (by :func:`make_task`
    with this ``config``).  With a run ``folder`` the state is saved into it every
    ``config.checkpoint_every`` elements, at the end of training, and when
    ``stop_requested()`` turns true (polled after every element, or sequence for bptt; then
    :class:`OnlineInterruptedError`); a resumed folder's saved state is continued.  With
    ``budget`` (seconds) training stops at the first element (sequence, for bptt) that ends
    after that much training time, or at the stream's end; the metrics count the elements
    trained on (the study's equal-time cells; not with a ``folder``)."""
    if budget is not None and folder is not None:
        raise ValueError("a time budget and a run folder do not go together")
    # resolved by OnlineConfig
    assert config.train_ticks is not None and config.hidden is not None
    assert config.task is not None and config.topology is not None and config.lr is not None
    train_ticks = config.train_ticks
    dtype = getattr(torch, config.dtype)
    stream = task if task is not None else make_task(config, train_ticks)
    if describe is not None:
        describe(stream, train_ticks)
    net = build_net(
        config.hidden,
        config.seed,
        dtype,
        config.init_scale,
        inputs=stream.n_inputs,
        output=output_activation(config.task),
        topology=config.topology,
    )
    if config.start == "linear":
        linear_start_(net, stream)
    net = net.to(torch.device(config.device))
    optimizer = fast_adam(net.parameters(), config.lr)
    online = config.method in ONLINE
    learner = (
        OnlineLearner(
            net,
            optimizer,
            method=config.method,
            truncation=config.truncation,
            order=config.order,
            seed=config.seed if config.method == "uoro" else None,
        )
        if online
        else None
    )
    if describe is not None and config.method == "fop":  # what exact fop will cost, before it runs
        print(fop_cost(net.topology, 1, dtype).describe(), flush=True)
    curve: list[dict] = []
    window_loss, window_hits, window_n = 0.0, 0, 0
    first, spent = 0, 0.0  # the first element to train on; seconds spent before (resumed)
    settings = state_settings(config)
    state = None if folder is None else folder.path(STATE_FILE)
    if folder is not None and folder.resuming and state is not None and state.is_file():
        saved = read_state(state, settings)
        with torch.no_grad():
            net.parameter.copy_(saved["weights"])
        optimizer.load_state_dict(saved["optimizer"])
        if learner is not None:
            learner.load_state_dict(saved["learner"])
        curve = list(saved["curve"])
        window_loss, window_hits, window_n = saved["window"]
        first, spent = int(saved["tick"]), float(saved["elapsed"])
    schedule = lr_schedule(optimizer, config, train_ticks, first)
    from tqdm import tqdm

    bar = tqdm(total=train_ticks, initial=first, unit="tick", disable=not progress, mininterval=0.5)
    start = time.perf_counter()
    every = config.checkpoint_every if folder is not None else 0
    next_save = (first // every + 1) * every if every else train_ticks + 1
    stop: Callable[[], bool] = (
        stop_requested
        if folder is not None and stop_requested is not None
        else lambda: False  # (not `or`: a StopRequest is falsy until a signal comes)
    )
    saved_tick = first if folder is not None and first else -1

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
        assert folder is not None and state is not None
        saved_tick = tick
        write_state(
            folder,
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
        if stop():
            bar.close()
            raise OnlineInterruptedError(tick, state)

    device = net.parameter.device
    x, y = stream.x_train.to(device, dtype), stream.y_train.to(device, dtype)
    m = stream.m_train.to(device)
    if learner is not None:
        masked = m[:, 0].tolist()
        # the mask of an element without a target
        skip = torch.zeros(1, dtype=torch.bool, device=device)
        log_every = config.log_every
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
            if t + 1 == next_save or stop():
                save(t + 1)
        bar.update(train_ticks - bar.n)
    else:  # offline full BPTT on independent sequences
        S = config.sequence_length
        assert S is not None
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
            if done // config.log_every != (done - L) // config.log_every:
                record(done)
            bar.update(L)
            if done >= next_save or stop():
                save(done)
    if folder is not None and saved_tick != train_ticks:
        save(train_ticks)  # a kill while the outputs are written does not train again
    elapsed = spent + time.perf_counter() - start
    bar.close()
    scores, y_test = evaluate(net, stream)
    metrics = {
        "task": config.task if config.task != SERIES else stream.name,
        "method": config.method,
        "delay": config.delay,
        "truncation": config.truncation,
        "order": config.order,
        "train_ticks": train_ticks,
        "seed": config.seed,
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


def lr_schedule(
    optimizer: torch.optim.Optimizer, config: OnlineConfig, train_ticks: int, first: int
) -> torch.optim.lr_scheduler.LambdaLR | None:
    """``--lr-decay``: the learning rate lr · decay^(t / train_ticks) after t training
    elements (online methods step it per element, bptt per sequence of ``S`` elements); None
    for a constant rate.  A resumed run (``first`` elements done) continues the curve."""
    decay = config.lr_decay
    if decay is None or decay == 1.0:
        return None
    per = 1 if config.method in ONLINE else config.sequence_length
    assert per is not None

    def factor(step: int) -> float:
        return float(decay ** (min(step * per, train_ticks) / train_ticks))

    if first:
        for group in optimizer.param_groups:
            group.setdefault("initial_lr", config.lr)
    steps = first if config.method in ONLINE else -(-first // per)
    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor, last_epoch=steps - 1)


def advance(schedule: torch.optim.lr_scheduler.LRScheduler) -> None:
    """One step of the learning-rate schedule.  The learner steps a FastAdam by
    ``direct_step`` (not ``step()``), which the scheduler's order check cannot see: its
    warning that ``optimizer.step()`` was not called first is wrong here and is silenced."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r"Detected call of `lr_scheduler\.step\(\)`")
        schedule.step()
