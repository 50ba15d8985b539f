"""fit, loaders, metrics, early stopping, checkpoints and the Reporter."""

from __future__ import annotations

import copy
import io

import numpy as np
import pytest
import torch

import meshprop as mp
from meshprop.checkpoint import load_checkpoint, save_checkpoint
from meshprop.data import load_dataset, split_dataset
from meshprop.reporting import Reporter
from meshprop.threads import DEFAULT_THREADS
from meshprop.training import (
    DivergenceError,
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


@pytest.mark.slow
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


@pytest.mark.slow
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


# ------------------------------------------------------------------ any model, any array
def test_numpy_arrays_train_exactly_like_tensors(moons):
    X, y = moons.train
    runs = []
    for data in [(X, y), (X.numpy(), y.numpy().astype(np.int32))]:
        net = small_net()
        h = fit(net, data, (moons.val[0].numpy(), moons.val[1].numpy()), epochs=2, progress=False)
        runs.append((net.A.detach().clone(), h.records))
    assert torch.equal(runs[0][0], runs[1][0]) and runs[0][1] == runs[1][1]
    # float32 arrays are converted to the model's dtype, like float32 tensors
    a, b = small_net(), small_net()
    fit(a, (X.float(), y), epochs=1, progress=False)
    fit(b, (X.float().numpy(), y.numpy()), epochs=1, progress=False)
    assert torch.equal(a.A, b.A)
    # regression targets as float32 arrays become the model's float64
    Xr = np.linspace(-1, 1, 40).reshape(20, 2)
    yr = (Xr[:, :1] * 0.5).astype(np.float32)
    net = mp.MeshNet(mp.Topology.mesh(2, 2, 1), ticks=2, dtype=torch.float64, seed=0)
    h = fit(net, (Xr, yr), loss="mse", epochs=1, progress=False)
    with torch.no_grad():
        out = net(torch.from_numpy(Xr))
    expected = float(((out - torch.from_numpy(yr).double()) ** 2).mean())
    assert h["train_mse"][-1] == pytest.approx(expected, rel=1e-12)


def test_fit_rejects_bad_arrays_with_a_clear_message():
    net = small_net()
    X = np.zeros((6, 2))
    labels = np.array([0, 1, 0, 1, 0, 1])
    with pytest.raises(TypeError, match="must be a pair"):
        fit(net, X, progress=False)
    with pytest.raises(TypeError, match="NumPy array or a torch tensor"):
        fit(net, (X.tolist(), labels), progress=False)
    with pytest.raises(TypeError, match="must hold numbers"):
        fit(net, (X.astype(object), labels), progress=False)
    bad = X.copy()
    bad[3, 1] = np.nan
    with pytest.raises(
        ValueError, match=r"train_data: X contains NaN or inf \(first at index \(3, 1\)\)"
    ):
        fit(net, (bad, labels), progress=False)
    with pytest.raises(ValueError, match=r"X must have shape \(samples, 2\), got \(6, 2, 1\)"):
        fit(net, (X[:, :, None], labels), progress=False)
    with pytest.raises(ValueError, match="X has 6 rows but y has 5"):
        fit(net, (X, labels[:5]), progress=False)
    with pytest.raises(TypeError, match="integer class labels"):
        fit(net, (X, labels.astype(float)), progress=False)
    with pytest.raises(ValueError, match="label 2 is out of range"):
        fit(net, (X, labels + 1), progress=False)
    with pytest.raises(ValueError, match=r"mse expects a target of shape \(6, 2\)"):
        fit(net, (X, np.zeros((6, 1))), loss="mse", progress=False)
    with pytest.raises(ValueError, match="val_data: X contains NaN"):
        fit(net, (X, labels), (bad, labels), progress=False)
    with pytest.raises(ValueError, match="unknown loss 'hinge'"):
        fit(net, (X, labels), loss="hinge", progress=False)
    with pytest.raises(TypeError, match=r"must be a torch\.nn\.Module"):
        fit(lambda x: x, (X, labels), progress=False)


def test_fit_applies_the_one_thread_policy(moons):
    def seen(threads):
        counts = []
        fit(
            small_net(),
            moons.train,
            epochs=2,
            progress=False,
            threads=threads,
            callback=lambda e, n, r: counts.append(torch.get_num_threads()),
        )
        return counts

    before = torch.get_num_threads()
    torch.set_num_threads(3)
    try:
        assert seen(None) == [DEFAULT_THREADS] * 2 and DEFAULT_THREADS == 1
        assert seen(2) == [2, 2]
        assert seen(0) == [3, 3]  # 0: torch's own setting, untouched
        assert torch.get_num_threads() == 3  # restored after training
        with pytest.raises(ValueError, match="threads must be an integer >= 0"):
            fit(small_net(), moons.train, progress=False, threads=-1)
    finally:
        torch.set_num_threads(before)


def test_any_module_trains_like_a_hand_written_loop(moons):
    """fit on a plain torch module = the textbook loop over make_loader's batches."""
    X, y = moons.train
    a = torch.nn.Sequential(torch.nn.Linear(2, 5), torch.nn.Tanh(), torch.nn.Linear(5, 2)).double()
    b = copy.deepcopy(a)
    h = fit(a, (X, y), epochs=3, batch_size=16, lr=0.01, seed=4, progress=False)
    opt = torch.optim.Adam(b.parameters(), lr=0.01)
    loader = make_loader(X, y, 16, seed=4)
    losses = []
    for _ in range(3):
        total = 0.0
        for xb, yb in loader:
            opt.zero_grad()
            value = torch.nn.functional.cross_entropy(b(xb), yb)
            value.backward()
            opt.step()
            total += float(value.detach()) * len(xb)
        losses.append(total / len(X))
    for p, q in zip(a.parameters(), b.parameters(), strict=True):
        assert torch.equal(p, q)
    assert h["batch_loss"] == pytest.approx(losses, rel=1e-12)
    with torch.no_grad():
        expected = float((b(X).argmax(dim=1) == y).double().mean())
    assert h["train_accuracy"][-1] == expected


class _Recurrent(torch.nn.Module):
    """A sequence model with inputs and outputs shaped (T, B, width)."""

    def __init__(self):
        super().__init__()
        self.rnn = torch.nn.RNN(2, 4, dtype=torch.float64)
        self.readout = torch.nn.Linear(4, 1, dtype=torch.float64)

    def forward(self, x):
        return self.readout(self.rnn(x)[0])


def test_sequences_are_batched_along_their_samples_axis(rng):
    X = torch.randn(7, 10, 2, generator=rng, dtype=torch.float64)  # (T, B, width)
    Y = X.sum(dim=2, keepdim=True).cumsum(dim=0) * 0.1
    loader = make_loader(X, Y, 4, seed=2, dim=1)
    batches = list(loader)
    assert [xb.shape for xb, _ in batches] == [(7, 4, 2), (7, 4, 2), (7, 2, 2)]
    order = torch.cat([xb for xb, _ in batches], dim=1)
    assert sorted(order[0, :, 0].tolist()) == sorted(X[0, :, 0].tolist())  # every sample once
    for xb, yb in batches:  # x and y stay paired
        torch.testing.assert_close(yb, xb.sum(dim=2, keepdim=True).cumsum(dim=0) * 0.1)
    a = _Recurrent()
    b = copy.deepcopy(a)
    h = fit(a, (X, Y), loss="mse", epochs=2, batch_size=4, seed=2, batch_dim=1, progress=False)
    opt = torch.optim.Adam(b.parameters(), lr=1e-3)
    loader = make_loader(X, Y, 4, seed=2, dim=1)  # a fresh one: each epoch draws a new order
    for _ in range(2):
        for xb, yb in loader:
            opt.zero_grad()
            torch.nn.functional.mse_loss(b(xb), yb).backward()
            opt.step()
    for p, q in zip(a.parameters(), b.parameters(), strict=True):
        assert torch.equal(p, q)
    with torch.no_grad():
        assert h["train_mse"][-1] == pytest.approx(float(((b(X) - Y) ** 2).mean()), rel=1e-12)
    with pytest.raises(ValueError, match=r"X has 10 samples \(axis 1\) but y has 9"):
        fit(_Recurrent(), (X, Y[:, :9]), loss="mse", batch_dim=1, progress=False)


def test_evaluate_takes_arrays_and_matches_the_metric_definitions(moons):
    net = small_net()
    X, y = moons.test
    m = evaluate(net, X.numpy(), y.numpy())
    with torch.no_grad():
        out = net(X)
    assert m["loss"] == pytest.approx(float(torch.nn.functional.cross_entropy(out, y)), rel=1e-14)
    assert m["accuracy"] == float((out.argmax(dim=1) == y).double().mean())


class _OneProcess:
    """The two calls the loop makes on a DataParallel, for a world of one process."""

    last_batch_size = 0

    def all_reduce_gradients(self, parameters, n_local, loss_local):
        self.last_batch_size = n_local
        return n_local, loss_local


def test_a_diverging_shard_stops_every_process_after_the_reduction(moons):
    """With parallel, a NaN loss is not raised before the all-reduce (the peers would wait for
    it forever): it is reduced into the batch loss, which every process then rejects."""
    net = small_net()
    before = net.A.detach().clone()
    opt = torch.optim.SGD(net.parameters(), lr=0.1)
    x, y = moons.train[0][:4], moons.train[1][:4]
    with pytest.raises(DivergenceError, match="the loss is nan"):
        train_step(net, opt, x, y, lambda out, t: out.sum() * float("nan"), parallel=_OneProcess())
    assert net.A.grad is not None and torch.isnan(net.A.grad).any()  # the reduction happened
    assert torch.equal(net.A.detach(), before)  # but no step


def test_an_empty_batch_is_an_error_in_one_process(moons):
    net = small_net()
    opt = torch.optim.SGD(net.parameters(), lr=0.1)
    x, y = moons.train[0][:0], moons.train[1][:0]
    with pytest.raises(ValueError, match="a batch holds no samples"):
        train_step(net, opt, x, y)
    with pytest.raises(ValueError, match="the loader yielded no batches"):
        fit(net, moons.train, loader=[], progress=False)
