"""Checkpoints of ``fit`` (meshprop.training.resume): a run interrupted anywhere — between two
epochs, between two steps of an epoch — and resumed in a fresh model with a scrambled global
random state ends bit-identical to the run that was never interrupted: ``torch.equal`` weights,
equal history records (every float equal), same early-stopping outcome, same topology under
structural learning."""

from __future__ import annotations

import random
from typing import Any

import numpy as np
import pytest
import torch

import meshprop as mp
from meshprop.atomic import atomic_path, atomic_write_text, remove_stale_temporaries
from meshprop.structure import StructuralLearning, UpdateSchedule
from meshprop.training import (
    EarlyStopping,
    TrainingCheckpoint,
    TrainingInterruptedError,
    fit,
    load_training_state,
)

EPOCHS = 6


def data(n: int = 70) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(7)
    X = torch.randn(n, 3, generator=g, dtype=torch.float64)
    y = (X[:, 0] * X[:, 1] > 0).long()
    return X, y


def new_net(density: float = 1.0) -> mp.MeshNet:
    if density < 1:
        topo = mp.Topology.random(3, 5, 2, density=density, bias=True, seed=3)
    else:
        topo = mp.Topology.mesh(3, 5, 2, bias=True)
    return mp.MeshNet(topo, ticks=3, dtype=torch.float64, seed=0)


def structure() -> StructuralLearning:
    return StructuralLearning("set", UpdateSchedule(3, 0.3, end_step=20), seed=5)


def train(
    kind: str, ckpt: TrainingCheckpoint | None = None, rule: StructuralLearning | None = None
) -> tuple[mp.MeshNet, mp.training.History]:
    """One run of the given kind: "adam", "early" (early stopping) or "set" (structural)."""
    X, y = data()
    options: dict[str, Any] = {"epochs": EPOCHS, "batch_size": 16, "progress": False, "seed": 4}
    if kind == "early":
        options.update(
            val_data=data(30), early_stopping=EarlyStopping(patience=2), epochs=40, lr=0.3
        )
    if kind == "set":
        assert rule is not None
        options["after_step"] = rule
        if ckpt is not None:
            ckpt.extra_state, ckpt.load_extra_state = rule.state_dict, rule.load_state_dict
    net = new_net(0.5 if kind == "set" else 1.0)
    history = fit(net, (X, y), checkpoint=ckpt, lr=options.pop("lr", 0.05), **options)
    return net, history


def stop_after(calls: int) -> Any:
    """A stop request that answers True on its ``calls``-th poll (fit polls after every step
    and at every epoch's end)."""
    count = {"n": 0}

    def requested() -> bool:
        count["n"] += 1
        return count["n"] == calls

    return requested


def scramble() -> None:
    """A new process's random state: resuming must not depend on it."""
    torch.manual_seed(987654)
    np.random.seed(4321)
    random.seed(1234)


def assert_same(a: tuple[mp.MeshNet, Any], b: tuple[mp.MeshNet, Any]) -> None:
    (net_a, hist_a), (net_b, hist_b) = a, b
    assert net_a.topology == net_b.topology
    assert torch.equal(net_a.A, net_b.A)
    assert hist_a.records == hist_b.records
    assert (hist_a.best_epoch, hist_a.stopped_early) == (hist_b.best_epoch, hist_b.stopped_early)


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["adam", "early", "set"])
def test_resume_after_interruptions_anywhere_is_bit_identical(kind, tmp_path):
    reference_rule = structure()
    reference = train(kind, rule=reference_rule)
    if kind == "early":
        assert reference[1].stopped_early and len(reference[1]) < 40  # the case is exercised
    if kind == "set":
        assert len(reference_rule.log) >= 3 and any(r["added"] for r in reference_rule.log)
    # 70 samples in batches of 16: fit polls 6 times an epoch (5 steps, then the epoch's end).
    # Each process is stopped at its n-th poll: mid-epoch, at an epoch's end, ... then resumed
    # from the state it saved, in a fresh model with a scrambled random state.
    segments = [2, 6, 3, 13, 7]
    assert sum(segments) < len(reference[1]) * 6
    path = tmp_path / f"{kind}.pt"
    interrupted_at: list[tuple[int, int]] = []
    for polls in [*segments, None]:
        scramble()
        rule = structure()
        request = None if polls is None else stop_after(polls)
        ckpt = TrainingCheckpoint(path, resume=True, stop_requested=request)
        if polls is None:
            result = train(kind, ckpt, rule)
            break
        with pytest.raises(TrainingInterruptedError) as info:
            train(kind, ckpt, rule)
        interrupted_at.append((info.value.epoch, info.value.step))
    steps = [step for _, step in interrupted_at]
    assert steps == sorted(steps) and any(s % 5 for s in steps)  # some inside an epoch
    assert len(interrupted_at) == len(segments)
    assert_same(result, reference)
    if kind == "set":
        assert rule.log == reference_rule.log


def test_every_epoch_state_resumes_identically_and_every_n_epochs_is_honoured(tmp_path):
    """A process killed after epoch 4 resumes from the state of the last saved epoch: the
    state every epoch writes is what resuming needs (here: the file of epoch k copied aside
    when it is written, then resumed from)."""
    reference = train("adam")
    saved: dict[int, bytes] = {}
    path = tmp_path / "state.pt"

    def keep(epoch: int, net: Any, record: dict[str, float]) -> None:
        if path.exists():
            saved[epoch - 1] = path.read_bytes()

    X, y = data()
    net = new_net()
    fit(net, (X, y), epochs=EPOCHS, batch_size=16, progress=False, seed=4, lr=0.05,
        checkpoint=TrainingCheckpoint(path, every=2), callback=keep)  # fmt: skip
    assert sorted(saved) == [2, 3, 4, 5]  # written after epochs 2 and 4 (and the last)
    assert load_training_state(path)["epoch"] == EPOCHS
    for epoch in (2, 4):
        path.write_bytes(saved[epoch])
        assert load_training_state(path)["epoch"] == epoch
        scramble()
        assert_same(train("adam", TrainingCheckpoint(path, resume=True)), reference)


def test_a_finished_state_resumes_to_the_same_result_without_training(tmp_path):
    path = tmp_path / "state.pt"
    first = train("early", TrainingCheckpoint(path))
    scramble()
    assert_same(train("early", TrainingCheckpoint(path, resume=True)), first)


def test_a_checkpoint_of_another_run_or_a_damaged_one_is_one_clear_error(tmp_path):
    path = tmp_path / "state.pt"
    train("adam", TrainingCheckpoint(path))
    X, y = data(50)
    with pytest.raises(ValueError, match=r"saved by a different run .*samples 70"):
        fit(new_net(), (X, y), epochs=2, progress=False, checkpoint=path)
    good = path.read_bytes()
    for content in [
        b"",
        good[: len(good) // 2],
        bytes(np.random.default_rng(0).integers(0, 256, 4000, dtype=np.uint8)),
    ]:
        path.write_bytes(content)
        with pytest.raises(ValueError, match=f"^{path}: not a readable training checkpoint"):
            load_training_state(path)
    torch.save({"format": "something else"}, path)
    with pytest.raises(ValueError, match="not a meshprop training checkpoint"):
        load_training_state(path)


def test_checkpoints_refuse_data_parallel_and_bad_settings(tmp_path):
    with pytest.raises(ValueError, match="every must be an integer >= 0"):
        TrainingCheckpoint("x.pt", every=-1)
    with pytest.raises(ValueError, match="checkpoints of data-parallel runs are not supported"):
        fit(new_net(), data(), checkpoint=tmp_path / "s.pt", parallel=object())  # type: ignore[arg-type]
    assert not (tmp_path / "s.pt").exists()


def test_atomic_writes_leave_the_old_file_when_the_writer_fails(tmp_path):
    target = tmp_path / "f.json"
    atomic_write_text(target, "old")
    with pytest.raises(RuntimeError), atomic_path(target) as temporary:
        temporary.write_text("half")
        raise RuntimeError("killed")
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["f.json"]
    (tmp_path / ".f.tmp-abc.json").write_text("stale")
    assert [p.name for p in remove_stale_temporaries(tmp_path)] == [".f.tmp-abc.json"]
    assert oct(target.stat().st_mode & 0o777) != oct(0o600)  # not mkstemp's private mode
