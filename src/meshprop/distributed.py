"""Data-parallel training on ``torch.distributed`` (paper 003 §3: split a batch across workers,
train each part in isolation, combine their ΔW).

Every process holds the whole model and the whole data set and draws the same seeded sequence of
mini-batches.  :class:`ShardedBatchSampler` hands process r its contiguous slice of every batch,
so the union of the shards of a step is exactly the batch a single process would draw.  Each
process computes the gradient of the mean loss over its shard with the model's own reverse pass;
:meth:`DataParallel.all_reduce_gradients` then sums ``n_r · ∂E_r/∂W`` over the processes in one
``all_reduce`` and divides by n = Σ n_r.  Since every built-in loss is a mean over samples, that
weighted average is the gradient of the full batch, and the optimiser step that follows is the
single-process step up to the order of the additions.

This module only shards and reduces: the training step itself is ``meshprop.training``'s, which
takes a :class:`DataParallel` as an option (``fit(..., parallel=...)``).

Launch with ``torchrun --nproc-per-node K -m meshprop train ...``: :func:`from_environment`
reads torchrun's variables (RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR, MASTER_PORT) and joins
the process group — gloo on CPU, nccl when CUDA is present.
"""

from __future__ import annotations

import datetime
import os
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn
from torch.utils.data import BatchSampler, DataLoader, Sampler

__all__ = [
    "DataParallel",
    "ShardedBatchSampler",
    "ShardedBatches",
    "default_backend",
    "from_environment",
    "init",
    "shard_bounds",
    "shutdown",
]


def default_backend() -> str:
    """``"nccl"`` when CUDA is present (and nccl is built in), else ``"gloo"``."""
    if torch.cuda.is_available() and dist.is_nccl_available():
        return "nccl"
    return "gloo"


def shard_bounds(n: int, rank: int, world_size: int) -> tuple[int, int]:
    """[start, stop) of process ``rank``'s contiguous share of n items: sizes differ by at most
    one, the first n mod K processes take one more (``numpy.array_split``'s rule)."""
    if not 0 <= rank < world_size:
        raise ValueError(f"rank must be in 0..{world_size - 1}, got {rank}")
    base, extra = divmod(n, world_size)
    start = rank * base + min(rank, extra)
    return start, start + base + (1 if rank < extra else 0)


class ShardedBatchSampler(Sampler[list[int]]):
    """Process ``rank``'s slice of every batch of ``batch_sampler``.

    Every process wraps an identical, identically seeded batch sampler, so the K slices of a
    step partition that step's batch: their union is exactly the single-process batch.  Unlike
    ``torch.utils.data.DistributedSampler`` (which shards the data set once per epoch and pads it
    with repeated samples to equal length), nothing is repeated and the step count is the
    single-process one; a batch smaller than K leaves some shards empty for that step.
    """

    def __init__(self, batch_sampler: Iterable[Sequence[int]], rank: int, world_size: int):
        if world_size < 1:
            raise ValueError(f"world_size must be >= 1, got {world_size}")
        shard_bounds(0, rank, world_size)  # validates rank
        self.batch_sampler = batch_sampler
        self.rank = rank
        self.world_size = world_size

    def __iter__(self) -> Iterator[list[int]]:
        for batch in self.batch_sampler:
            batch = list(batch)
            start, stop = shard_bounds(len(batch), self.rank, self.world_size)
            yield batch[start:stop]

    def __len__(self) -> int:
        return len(self.batch_sampler)  # type: ignore[arg-type]


class ShardedBatches:
    """Process ``rank``'s contiguous slice of every (x, y) batch of any iterable of batches
    (each process iterates an identical sequence and keeps its part); the samples of a batch
    lie along axis ``dim`` (1 for sequences shaped (T, B, width))."""

    def __init__(
        self,
        batches: Iterable[tuple[torch.Tensor, torch.Tensor]],
        rank: int,
        world_size: int,
        dim: int = 0,
    ):
        shard_bounds(0, rank, world_size)  # validates rank
        self.batches = batches
        self.rank = rank
        self.world_size = world_size
        self.dim = dim

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        for xb, yb in self.batches:
            n = xb.shape[self.dim]
            if yb.shape[self.dim] != n:
                raise ValueError(
                    f"a batch holds {n} inputs but {yb.shape[self.dim]} targets (axis {self.dim})"
                )
            start, stop = shard_bounds(n, self.rank, self.world_size)
            yield xb.narrow(self.dim, start, stop - start), yb.narrow(self.dim, start, stop - start)

    def __len__(self) -> int:
        return len(self.batches)  # type: ignore[arg-type]


@dataclass
class DataParallel:
    """This process's place in a data-parallel run: rank, world size and device.

    ``last_batch_size`` is the size of the whole batch (all shards) of the latest
    :meth:`all_reduce_gradients`, so that a loop can weight the batch losses as one process
    would.
    """

    rank: int
    world_size: int
    device: torch.device
    backend: str
    last_batch_size: int = 0

    @property
    def is_main(self) -> bool:
        """Rank 0: the only process that prints, writes metrics and saves checkpoints."""
        return self.rank == 0

    def shard_loader(
        self, loader: Iterable[tuple[torch.Tensor, torch.Tensor]], dim: int = 0
    ) -> Iterable[tuple[torch.Tensor, torch.Tensor]]:
        """The same loader, yielding this process's shard of each of its batches.

        A DataLoader that draws whole batches through a batch sampler (as
        ``meshprop.training.make_loader``'s do: ``DataLoader(dataset,
        sampler=BatchSampler(...), batch_size=None)``, or one built with ``batch_sampler=``) is
        re-indexed so that each process loads only its own samples. Any other iterable of (x, y)
        batches — identical in every process — is sliced batch by batch along axis ``dim``
        (:class:`ShardedBatches`).
        """
        if isinstance(loader, DataLoader):
            batches: Iterable[Sequence[int]] | None = None
            if loader.batch_size is None and isinstance(loader.sampler, BatchSampler):
                batches = loader.sampler
            elif loader.batch_size is not None and loader.batch_sampler is not None:
                batches = loader.batch_sampler
            if batches is not None:
                return DataLoader(
                    loader.dataset,
                    sampler=ShardedBatchSampler(batches, self.rank, self.world_size),
                    batch_size=None,
                )
        return ShardedBatches(loader, self.rank, self.world_size, dim)

    def all_reduce_gradients(
        self, parameters: Iterable[nn.Parameter], n_local: int, loss_local: float = 0.0
    ) -> tuple[int, float]:
        """Replace every ``p.grad`` (the gradient of this shard's mean loss) by the
        shard-size-weighted average over all processes, Σ_r n_r g_r / Σ_r n_r, with one
        ``all_reduce`` of one flat buffer.  Returns (n, the mean loss over the whole batch)."""
        params = [p for p in parameters if p.requires_grad]
        if not params:
            raise ValueError("no trainable parameters to all-reduce")
        reference = params[0]
        pieces = [
            (p.grad if p.grad is not None else torch.zeros_like(p)).reshape(-1) * n_local
            for p in params
        ]
        tail = torch.tensor(
            [loss_local * n_local, float(n_local)], dtype=reference.dtype, device=reference.device
        )
        buffer = torch.cat([*pieces, tail])
        dist.all_reduce(buffer, op=dist.ReduceOp.SUM)
        n = round(float(buffer[-1]))
        if n < 1:
            raise ValueError("the batch was empty on every process")
        self.last_batch_size = n
        offset = 0
        for p in params:
            size = p.numel()
            p.grad = (buffer[offset : offset + size] / n).view_as(p).clone()
            offset += size
        return n, float(buffer[-2]) / n

    @torch.no_grad()
    def broadcast_parameters(self, module: nn.Module) -> None:
        """Copy rank 0's parameters to every process, so that all start from the same weights
        even when the model was built without a seed."""
        for p in module.parameters():
            dist.broadcast(p.data, src=0)

    def barrier(self) -> None:
        dist.barrier()


def init(
    rank: int,
    world_size: int,
    init_method: str = "env://",
    backend: str | None = None,
    timeout_s: float = 120.0,
) -> DataParallel:
    """Join (create) the default process group and return this process's :class:`DataParallel`.

    With nccl, process r uses GPU ``LOCAL_RANK`` (default r) and the model must live there.
    """
    backend = backend or default_backend()
    if backend == "nccl":
        local = int(os.environ.get("LOCAL_RANK", rank))
        device = torch.device("cuda", local)
        torch.cuda.set_device(device)
    else:
        device = torch.device("cpu")
    if not dist.is_initialized():
        dist.init_process_group(
            backend,
            init_method=init_method,
            rank=rank,
            world_size=world_size,
            timeout=datetime.timedelta(seconds=timeout_s),
        )
    return DataParallel(rank, world_size, device, backend)


def from_environment(backend: str | None = None) -> DataParallel | None:
    """The :class:`DataParallel` of a process started by torchrun (WORLD_SIZE > 1 in the
    environment), after joining its process group; None for an ordinary single process."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size <= 1:
        return None
    return init(int(os.environ["RANK"]), world_size, "env://", backend)


def shutdown() -> None:
    """Leave the process group (call once at the end of a data-parallel run, on every rank).

    The ranks first meet at a barrier, so that no rank tears down its connections while a peer
    is still finishing its last exchange: gloo aborts a process ("terminate called without an
    active exception") when its pairs are closed under it.  Teardown happens even if the
    barrier fails (a peer already gone).
    """
    if dist.is_initialized():
        try:
            dist.barrier()
        finally:
            dist.destroy_process_group()
