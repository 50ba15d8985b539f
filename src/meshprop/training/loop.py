"""The one training loop: :func:`train_step` on a batch, :func:`evaluate` on a split, and
:func:`fit` over epochs, for any model that maps a batch to outputs and whose parameters get
their gradients from ``loss.backward()`` — a MeshNet (its gradient engine, paper 000), a layered
MLP (its rule, paper 002), a block diagram (its reciprocal network, paper 004), any
``torch.nn.Module``.

Data parallelism (paper 003 §3) is an option of the same step: with ``parallel`` (a
:class:`meshprop.distributed.DataParallel`) each process steps on its shard of the batch and the
gradients are all-reduced, weighted by shard size, before the optimiser step.  All console and
file output goes through a :class:`meshprop.reporting.Reporter`; ``fit`` runs under the one
thread policy (:mod:`meshprop.threads`).
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..distributed import DataParallel
from ..losses import LossFn, check_loss, loss_value, metrics
from ..reporting import Reporter
from ..threads import thread_policy
from .batches import make_loader, model_dtype, prepare_data, sample_axis, to_model, to_target
from .history import EarlyStopping, History
from .inference import outputs
from .optim import build_optimizer
from .resume import (
    TrainingCheckpoint,
    TrainingInterruptedError,
    capture_rng,
    load_training_state,
    loader_generator,
    restore_rng,
    save_training_state,
)

__all__ = ["DivergenceError", "evaluate", "fit", "train_step"]


class DivergenceError(FloatingPointError, ValueError):
    """The loss became NaN or infinite (a ValueError too, so the command reports one line)."""


def _check_finite(value: float) -> None:
    if not math.isfinite(value):
        raise DivergenceError(f"the loss is {value}: training diverged (lower the lr)")


def train_step(
    net: nn.Module,
    optimizer: torch.optim.Optimizer,
    x: torch.Tensor,
    target: torch.Tensor,
    loss: str | LossFn = "cross_entropy",
    before_step: Callable[[nn.Module], Any] | None = None,
    *,
    parallel: DataParallel | None = None,
    batch_dim: int = 0,
) -> float:
    """One optimiser step on a batch: forward, loss, ``loss.backward()`` through the model's own
    reverse pass, [the all-reduce of the gradients over the processes of ``parallel``],
    ``before_step(net)``, step.  Returns the mean loss of the batch (of all shards).

    With ``parallel``, ``x`` and ``target`` are this process's shard (possibly empty: a batch
    smaller than the world leaves some shards without samples).  A non-finite loss raises
    :class:`DivergenceError` before the step (in every process: the reduced loss is NaN too).
    """
    optimizer.zero_grad(set_to_none=True)
    n_local, value = x.shape[batch_dim], 0.0
    if n_local:
        dtype, device = model_dtype(net)
        y = net(to_model(x, dtype, device))
        batch_loss = loss_value(loss, y, to_target(loss, target, dtype, device))
        value = float(batch_loss.detach())
        if parallel is None:
            _check_finite(value)
        batch_loss.backward()
    elif parallel is None:
        raise ValueError("a batch holds no samples")
    if parallel is not None:
        _, value = parallel.all_reduce_gradients(net.parameters(), n_local, value)
        _check_finite(value)
    if before_step is not None:
        before_step(net)
    optimizer.step()
    return value


@torch.no_grad()
def evaluate(
    net: nn.Module,
    X: Any,
    target: Any,
    loss: str | LossFn = "cross_entropy",
    *,
    batch_dim: int | None = None,
) -> dict[str, float]:
    """Loss and metrics (:func:`meshprop.losses.metrics`) of ``net`` on a whole split, without
    gradients: the outputs are computed in chunks of a bounded number of samples
    (:mod:`.inference`) and the metrics on all of them at once, so the result does not depend
    on a batch size.  X and target may be NumPy arrays; ``batch_dim`` as in :func:`fit`."""
    dtype, device = model_dtype(net)
    X = torch.as_tensor(X)
    target = to_target(loss, torch.as_tensor(target), dtype, device)
    y = outputs(net, to_model(X, dtype, device), sample_axis(net, batch_dim))
    return metrics(y, target, loss)


def _check_options(
    net: Any, epochs: Any, early_stopping: Any, val_data: Any, loss: Any
) -> EarlyStopping | None:
    if not isinstance(net, nn.Module):
        raise TypeError(
            "the model must be a torch.nn.Module (a meshprop.MeshNet, a layered MLP, a "
            f"diagram, ...), got {type(net).__name__}"
        )
    check_loss(loss)
    if isinstance(epochs, bool) or not isinstance(epochs, int) or epochs < 1:
        raise ValueError(f"epochs must be a positive integer, got {epochs!r}")
    if isinstance(early_stopping, int) and not isinstance(early_stopping, bool):
        early_stopping = EarlyStopping(patience=early_stopping)
    if early_stopping is not None and not isinstance(early_stopping, EarlyStopping):
        raise TypeError(
            f"early_stopping must be an EarlyStopping, an int patience or None, "
            f"got {type(early_stopping).__name__}"
        )
    if early_stopping is not None and val_data is None:
        raise ValueError("early_stopping monitors the validation loss: pass val_data")
    return early_stopping


def _settings(X: torch.Tensor, batch_size: int, optimizer: torch.optim.Optimizer) -> dict[str, Any]:
    """What a checkpoint must agree on with the run resuming from it."""
    return {
        "samples": int(X.shape[0]),
        "batch_size": batch_size,
        "optimizer": type(optimizer).__name__,
    }


def _restore(
    ckpt: TrainingCheckpoint,
    net: nn.Module,
    opt: torch.optim.Optimizer,
    history: History,
    X: torch.Tensor,
    batch_size: int,
) -> dict[str, Any]:
    """Load ``ckpt.path`` into the model, the optimiser and ``history``; returns the state."""
    path = Path(ckpt.path)
    state = load_training_state(path)
    expected = _settings(X, batch_size, opt)
    if state["settings"] != expected:
        differ = [k for k in expected if state["settings"].get(k) != expected[k]]
        saved = ", ".join(f"{k} {state['settings'].get(k)!r}" for k in differ)
        raise ValueError(f"{path}: the checkpoint was saved by a different run ({saved})")
    try:
        if ckpt.load_extra_state is not None and state["extra"] is not None:
            ckpt.load_extra_state(net, state["extra"])
        net.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
    except (RuntimeError, KeyError, TypeError, IndexError) as error:
        reason = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise ValueError(f"{path}: the checkpoint does not fit this model ({reason})") from None
    saved = state["history"]
    history.records = list(saved["epochs"])
    history.best_epoch = saved["best_epoch"]
    history.stopped_early = bool(saved["stopped_early"])
    history.wall_time_s = float(saved["wall_time_s"])
    if ckpt.restored is not None:
        ckpt.restored(history)
    return state


def fit(
    net: nn.Module,
    train_data: tuple[Any, Any],
    val_data: tuple[Any, Any] | None = None,
    *,
    loss: str | LossFn = "cross_entropy",
    optimizer: str | torch.optim.Optimizer = "adam",
    lr: float = 1e-3,
    momentum: float = 0.0,
    weight_decay: float = 0.0,
    epochs: int = 100,
    batch_size: int = 32,
    seed: int | None = 0,
    early_stopping: EarlyStopping | int | None = None,
    progress: bool = True,
    callback: Callable[[int, nn.Module, dict[str, float]], Any] | None = None,
    reporter: Reporter | None = None,
    loader: Iterable[tuple[torch.Tensor, torch.Tensor]] | None = None,
    before_step: Callable[[nn.Module], Any] | None = None,
    parallel: DataParallel | None = None,
    threads: int | None = None,
    batch_dim: int | None = None,
    evaluate_train: bool = True,
    after_step: Callable[[int, nn.Module, torch.optim.Optimizer, torch.Tensor, torch.Tensor], Any]
    | None = None,
    checkpoint: TrainingCheckpoint | str | Path | None = None,
) -> History:
    """Train ``net`` in place on ``train_data = (X, y)`` and return the :class:`History`.

    Args:
        net: any ``torch.nn.Module`` whose parameters get gradients from ``loss.backward()``:
            a MeshNet, a layered MLP, a block diagram (inputs (T, B, width)), ...
        train_data, val_data: (X, y) as NumPy arrays or tensors; X is converted to the model's
            dtype, y to long labels (cross_entropy) or to the model's dtype (floating targets).
        loss: ``"cross_entropy"`` (y: class indices), ``"mse"`` (y shaped like the output) or a
            callable ``(y, target) -> scalar``.
        optimizer: a name of :data:`OPTIMIZERS` or a ready ``torch.optim`` optimiser.
        epochs, batch_size: passes over the data and samples per optimiser step.
        seed: seeds the shuffling of mini-batches (``None``: seed 0).
        early_stopping: an :class:`EarlyStopping` (or its patience) on the validation loss.
        progress, reporter: the progress bar and where messages go (a silent ``Reporter`` for
            all but one process of a data-parallel run).
        callback: ``callback(epoch, net, record)`` after every epoch.
        loader: batches of your own (identical in every process of a data-parallel run)
            instead of the seeded shuffled mini-batches.
        before_step: ``before_step(net)`` between the backward pass (and all-reduce) and the
            optimiser step.
        parallel: a :class:`meshprop.distributed.DataParallel`: this process trains on its
            shard of every batch, gradients are averaged over the processes.
        threads: torch intra-op threads while training (``None``: ``meshprop.threads``'
            ``DEFAULT_THREADS`` = 1; ``0``: torch's own setting), as the CLI's ``--threads``.
        batch_dim: the samples axis of X and y (default 1 for a Diagram, 0 otherwise).
        evaluate_train: record ``train_*`` metrics on the whole training split after every
            epoch (one extra forward pass per epoch); ``batch_loss``, the mean loss of the
            epoch's steps, is always recorded.
        after_step: ``after_step(step, net, optimizer, xb, yb)`` after every optimiser step
            (``step`` counts from 1 over the whole run; ``xb, yb`` the batch just used), e.g.
            a structural update of :mod:`meshprop.structure`, which may change ``net``'s
            topology in place and remap ``optimizer``'s state.
        checkpoint: a :class:`~meshprop.training.resume.TrainingCheckpoint` (a path: one that
            resumes from the file when it exists): the whole training state saved after every
            epoch (or every N), atomically; with ``resume`` training continues from it and ends
            bit-identical to the run that was never interrupted (same weights, same history,
            all but ``wall_time_s``).  Not with ``parallel``.  A loader of your own must draw
            its randomness from torch's global generator or its sampler's ``generator``.
    """
    stopping = _check_options(net, epochs, early_stopping, val_data, loss)
    ckpt = (
        TrainingCheckpoint(checkpoint, resume=True)
        if isinstance(checkpoint, str | Path)
        else checkpoint
    )
    if ckpt is not None and parallel is not None:
        raise ValueError(
            "checkpoints of data-parallel runs are not supported: train without checkpoint "
            "(or in one process)"
        )
    with thread_policy(threads):
        dim = sample_axis(net, batch_dim)
        X, y = prepare_data("train_data", train_data, net, loss, dim)
        val = None if val_data is None else prepare_data("val_data", val_data, net, loss, dim)
        opt = build_optimizer(optimizer, net.parameters(), lr, momentum, weight_decay)
        if loader is None:
            loader = make_loader(X, y, batch_size, seed, dim=dim)
        if parallel is not None:  # data-parallel: this process's shard of every batch
            parallel.broadcast_parameters(net)
            loader = parallel.shard_loader(loader, dim)
        reporter = reporter if reporter is not None else Reporter(progress=progress)
        evaluations = {"train": (X, y)} if evaluate_train else {}
        if val is not None:
            evaluations["val"] = val

        history = History()
        step, first_epoch = 0, 1
        best_loss, best_state, waited = math.inf, None, 0
        generator = loader_generator(loader)
        resumed: dict[str, Any] | None = None
        if ckpt is not None and ckpt.resume and Path(ckpt.path).is_file():
            resumed = _restore(ckpt, net, opt, history, X, batch_size)
            step, first_epoch = resumed["step"], resumed["epoch"] + 1
            stop_state = resumed["early_stopping"]
            best_loss, best_state, waited = (
                stop_state["best_loss"],
                stop_state["best_state"],
                stop_state["waited"],
            )
            if resumed["in_epoch"] is None:
                restore_rng(resumed["rng"], generator)
        start = time.perf_counter() - history.wall_time_s

        def save(epoch_done: int, in_epoch: dict[str, Any] | None) -> None:
            assert ckpt is not None
            history.wall_time_s = time.perf_counter() - start
            state = {
                "epoch": epoch_done,
                "step": step,
                "model": net.state_dict(),
                "optimizer": opt.state_dict(),
                "rng": capture_rng(generator),
                "history": history.to_dict(),
                "early_stopping": {
                    "best_loss": best_loss,
                    "best_state": best_state,
                    "waited": waited,
                },
                "in_epoch": in_epoch,
                "settings": _settings(X, batch_size, opt),
                "extra": None if ckpt.extra_state is None else ckpt.extra_state(net),
            }
            save_training_state(ckpt.path, state)

        grad = getattr(net, "grad", None)
        bar = reporter.bar(
            total=epochs, desc=f"training ({grad})" if isinstance(grad, str) else "training"
        )
        bar.update(min(first_epoch - 1, epochs))
        try:
            for epoch in range(first_epoch, epochs + 1):
                if history.stopped_early:
                    break
                net.train()
                mean, count, done = 0.0, 0, 0
                epoch_rng = capture_rng(generator) if ckpt is not None else None
                if resumed is not None and resumed["in_epoch"] is not None:
                    # an epoch stopped between two steps: draw its batches again, skip the done
                    part = resumed["in_epoch"]
                    epoch_rng = part["rng"]
                    restore_rng(epoch_rng, generator)
                    batches = iter(loader)
                    for _ in range(part["batches"]):
                        next(batches)
                    mean, count, done = part["mean"], part["count"], part["batches"]
                    restore_rng(resumed["rng"], generator)
                else:
                    batches = iter(loader)
                resumed = None
                for xb, yb in batches:
                    value = train_step(
                        net, opt, xb, yb, loss, before_step, parallel=parallel, batch_dim=dim
                    )
                    step += 1
                    if after_step is not None:
                        after_step(step, net, opt, xb, yb)
                    n = xb.shape[dim] if parallel is None else parallel.last_batch_size
                    count += n
                    mean += (value - mean) * (n / count)  # running mean: exact for one batch
                    done += 1
                    if ckpt is not None and ckpt.stopping():
                        part = {"rng": epoch_rng, "batches": done, "mean": mean, "count": count}
                        save(epoch - 1, part)
                        raise TrainingInterruptedError(epoch, step, Path(ckpt.path))
                if count == 0:
                    raise ValueError("the loader yielded no batches")
                net.eval()
                record: dict[str, float] = {"epoch": epoch, "batch_loss": mean}
                for split, (Xs, ys) in evaluations.items():
                    record.update(
                        {
                            f"{split}_{k}": v
                            for k, v in evaluate(net, Xs, ys, loss, batch_dim=dim).items()
                        }
                    )
                history.records.append(record)
                bar.update(1)
                postfix = {"loss": f"{record['batch_loss']:.4f}"}
                if val is not None:
                    postfix["val_loss"] = f"{record['val_loss']:.4f}"
                bar.set_postfix(**postfix)
                if callback is not None:
                    callback(epoch, net, record)
                if stopping is not None:
                    if record["val_loss"] < best_loss - stopping.min_delta:
                        best_loss, waited, history.best_epoch = record["val_loss"], 0, epoch
                        best_state = copy.deepcopy(net.state_dict())
                    else:
                        waited += 1
                        if waited >= stopping.patience:
                            history.stopped_early = True
                if ckpt is not None:
                    interrupted = ckpt.stopping()
                    if ckpt.due(epoch) or history.stopped_early or epoch == epochs or interrupted:
                        save(epoch, None)
                    if interrupted:
                        raise TrainingInterruptedError(epoch, step, Path(ckpt.path))
        finally:
            bar.close()
        if stopping is not None and stopping.restore_best and best_state is not None:
            net.load_state_dict(best_state)
        history.wall_time_s = time.perf_counter() - start
    return history
