"""Data-parallel training: shards partition every batch, and two processes train to the weights
of one process on the full batches, to rounding.

No test picks a port: the spawned processes meet through a file store in the test's tmp_path,
and torchrun's ``--standalone`` rendezvous binds its own store on port 0 (the workers share it).
"""

from __future__ import annotations

import itertools
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.multiprocessing as tmp

import meshprop as mp
from meshprop import distributed
from meshprop.layered import MLP
from meshprop.training import fit, make_loader

SAMPLES, BATCH = 290, 15  # 20 steps per epoch: 19 batches of 15 (shards 8 + 7), one of 5 (3 + 2)
STEPS = 20


def problem() -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(5)
    X = torch.randn(SAMPLES, 4, generator=g, dtype=torch.float64)
    y = (X[:, 0] + X[:, 1] * X[:, 2] > 0).long() + (X[:, 3] > 1).long()
    return X, y


def models() -> dict[str, torch.nn.Module]:
    """A random mesh trained by FOP and by BPTT, and MLPs trained by the two layered rules."""
    topo = mp.Topology.random(4, 6, 3, density=0.6, seed=2)
    kw = {"activation": "tanh", "output_activation": "identity", "dtype": torch.float64}
    return {
        "mesh-fop": mp.MeshNet(topo, ticks=3, grad="fop", seed=1, **kw),
        "mesh-bptt": mp.MeshNet(topo, ticks=3, grad="bptt", seed=1, **kw),
        "mlp-two_step": MLP([4, 8, 5, 3], grad="two_step", seed=1, **kw),
        "mlp-tensor_batch": MLP([4, 8, 5, 3], grad="tensor_batch", seed=1, **kw),
    }


def train_all(parallel: distributed.DataParallel | None) -> dict[str, dict]:
    """One epoch = STEPS Adam steps of every model, in one process or as one of several; and
    5 steps on batches of one sample, where every process but one has an empty shard."""
    X, y = problem()
    cases = [(name, net, X, y, BATCH) for name, net in models().items()]
    kw = {"activation": "tanh", "dtype": torch.float64, "seed": 1}
    cases.append(("mlp-batch1", MLP([4, 3, 3], grad="two_step", **kw), X[:5], y[:5], 1))
    out = {}
    for name, net, X_, y_, batch in cases:
        if parallel is not None and parallel.rank == 1:  # rank 0's weights are broadcast
            with torch.no_grad():
                for p in net.parameters():
                    p.add_(0.1)
        optimizer = torch.optim.Adam(net.parameters(), lr=0.02)
        history = fit(
            net,
            (X_, y_),
            epochs=1,
            batch_size=batch,
            optimizer=optimizer,
            seed=3,
            progress=False,
            parallel=parallel,
        )
        out[name] = {
            "weights": [p.detach().clone() for p in net.parameters()],
            "batch_loss": history["batch_loss"],
            "steps": [int(optimizer.state[p]["step"]) for p in net.parameters()],
        }
    return out


def worker(rank: int, world_size: int, directory: str) -> None:
    store = f"file://{Path(directory) / 'rendezvous'}"
    parallel = distributed.init(rank, world_size, store, backend="gloo")
    try:
        torch.save(train_all(parallel), Path(directory) / f"rank{rank}.pt")
    finally:
        distributed.shutdown()


def other_rank(index: int, world_size: int, directory: str) -> None:
    """Rank ``index + 1`` in a spawned process (rank 0 is the test's own)."""
    torch.set_num_threads(1)
    worker(index + 1, world_size, directory)


def test_shards_partition_every_batch():
    for n in range(0, 41):
        for world in range(1, 6):
            bounds = [distributed.shard_bounds(n, r, world) for r in range(world)]
            assert bounds[0][0] == 0 and bounds[-1][1] == n
            assert all(a[1] == b[0] for a, b in itertools.pairwise(bounds))
            sizes = [stop - start for start, stop in bounds]
            assert max(sizes) - min(sizes) <= 1
    with pytest.raises(ValueError, match=r"rank must be in 0\.\.1"):
        distributed.shard_bounds(10, 2, 2)


@pytest.mark.parametrize("world", [2, 3, 16])
def test_union_of_shards_is_the_single_process_batch(world):
    X, y = problem()
    single = make_loader(X, y, BATCH, seed=3)
    shards = [
        distributed.DataParallel(r, world, torch.device("cpu"), "gloo").shard_loader(
            make_loader(X, y, BATCH, seed=3)
        )
        for r in range(world)
    ]
    epochs = []
    for _ in range(2):  # every epoch reshuffles, identically in every process
        batches = list(single)
        parts = [list(s) for s in shards]
        assert len(batches) == STEPS and all(len(p) == STEPS for p in parts)
        for step, (xb, yb) in enumerate(batches):
            assert torch.equal(torch.cat([p[step][0] for p in parts]), xb)
            assert torch.equal(torch.cat([p[step][1] for p in parts]), yb)
            sizes = [len(p[step][0]) for p in parts]
            assert max(sizes) - min(sizes) <= 1  # 16 processes: some shards are empty
        epochs.append(batches[0][0])
    assert not torch.equal(epochs[0], epochs[1])


def test_any_iterable_of_batches_is_sliced_per_batch():
    X, y = problem()
    X, y = X[:30], y[:30]
    batches = [(X[i : i + 7], y[i : i + 7]) for i in range(0, 30, 7)]  # 7, 7, 7, 7, 2
    parts = [
        list(distributed.DataParallel(r, 3, torch.device("cpu"), "gloo").shard_loader(batches))
        for r in range(3)
    ]
    for step, (xb, yb) in enumerate(batches):
        assert torch.equal(torch.cat([p[step][0] for p in parts]), xb)
        assert torch.equal(torch.cat([p[step][1] for p in parts]), yb)
    assert [len(p[4][0]) for p in parts] == [1, 1, 0]
    # a per-sample DataLoader is not re-indexed as if its sampler drew batches
    per_sample = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(X, y), batch_size=10)
    shard = distributed.DataParallel(1, 2, torch.device("cpu"), "gloo").shard_loader(per_sample)
    assert torch.equal(next(iter(shard))[0], X[5:10])


def test_sequences_are_sharded_along_their_samples_axis(rng):
    """Sequences (T, B, width) split along B, for fit's loaders and for any iterable alike."""
    X = torch.randn(6, 11, 2, generator=rng, dtype=torch.float64)
    Y = X.sum(dim=2, keepdim=True)
    parts = [
        distributed.DataParallel(r, 3, torch.device("cpu"), "gloo").shard_loader(
            make_loader(X, Y, 5, seed=1, dim=1), dim=1
        )
        for r in range(3)
    ]
    whole = list(make_loader(X, Y, 5, seed=1, dim=1))
    shards = [list(p) for p in parts]
    for step, (xb, yb) in enumerate(whole):
        assert [s[step][0].shape[1] for s in shards] == [
            b - a for a, b in (distributed.shard_bounds(xb.shape[1], r, 3) for r in range(3))
        ]
        assert torch.equal(torch.cat([s[step][0] for s in shards], dim=1), xb)
        assert torch.equal(torch.cat([s[step][1] for s in shards], dim=1), yb)
    batches = [(X[:, :4], Y[:, :4]), (X[:, 4:], Y[:, 4:])]
    sliced = list(distributed.ShardedBatches(batches, 1, 2, dim=1))
    assert torch.equal(sliced[0][0], X[:, 2:4]) and torch.equal(sliced[1][1], Y[:, 8:])


@pytest.mark.subprocess
def test_two_processes_train_like_one(tmp_path):
    """Both sides compute the same Σ_i ∂E_i/∂W / n over a batch: the all-reduce only
    re-associates it as (n_0 ĝ_0 + n_1 ĝ_1) / n, which changes each gradient by at most about
    n·u·Σ|∂E_i/∂W| (n = 15 samples, u = 1.1e-16).  Twenty Adam steps carry twenty such
    perturbations into the weights, so the weights must agree to ~1e-14 of their size: the test
    allows 1e-13 (measured: 6.4e-16 at most, three ulps; the loss 2.2e-16).

    Rank 0 is this process, rank 1 a spawned one (one interpreter and torch import fewer)."""
    spawned = tmp.start_processes(
        other_rank, args=(2, str(tmp_path)), nprocs=1, join=False, start_method="spawn"
    )
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        worker(0, 2, str(tmp_path))
    finally:
        torch.set_num_threads(threads)
        while not spawned.join():
            pass
    single = train_all(None)
    ranks = [torch.load(tmp_path / f"rank{r}.pt") for r in range(2)]
    initial = {name: [p.detach() for p in net.parameters()] for name, net in models().items()}
    initial["mlp-batch1"] = [
        p.detach()
        for p in MLP([4, 3, 3], activation="tanh", dtype=torch.float64, seed=1).parameters()
    ]
    for name, reference in single.items():
        moved = max(
            float((a - b).abs().max())
            for a, b in zip(reference["weights"], initial[name], strict=True)
        )
        assert moved > 1e-2, f"{name}: training did not move the weights"
        scale = max(float(w.abs().max()) for w in reference["weights"])
        for rank, result in enumerate(ranks):
            for a, b in zip(result[name]["weights"], reference["weights"], strict=True):
                assert float((a - b).abs().max()) <= 1e-13 * scale, f"{name} rank {rank}"
            assert result[name]["batch_loss"] == pytest.approx(reference["batch_loss"], rel=1e-13)
        steps = 5 if name == "mlp-batch1" else STEPS
        assert reference["steps"] == [steps] * len(reference["weights"])


@pytest.mark.subprocess
def test_torchrun_cli_rank0_alone_writes(tmp_path):
    out = tmp_path / "run"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    command = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc-per-node",
        "2",
        "-m",
        "meshprop",
        "train",
        "--arch",
        "mlp",
        "--layers",
        "6",
        "--epochs",
        "2",
        "--samples",
        "200",
        "--no-progress",
        "--out",
        str(out),
    ]
    done = subprocess.run(
        command, capture_output=True, text=True, env=env, timeout=120, cwd=tmp_path
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.count("data-parallel: 2 processes (gloo)") == 1
    assert done.stdout.count("trainable parameters") == 1
    assert done.stdout.count("test accuracy") == 1
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["model"]["arch"] == "mlp"
    assert (out / "checkpoint" / "model.safetensors").is_file()
