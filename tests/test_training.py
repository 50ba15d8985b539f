"""fit, loaders, metrics, early stopping, checkpoints and the Reporter."""

from __future__ import annotations

import io

import pytest
import torch

import meshprop as mp
from meshprop.checkpoint import load_checkpoint, save_checkpoint
from meshprop.data import load_dataset, split_dataset
from meshprop.reporting import Reporter
from meshprop.training import (
    EarlyStopping,
    History,
    build_optimizer,
    evaluate,
    fit,
    make_loader,
    metrics,
    train_step,
)


@pytest.fixture(scope="module")
def moons():
    return split_dataset(load_dataset("moons", n_samples=200, seed=0), val_size=0.2, seed=0)


def small_net(grad="fop", seed=0, hidden=4, inputs=2, outputs=2, **kw):
    topo = mp.Topology.mesh(inputs, hidden, outputs)
    return mp.MeshNet(
        topo, ticks=3, output_activation="identity", grad=grad, dtype=torch.float64, seed=seed, **kw
    )


def test_fit_is_deterministic_for_a_fixed_seed(moons):
    runs = []
    for _ in range(2):
        net = small_net()
        h = fit(
            net, moons.train, moons.val, epochs=3, batch_size=16, lr=0.01, seed=5, progress=False
        )
        runs.append((net.A.detach().clone(), h))
    assert torch.equal(runs[0][0], runs[1][0])
    assert runs[0][1].records == runs[1][1].records
    other = small_net()
    fit(other, moons.train, epochs=3, batch_size=16, lr=0.01, seed=6, progress=False)
    assert not torch.equal(other.A, runs[0][0])


@pytest.mark.parametrize("grad", [m for m in mp.GRADIENT_METHODS if m not in ("fop", "reference")])
def test_fit_with_any_engine_follows_the_same_trajectory_as_fop(moons, grad):
    """Identical gradients (float64) → identical runs up to rounding."""
    nets = {}
    for g in ("fop", grad):
        nets[g] = small_net(g)
        fit(nets[g], moons.train, epochs=2, batch_size=20, lr=0.01, progress=False)
    torch.testing.assert_close(nets[grad].A, nets["fop"].A, rtol=1e-10, atol=1e-12)


def test_fit_with_the_reference_engine_on_a_few_steps(moons):
    X, y = moons.train[0][:40], moons.train[1][:40]
    a, b = small_net("fop", hidden=2), small_net("reference", hidden=2)
    for net in (a, b):
        fit(net, (X, y), epochs=1, batch_size=20, lr=0.01, progress=False)
    torch.testing.assert_close(a.A, b.A, rtol=1e-10, atol=1e-12)


def test_training_learns_moons(moons):
    net = small_net(hidden=5)
    before = evaluate(net, *moons.test)
    h = fit(net, moons.train, moons.val, epochs=40, batch_size=16, lr=0.02, progress=False)
    after = evaluate(net, *moons.test)
    assert after["loss"] < 0.5 * before["loss"]
    assert after["accuracy"] >= 0.9
    assert h["train_loss"][-1] < h["train_loss"][0]
    assert len(h) == 40 and set(h.last) >= {
        "epoch",
        "train_loss",
        "train_accuracy",
        "val_loss",
        "val_accuracy",
        "batch_loss",
    }


def test_regression_with_mse_reports_mse_and_r2():
    g = torch.Generator().manual_seed(0)
    X = torch.randn(120, 3, generator=g, dtype=torch.float64)
    y = (X[:, :1] - 0.5 * X[:, 1:2]).clone()
    net = mp.MeshNet(
        mp.Topology.mesh(3, 3, 1),
        ticks=2,
        activation="tanh",
        output_activation="identity",
        dtype=torch.float64,
        seed=0,
    )
    h = fit(net, (X, y), (X, y), loss="mse", epochs=30, batch_size=16, lr=0.02, progress=False)
    assert h["val_r2"][-1] > 0.9
    assert h["val_mse"][-1] == pytest.approx(h["val_loss"][-1], rel=1e-12)


def test_metrics_match_their_definitions():
    y = torch.tensor([[2.0, 1.0], [0.0, 3.0], [1.0, 0.0]], dtype=torch.float64)
    m = metrics(y, torch.tensor([0, 0, 0]), "cross_entropy")
    assert m["accuracy"] == pytest.approx(2 / 3)
    assert m["loss"] == pytest.approx(
        float(torch.nn.functional.cross_entropy(y, torch.zeros(3, dtype=torch.long)))
    )
    t = torch.tensor([[1.0], [2.0], [3.0]], dtype=torch.float64)
    m = metrics(t + 1.0, t, "mse")
    assert m["mse"] == 1.0 and m["r2"] == pytest.approx(1 - 1 / (2 / 3))


def test_loader_is_seeded_and_covers_every_sample_once_per_epoch():
    X = torch.arange(23.0).reshape(23, 1)
    y = torch.arange(23)
    a, b = make_loader(X, y, 5, seed=1), make_loader(X, y, 5, seed=1)
    epochs_a = [[yb.tolist() for _, yb in a] for _ in range(2)]
    epochs_b = [[yb.tolist() for _, yb in b] for _ in range(2)]
    assert epochs_a == epochs_b
    for epoch in epochs_a:
        assert [len(batch) for batch in epoch] == [5, 5, 5, 5, 3]
        assert sorted(i for batch in epoch for i in batch) == list(range(23))
    assert epochs_a[0] != epochs_a[1]  # reshuffled each epoch
    with pytest.raises(ValueError, match="batch_size must be a positive integer"):
        make_loader(X, y, 0)


def test_train_step_applies_one_optimizer_step_with_the_engine_gradient(moons):
    net = small_net()
    x, y = moons.train[0][:8], moons.train[1][:8]
    before = net.A.detach().clone()
    loss, dA = mp.gradient(net, x, y, "cross_entropy", method="bptt")
    opt = torch.optim.SGD(net.parameters(), lr=0.1)
    value = train_step(net, opt, x, y, "cross_entropy")
    assert value == pytest.approx(float(loss), rel=1e-12)
    torch.testing.assert_close(net.A.detach(), before - 0.1 * dA, rtol=1e-12, atol=1e-14)


def test_early_stopping_stops_and_restores_the_best_weights(moons):
    net = small_net()
    snapshots = {}
    h = fit(
        net,
        moons.train,
        moons.val,
        epochs=50,
        batch_size=16,
        lr=0.05,
        progress=False,
        early_stopping=EarlyStopping(patience=3, min_delta=10.0),
        callback=lambda e, n, r: snapshots.__setitem__(e, n.A.detach().clone()),
    )
    # with min_delta 10 no epoch after the first can improve: stop after 1 + patience epochs
    assert h.stopped_early and h.best_epoch == 1 and len(h) == 4
    assert torch.equal(net.A.detach(), snapshots[1])
    assert not torch.equal(snapshots[4], snapshots[1])


def test_optimizers_by_name():
    net = small_net()
    sgd = build_optimizer("sgd", net.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-4)
    assert isinstance(sgd, torch.optim.SGD)
    assert sgd.param_groups[0]["momentum"] == 0.9 and sgd.param_groups[0]["weight_decay"] == 1e-4
    assert isinstance(build_optimizer("Adam", net.parameters()), torch.optim.Adam)
    with pytest.raises(ValueError, match="unknown optimizer 'lbfgs'"):
        build_optimizer("lbfgs", net.parameters())
    with pytest.raises(ValueError, match="momentum applies to sgd and rmsprop"):
        build_optimizer("adam", net.parameters(), momentum=0.5)
    with pytest.raises(ValueError, match="lr must be a positive number"):
        build_optimizer("sgd", net.parameters(), lr=-1.0)


def test_fit_rejects_bad_input(moons):
    net = small_net()
    X, y = moons.train
    with pytest.raises(ValueError, match="X has 100 rows but y has 99"):
        fit(net, (X, y[:-1]), progress=False)
    with pytest.raises(ValueError, match="2 inputs"):
        fit(net, (torch.zeros(4, 3), torch.zeros(4, dtype=torch.long)), progress=False)
    with pytest.raises(ValueError, match="early_stopping monitors the validation loss"):
        fit(net, (X, y), early_stopping=3, progress=False)
    with pytest.raises(TypeError, match="integer class labels"):
        fit(net, (X, y.double()), progress=False)
    with pytest.raises(ValueError, match="epochs must be a positive integer"):
        fit(net, (X, y), epochs=0, progress=False)
    with pytest.raises(ValueError, match="unknown gradient method"):
        net.grad = "nope"


def test_history_access():
    h = History(records=[{"epoch": 1, "train_loss": 0.5}])
    assert h["train_loss"] == [0.5]
    with pytest.raises(KeyError, match="no metric 'val_loss'"):
        h["val_loss"]


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_checkpoint_round_trip_rebuilds_the_identical_model(tmp_path, dtype):
    topo = mp.Topology.random(3, 6, 2, density=0.4, seed=2)
    acts = (
        ["identity"] * 4
        + ["tanh", "relu", "sigmoid", "relu", "softplus", "tanh"]
        + ["identity"] * 2
    )
    net = mp.MeshNet(topo, ticks=4, activation=acts, grad="bptt", dtype=dtype, seed=1)
    save_checkpoint(tmp_path / "ck", net, {"note": "x"})
    loaded, doc = load_checkpoint(tmp_path / "ck" / "model.json")
    assert loaded.topology == topo and loaded.ticks == 4 and loaded.grad == "bptt"
    assert loaded.A.dtype == dtype and torch.equal(loaded.A, net.A) and doc["note"] == "x"
    x = torch.randn(5, 3, dtype=dtype)
    assert torch.equal(loaded(x), net(x))


def test_checkpoint_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="no checkpoint"):
        load_checkpoint(tmp_path / "missing")
    (tmp_path / "model.json").write_text("{}")
    with pytest.raises(FileNotFoundError, match=r"lacks model\.safetensors"):
        load_checkpoint(tmp_path)


def test_reporter_silenced_writes_and_prints_nothing(tmp_path, capsys):
    quiet = Reporter(enabled=False)
    quiet.print("hello")
    assert quiet.write_json(tmp_path / "a.json", {"a": 1}) is None
    assert not (tmp_path / "a.json").exists()
    net = small_net()
    X = torch.randn(10, 2, dtype=torch.float64)
    fit(net, (X, torch.zeros(10, dtype=torch.long)), epochs=2, reporter=quiet)
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err == ""
    stream = io.StringIO()
    Reporter(stream=stream).print("shown")
    assert stream.getvalue() == "shown\n"


def test_custom_loader_and_before_step_hook(moons):
    """The hooks a data-parallel runner needs: its own loader and a call between backward and
    step (here: halving the gradient, which must equal training with half the lr under SGD)."""
    X, y = moons.train
    batches = [(X[:10], y[:10]), (X[10:30], y[10:30])]
    seen = []

    def halve(net):
        seen.append(net.A.grad.clone())
        net.A.grad.mul_(0.5)

    a = small_net()
    fit(
        a,
        (X, y),
        loader=batches,
        before_step=halve,
        optimizer="sgd",
        lr=0.2,
        epochs=2,
        progress=False,
    )
    b = small_net()
    fit(b, (X, y), loader=batches, optimizer="sgd", lr=0.1, epochs=2, progress=False)
    assert len(seen) == 4 and all(g.abs().sum() > 0 for g in seen)
    torch.testing.assert_close(a.A, b.A, rtol=1e-12, atol=1e-14)


def test_divergence_is_reported_as_a_value_error(moons):
    from meshprop.training import DivergenceError

    def infinite(y, target):
        return y.sum() * float("inf")

    with pytest.raises(DivergenceError, match="training diverged") as info:
        fit(small_net(), moons.train, loss=infinite, epochs=1, progress=False)
    assert isinstance(info.value, ValueError)


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_progress_bar_shows_the_running_loss_on_a_terminal_only(moons, monkeypatch):
    terminal = _Terminal()
    monkeypatch.setattr("sys.stderr", terminal)
    fit(small_net(), moons.train, moons.val, epochs=3, progress=True)
    shown = terminal.getvalue()
    assert "training (fop)" in shown and "loss=" in shown and "val_loss=" in shown
    piped = io.StringIO()  # not a terminal: tqdm's disable=None hides the bar
    monkeypatch.setattr("sys.stderr", piped)
    fit(small_net(), moons.train, epochs=2, progress=True)
    assert piped.getvalue() == ""
    monkeypatch.setattr("sys.stderr", terminal)
    terminal.seek(0)
    terminal.truncate()
    fit(small_net(), moons.train, epochs=2, progress=False)
    assert terminal.getvalue() == ""
