"""Training mesh neural networks: ``fit``, per-epoch metrics, early stopping.

The loop is split so that each concern lives in one function (a data-parallel variant replaces
only what it must):

- :func:`make_loader` builds the (seeded, shuffled) DataLoader of one epoch's mini-batches;
- :func:`train_step` does forward, backward (through the net's gradient engine, ``net.grad``)
  and the optimiser step on one batch;
- :func:`evaluate` computes loss and metrics on a whole split in one batch;
- all console and file output goes through a :class:`meshprop.reporting.Reporter`.

Optimisers come from ``torch.optim`` by name (:data:`OPTIMIZERS`).  With a fixed ``seed`` (and
a net built with a fixed seed) two runs give identical weights.
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch.utils.data import (
    BatchSampler,
    DataLoader,
    RandomSampler,
    SequentialSampler,
    TensorDataset,
)

from .distributed import DataParallel
from .layered import MLP
from .losses import LOSSES, LossFn, check_target
from .mesh import MeshNet
from .reporting import Reporter

__all__ = [
    "OPTIMIZERS",
    "DivergenceError",
    "EarlyStopping",
    "History",
    "build_optimizer",
    "evaluate",
    "fit",
    "make_loader",
    "metrics",
    "train_step",
]

#: optimiser names accepted by :func:`fit` → their ``torch.optim`` class.
OPTIMIZERS: dict[str, type[torch.optim.Optimizer]] = {
    "adam": torch.optim.Adam,
    "adamw": torch.optim.AdamW,
    "sgd": torch.optim.SGD,
    "rmsprop": torch.optim.RMSprop,
    "adagrad": torch.optim.Adagrad,
}


def build_optimizer(
    name: str | torch.optim.Optimizer,
    params: Any,
    lr: float = 1e-3,
    momentum: float = 0.0,
    weight_decay: float = 0.0,
) -> torch.optim.Optimizer:
    """A ``torch.optim`` optimiser by name with ``lr``, ``momentum`` (sgd, rmsprop) and
    ``weight_decay``; an optimiser instance passes through unchanged."""
    if isinstance(name, torch.optim.Optimizer):
        return name
    if not isinstance(name, str) or name.lower() not in OPTIMIZERS:
        raise ValueError(f"unknown optimizer {name!r}; expected one of {', '.join(OPTIMIZERS)}")
    if not (isinstance(lr, (int, float)) and lr > 0 and math.isfinite(lr)):
        raise ValueError(f"lr must be a positive number, got {lr!r}")
    if momentum < 0:
        raise ValueError(f"momentum must be >= 0, got {momentum}")
    if weight_decay < 0:
        raise ValueError(f"weight_decay must be >= 0, got {weight_decay}")
    name = name.lower()
    kwargs: dict[str, float] = {"lr": float(lr), "weight_decay": float(weight_decay)}
    if name in ("sgd", "rmsprop"):
        kwargs["momentum"] = float(momentum)
    elif momentum:
        raise ValueError(f"momentum applies to sgd and rmsprop, not {name}")
    return OPTIMIZERS[name](params, **kwargs)


@dataclass
class EarlyStopping:
    """Stop when the validation loss has not improved by ``min_delta`` for ``patience`` epochs;
    with ``restore_best`` the weights of the best epoch are put back at the end."""

    patience: int = 20
    min_delta: float = 0.0
    restore_best: bool = True

    def __post_init__(self) -> None:
        if isinstance(self.patience, bool) or not isinstance(self.patience, int):
            raise TypeError(f"patience must be an integer, got {self.patience!r}")
        if self.patience < 1:
            raise ValueError(f"patience must be >= 1, got {self.patience}")
        if self.min_delta < 0:
            raise ValueError(f"min_delta must be >= 0, got {self.min_delta}")


@dataclass
class History:
    """Per-epoch records (``epoch``, ``train_loss``, ``train_accuracy``/``train_mse`` and the
    same for ``val_`` when a validation split is given), plus how training ended."""

    records: list[dict[str, float]] = field(default_factory=list)
    best_epoch: int | None = None
    stopped_early: bool = False
    wall_time_s: float = 0.0

    def __getitem__(self, key: str) -> list[float]:
        """The values of one metric over the epochs, e.g. ``history["val_loss"]``."""
        if not self.records or key not in self.records[0]:
            known = sorted(self.records[0]) if self.records else []
            raise KeyError(f"no metric {key!r} in the history; recorded: {known}")
        return [r[key] for r in self.records]

    def __len__(self) -> int:
        return len(self.records)

    @property
    def last(self) -> dict[str, float]:
        return self.records[-1] if self.records else {}

    def to_dict(self) -> dict[str, Any]:
        return {
            "epochs": self.records,
            "best_epoch": self.best_epoch,
            "stopped_early": self.stopped_early,
            "wall_time_s": self.wall_time_s,
        }


# ------------------------------------------------------------------------------ loaders
def make_loader(
    X: torch.Tensor,
    y: torch.Tensor,
    batch_size: int,
    seed: int | None = 0,
    shuffle: bool = True,
) -> DataLoader:
    """Mini-batches of (X, y), reshuffled every epoch by a ``torch.Generator`` seeded with
    ``seed``: the same seed gives the same batches.  The last batch may be smaller.

    Batches are drawn whole (a ``BatchSampler`` indexes the tensors once per batch).
    """
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
    dataset = TensorDataset(X, y)
    if shuffle:
        generator = torch.Generator().manual_seed(0 if seed is None else int(seed))
        sampler = RandomSampler(dataset, generator=generator)
    else:
        sampler = SequentialSampler(dataset)
    batches = BatchSampler(sampler, batch_size=batch_size, drop_last=False)
    return DataLoader(dataset, sampler=batches, batch_size=None)


# ------------------------------------------------------------------------------ one step
def _weight(net: torch.nn.Module) -> torch.Tensor:
    """A parameter of ``net``: its dtype and device are the model's (MeshNet or MLP)."""
    return next(net.parameters())


def loss_value(loss: str | LossFn, y: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """E(y, target) as a differentiable tensor (same definitions as ``meshprop.losses``)."""
    if loss == "cross_entropy":
        return F.cross_entropy(y, target)
    if loss == "mse":
        return F.mse_loss(y, target.to(y.dtype))
    if callable(loss):
        return loss(y, target)
    raise ValueError(f"unknown loss {loss!r}; expected one of {LOSSES} or a callable")


class DivergenceError(FloatingPointError, ValueError):
    """The loss became NaN or infinite (a ValueError too, so the command reports one line)."""


def train_step(
    net: MeshNet,
    optimizer: torch.optim.Optimizer,
    x: torch.Tensor,
    target: torch.Tensor,
    loss: str | LossFn = "cross_entropy",
    before_step: Callable[[MeshNet], Any] | None = None,
) -> float:
    """One optimiser step on a batch: forward, loss, backward through ``net.grad``'s engine,
    ``before_step(net)`` (e.g. an all-reduce of ``net.A.grad`` across workers), step.
    Returns the batch loss."""
    optimizer.zero_grad(set_to_none=True)
    value = loss_value(loss, net(x), target.to(_weight(net).device))
    if not torch.isfinite(value):
        raise DivergenceError(
            f"the loss is {float(value.detach())}: training diverged (lower the lr)"
        )
    value.backward()
    if before_step is not None:
        before_step(net)
    optimizer.step()
    return float(value.detach())


# ------------------------------------------------------------------------------ metrics
def metrics(y: torch.Tensor, target: torch.Tensor, loss: str | LossFn) -> dict[str, float]:
    """``loss`` and, for cross-entropy, ``accuracy``; for MSE, ``mse`` and ``r2``."""
    target = target.to(y.device)
    result = {"loss": float(loss_value(loss, y, target))}
    if loss == "cross_entropy":
        result["accuracy"] = float((y.argmax(dim=1) == target).double().mean())
    elif loss == "mse":
        target = target.to(y.dtype)
        mse = float(((y - target) ** 2).mean())
        spread = float(((target - target.mean(dim=0)) ** 2).mean())
        result["mse"] = mse
        result["r2"] = 1.0 - mse / spread if spread > 0 else float("nan")
    return result


@torch.no_grad()
def evaluate(
    net: MeshNet, X: torch.Tensor, target: torch.Tensor, loss: str | LossFn = "cross_entropy"
) -> dict[str, float]:
    """Loss and metrics of ``net`` on a whole split, computed in one batch (so the result does
    not depend on a batch size)."""
    return metrics(net(X), target, loss)


# ------------------------------------------------------------------------------ the loop
def _check_data(name: str, data: Any, net: MeshNet, loss: str | LossFn) -> tuple:
    if not (isinstance(data, (tuple, list)) and len(data) == 2):
        raise TypeError(f"{name} must be a pair (X, y) of tensors, got {type(data).__name__}")
    X, y = data
    if not isinstance(X, torch.Tensor) or not isinstance(y, torch.Tensor):
        raise TypeError(
            f"{name} must hold torch tensors, got {type(X).__name__}, {type(y).__name__}"
        )
    if X.dim() != 2:
        raise ValueError(
            f"{name}: X must have shape (samples, {net.topology.n_inputs}), got {tuple(X.shape)}"
        )
    if len(y) != len(X):
        raise ValueError(f"{name}: X has {len(X)} rows but y has {len(y)}")
    net.prepare_input(X[:1])  # feature count, dtype, finiteness of the first row
    if not torch.isfinite(X).all():
        raise ValueError(f"{name}: X contains NaN or inf")
    check_target(loss, y, len(X), net.topology.n_outputs)
    return X.to(_weight(net).dtype), y


def fit(
    net: MeshNet,
    train_data: tuple[torch.Tensor, torch.Tensor],
    val_data: tuple[torch.Tensor, torch.Tensor] | None = None,
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
    callback: Callable[[int, MeshNet, dict[str, float]], Any] | None = None,
    reporter: Reporter | None = None,
    loader: Iterable[tuple[torch.Tensor, torch.Tensor]] | None = None,
    before_step: Callable[[MeshNet], Any] | None = None,
    parallel: DataParallel | None = None,
) -> History:
    """Train ``net`` in place on ``train_data = (X, y)`` and return the :class:`History`.

    Args:
        loss: ``"cross_entropy"`` (y: class indices), ``"mse"`` (y: (B, O) floats) or a callable.
        optimizer: a name of :data:`OPTIMIZERS` or a ready ``torch.optim`` optimiser.
        epochs, batch_size: passes over the data and samples per optimiser step.
        seed: seeds the shuffling of mini-batches (``None``: seed 0).
        early_stopping: an :class:`EarlyStopping`, or an int patience; needs ``val_data``.
        progress: show a tqdm bar with the running loss (only on a terminal).
        callback: ``callback(epoch, net, record)`` after every epoch (e.g. to save frames).
        reporter: where console output goes (default: ``Reporter(progress=progress)``).
        loader: the mini-batches of one epoch, iterated once per epoch (default:
            :func:`make_loader` over ``train_data`` with ``batch_size`` and ``seed``), e.g. a
            DataLoader with a ``DistributedSampler``; metrics still use all of ``train_data``.
        before_step: called with the net after each backward pass, before the optimiser step.
        parallel: a ``meshprop.distributed.DataParallel``: each process trains on its shard of
            every batch of ``loader`` and the gradients are all-reduced (averaged, weighted by
            shard size) before ``before_step`` and the step (see ``meshprop.distributed``).

    Gradients come from the net's own engine (``net.grad``): any of ``mp.GRADIENT_METHODS``.
    """
    if not isinstance(net, (MeshNet, MLP)):
        raise TypeError(
            f"net must be a meshprop.MeshNet or meshprop.layered.MLP, got {type(net).__name__}"
        )
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
    X, y = _check_data("train_data", train_data, net, loss)
    val = None if val_data is None else _check_data("val_data", val_data, net, loss)
    opt = build_optimizer(optimizer, net.parameters(), lr, momentum, weight_decay)
    if loader is None:
        loader = make_loader(X, y, batch_size, seed)
    step = train_step
    if parallel is not None:  # data-parallel: this process's shard of every batch
        parallel.broadcast_parameters(net)
        loader = parallel.shard_loader(loader)
        step = parallel.train_step
    reporter = reporter if reporter is not None else Reporter(progress=progress)

    history = History()
    best_loss, best_state, waited = math.inf, None, 0
    start = time.perf_counter()
    bar = reporter.bar(total=epochs, desc=f"training ({net.grad})")
    try:
        for epoch in range(1, epochs + 1):
            net.train()
            total, count = 0.0, 0
            for xb, yb in loader:
                value = step(net, opt, xb, yb, loss, before_step)
                n = len(xb) if parallel is None else parallel.last_batch_size
                total += value * n
                count += n
            net.eval()
            record: dict[str, float] = {"epoch": epoch, "batch_loss": total / count}
            record.update({f"train_{k}": v for k, v in evaluate(net, X, y, loss).items()})
            if val is not None:
                record.update({f"val_{k}": v for k, v in evaluate(net, *val, loss).items()})
            history.records.append(record)
            bar.update(1)
            postfix = {"loss": f"{record['batch_loss']:.4f}"}
            if val is not None:
                postfix["val_loss"] = f"{record['val_loss']:.4f}"
            bar.set_postfix(**postfix)
            if callback is not None:
                callback(epoch, net, record)
            if early_stopping is not None:
                if record["val_loss"] < best_loss - early_stopping.min_delta:
                    best_loss, waited, history.best_epoch = record["val_loss"], 0, epoch
                    best_state = copy.deepcopy(net.state_dict())
                else:
                    waited += 1
                    if waited >= early_stopping.patience:
                        history.stopped_early = True
                        break
    finally:
        bar.close()
    if early_stopping is not None and early_stopping.restore_best and best_state is not None:
        net.load_state_dict(best_state)
    history.wall_time_s = time.perf_counter() - start
    return history
