"""``meshprop timeseries`` and the Mackey–Glass generator."""

from __future__ import annotations

import argparse
import json

import numpy as np
import pytest
import torch

from meshprop import cli
from meshprop.commands import timeseries
from meshprop.commands.timeseries import ar_baseline, train_diagram
from meshprop.diagram import examples
from meshprop.diagram.series import mackey_glass


def reciprocal_adam(d, x, t, loss, epochs: int, lr: float) -> list[float]:
    """The loop ``meshprop timeseries`` ran before it trained through ``fit``: full-batch Adam
    on the reciprocal network's gradients (paper 004).  Returns the loss of every step."""
    opt = torch.optim.Adam(d.parameters(), lr=lr)
    params = d.parameter_dict()
    values = []
    for _ in range(epochs):
        value, grads = d.gradient(x, t, loss=loss, method="reciprocal")
        for name, p in params.items():
            p.grad = grads[name]
        opt.step()
        values.append(float(value))
    return values


def test_mackey_glass_converges_with_the_step_and_stays_on_the_attractor() -> None:
    coarse = mackey_glass(60, sample_every=1.0, dt=0.1, discard=0.0)
    fine = mackey_glass(60, sample_every=1.0, dt=0.05, discard=0.0)
    finer = mackey_glass(60, sample_every=1.0, dt=0.025, discard=0.0)
    # RK4 with linearly interpolated delay terms converges at second order (the interpolation
    # error O(dt²) dominates): halving dt divides the difference by 4
    e1, e2 = np.max(np.abs(coarse - fine)), np.max(np.abs(fine - finer))
    assert e1 < 1e-4
    assert 3.5 < e1 / e2 < 4.5
    assert coarse[0] == 1.2
    long = mackey_glass(3000, sample_every=1.0)
    assert 0.2 < long.min() < 0.6 and 1.1 < long.max() < 1.4  # the τ = 17 attractor's range
    # the series obeys the delay equation: central differences ≈ right-hand side
    x = mackey_glass(400, sample_every=0.1, dt=0.1, discard=100.0)
    lag = 170
    deriv = (x[lag + 2 :] - x[lag:-2]) / 0.2
    xd = x[1 : len(x) - lag - 1]
    rhs = 0.2 * xd / (1 + xd**10) - 0.1 * x[lag + 1 : -1]
    assert np.max(np.abs(deriv - rhs)) < 1e-3
    with pytest.raises(ValueError, match="multiples of dt"):
        mackey_glass(10, sample_every=0.25)


def test_ar_baseline_is_least_squares() -> None:
    from sklearn.linear_model import LinearRegression

    rng = np.random.default_rng(0)
    s = np.zeros(5000)
    for k in range(2, 5000):
        s[k] = 0.6 * s[k - 1] - 0.3 * s[k - 2] + 0.1 + rng.standard_normal()
    coef, pred = ar_baseline(s, 4000, 2)
    assert np.allclose(coef, [0.6, -0.3, 0.1], atol=0.05)  # recovers the process
    X = np.stack([s[1:3999], s[0:3998]], axis=1)
    sk = LinearRegression().fit(X, s[2:4000])
    assert np.allclose(coef, [*sk.coef_, sk.intercept_], rtol=1e-9, atol=1e-12)
    assert np.isclose(pred[5], coef[0] * s[6] + coef[1] * s[5] + coef[2])


@pytest.mark.slow
def test_fir_network_beats_linear_ar_on_mackey_glass(tmp_path) -> None:
    out = tmp_path / "fir"
    rc = cli.main(
        [
            "timeseries",
            "--dataset",
            "mackey-glass",
            "--samples",
            "500",
            "--model",
            "fir",
            "--taps",
            "8",
            "--hidden",
            "6",
            "--epochs",
            "80",  # test NMSE 0.052 against AR 0.150 (150 epochs: 0.017)
            "--out",
            str(out),
        ]
    )
    assert rc == 0
    m = json.loads((out / "metrics.json").read_text())
    assert m["test_nmse"] < m["ar_test_nmse"]
    # the baseline in metrics.json is an honest least-squares AR on the same window
    s = mackey_glass(500, sample_every=6.0)
    n_train = int(0.7 * 500)
    order = m["ar_order"]
    assert order == 8 + 2 + 1
    X = np.stack([s[order - 1 - j : -1 - j] for j in range(order)], axis=1)
    X = np.concatenate([X, np.ones((len(X), 1))], axis=1)
    c, *_ = np.linalg.lstsq(X[: n_train - order], s[order:n_train], rcond=None)
    test = (X @ c)[n_train - order :]
    nmse = np.mean((test - s[n_train:]) ** 2) / np.var(s[n_train:])
    assert m["ar_test_nmse"] == pytest.approx(nmse, rel=1e-9)
    assert (out / "prediction.png").read_bytes()[:4] == b"\x89PNG"
    assert (out / "diagram.png").stat().st_size > 10_000


@pytest.mark.slow
@pytest.mark.parametrize("build", ["fir", "narx"])
def test_training_through_fit_is_the_reciprocal_adam_loop(rng, build: str) -> None:
    """Same arithmetic in the same order: identical losses and weights, bit for bit."""
    make = {
        "fir": lambda: examples.fir_network((1, 3, 1), (3, 1), seed=4),
        "narx": lambda: examples.narx(1, 3, 1, input_taps=2, output_taps=2, seed=4),
    }[build]
    d, reference = make(), make()
    x = torch.randn(25, 6, 1, generator=rng, dtype=torch.float64)
    t = torch.tanh(x.roll(-1, dims=0))

    def loss(y: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return ((y[3:] - target[3:]) ** 2).mean()

    history = train_diagram(d, x, t, loss, epochs=12, lr=0.02)
    expected = reciprocal_adam(reference, x, t, loss, epochs=12, lr=0.02)
    assert history["batch_loss"] == expected and expected[-1] < expected[0]
    for (name, a), b in zip(d.named_parameters(), reference.parameters(), strict=True):
        assert torch.equal(a, b), name


def reference_run(values: np.ndarray, model: str, epochs: int, window: int) -> dict[str, float]:
    """``meshprop timeseries --taps 3 --hidden 4`` computed by hand: standardise on the first
    70 %, train on every window with the loop above, predict the whole series in one run."""
    args = argparse.Namespace(model=model, taps=3, hidden=4, hidden_taps=2, seed=0)  # fields used
    torch.manual_seed(0)
    d, field = timeseries._build(args)
    n_train, order, burn = int(0.7 * len(values)), field + 1, min(field, window // 2)
    mean, std = values[:n_train].mean(), values[:n_train].std()
    z = (values - mean) / std
    idx = np.arange(n_train - window)[:, None] + np.arange(window)[None, :]
    x, t = torch.as_tensor(z[idx].T[:, :, None]), torch.as_tensor(z[idx + 1].T[:, :, None])
    losses = reciprocal_adam(
        d, x, t, lambda y, d_: ((y[burn:] - d_[burn:]) ** 2).mean(), epochs, lr=0.01
    )
    with torch.no_grad():
        pred = d.run(torch.as_tensor(z[:-1, None, None]))[:, 0, 0].numpy() * std + mean
    error = (pred - values[1:]) ** 2
    test, train = slice(n_train - 1, None), slice(order - 1, n_train - 1)
    return {
        "final_train_loss": losses[-1],
        "test_nmse": float(error[test].mean() / values[1:][test].var()),
        "train_nmse": float(error[train].mean() / values[1:][train].var()),
    }


@pytest.mark.slow
@pytest.mark.parametrize("model", ["narx", "mesh"])
def test_csv_series_with_feedback_models(tmp_path, model: str) -> None:
    k = np.arange(240)
    rng = np.random.default_rng(1)
    values = np.sin(0.3 * k) + 0.5 * np.sin(0.11 * k) + 0.01 * rng.standard_normal(240)
    path = tmp_path / "s.csv"
    path.write_text("t,value\n" + "".join(f"{i},{v}\n" for i, v in zip(k, values, strict=True)))
    out = tmp_path / model
    rc = cli.main(
        [
            "timeseries",
            "--data",
            str(path),
            "--column",
            "value",
            "--model",
            model,
            "--taps",
            "3",
            "--hidden",
            "4",
            "--epochs",
            "40",
            "--window",
            "16",
            "--out",
            str(out),
        ]
    )
    assert rc == 0
    m = json.loads((out / "metrics.json").read_text())
    assert m["model"] == model and m["n_train"] == 168 and m["n_test"] == 72
    expected = reference_run(values, model, epochs=40, window=16)
    for key, value in expected.items():
        assert m[key] == pytest.approx(value, rel=1e-12), key
    assert m["test_nmse"] < 1.0  # better than predicting the mean


def test_bad_input_is_one_line_error_and_writes_nothing(tmp_path, capsys) -> None:
    path = tmp_path / "s.csv"
    out = tmp_path / "out"
    path.write_text("a,b\n1,2\n3,x\n")
    assert cli.main(["timeseries", "--data", str(path), "--column", "c", "--out", str(out)]) == 2
    assert "column 'c' not in" in capsys.readouterr().err
    assert cli.main(["timeseries", "--data", str(path), "--column", "b", "--out", str(out)]) == 2
    assert "line 3" in capsys.readouterr().err
    assert cli.main(["timeseries", "--data", str(path), "--out", str(out)]) == 2
    assert "--column" in capsys.readouterr().err
    assert cli.main(["timeseries", "--out", str(out)]) == 2
    assert "give a CSV file (--data) or a generated series (--dataset)" in capsys.readouterr().err
    path.write_text("a\n" + "".join(f"{i}\n" for i in range(20)))
    assert cli.main(["timeseries", "--data", str(path), "--column", "a", "--out", str(out)]) == 2
    assert "too short" in capsys.readouterr().err
    # the strict reader of meshprop online --data: a blank line inside the data is refused
    # with its row (it used to be skipped silently, shifting the series)
    path.write_text("a\n1\n2\n\n3\n")
    assert cli.main(["timeseries", "--data", str(path), "--column", "a", "--out", str(out)]) == 2
    assert "row 3 (line 4)" in capsys.readouterr().err
    assert not out.exists()  # every refusal came before anything was written


TINY = ["timeseries", "--dataset", "mackey-glass", "--samples", "120", "--taps", "2",
        "--hidden", "2", "--hidden-taps", "1", "--window", "8", "--no-progress"]  # fmt: skip


@pytest.mark.slow
def test_a_second_run_is_refused_unless_resume_or_overwrite(tmp_path, capsys) -> None:
    out = tmp_path / "run"
    assert cli.main([*TINY, "--epochs", "3", "--out", str(out)]) == 0
    manifest = json.loads((out / "run.json").read_text())
    assert manifest["complete"] and manifest["command"] == "timeseries"
    assert set(manifest["files"]) == {
        "config.json", "metrics.json", "prediction.png", "diagram.png", "training-state.pt"
    }  # fmt: skip
    first = (out / "metrics.json").read_bytes()
    assert cli.main([*TINY, "--epochs", "3", "--out", str(out)]) == 2
    assert "already holds a finished run" in capsys.readouterr().err
    assert (out / "metrics.json").read_bytes() == first
    assert cli.main([*TINY, "--epochs", "4", "--out", str(out), "--resume"]) == 2
    assert "--epochs 4 (the run: 3)" in capsys.readouterr().err
    # the saved config.json is itself a --config file; --overwrite replaces the run
    config = tmp_path / "config.json"
    config.write_bytes((out / "config.json").read_bytes())
    assert cli.main(["timeseries", "--config", str(config), "--seed", "1", "--out", str(out),
                     "--overwrite", "--no-progress"]) == 0  # fmt: skip
    saved = json.loads((out / "config.json").read_text())
    assert saved["seed"] == 1 and saved["epochs"] == 3 and saved["samples"] == 120
    assert cli.main(["train", "--out", str(out), "--resume"]) == 2  # not a run of train
    assert "holds a run of `meshprop timeseries`" in capsys.readouterr().err


@pytest.mark.subprocess
def test_killed_and_resumed_equals_the_uninterrupted_run(tmp_path) -> None:
    from killing import kill_when

    arguments = [*TINY, "--epochs", "40", "--checkpoint-every", "2"]
    out = tmp_path / "killed"
    status = kill_when(
        [*arguments, "--out", str(out)], lambda: (out / "training-state.pt").exists(),
        tmp_path / "log",
    )  # fmt: skip
    assert status == -9 and not json.loads((out / "run.json").read_text())["complete"]
    assert cli.main([*arguments, "--out", str(out), "--resume"]) == 0
    assert cli.main([*arguments, "--out", str(tmp_path / "whole")]) == 0
    resumed = json.loads((out / "metrics.json").read_text())
    whole = json.loads((tmp_path / "whole" / "metrics.json").read_text())
    resumed.pop("train_seconds"), whole.pop("train_seconds")
    assert resumed == whole  # bit for bit: losses and NMSE equal as floats


def test_fit_trains_a_diagram_in_mini_batches_along_its_batch_axis(rng) -> None:
    """``mp.fit`` on a Diagram: batches are cut along axis 1 of (T, B, width) and each step is
    the reciprocal network's gradient of that batch, like a hand-written loop."""
    import meshprop as mp
    from meshprop.training import make_loader

    d = examples.narx(1, 3, 1, input_taps=2, output_taps=2, seed=5)
    reference = examples.narx(1, 3, 1, input_taps=2, output_taps=2, seed=5)
    x = torch.randn(20, 7, 1, generator=rng, dtype=torch.float64)
    t = torch.tanh(x.roll(-1, dims=0))
    d.grad = "reciprocal"
    history = mp.fit(
        d,
        (x, t),
        loss="mse",
        optimizer="sgd",
        lr=0.05,
        epochs=3,
        batch_size=3,
        seed=11,
        progress=False,
        evaluate_train=False,
    )
    opt = torch.optim.SGD(reference.parameters(), lr=0.05)
    params = reference.parameter_dict()
    loader = make_loader(x, t, 3, seed=11, dim=1)  # reshuffled every epoch
    epoch_means = []
    for _ in range(3):
        total = 0.0
        for xb, tb in loader:
            value, grads = reference.gradient(xb, tb, loss="mse", method="reciprocal")
            for name, p in params.items():
                p.grad = grads[name]
            opt.step()
            total += float(value) * xb.shape[1]
        epoch_means.append(total / x.shape[1])  # batch_loss: the sample-weighted mean
    assert history["batch_loss"] == pytest.approx(epoch_means, rel=1e-12)
    for (name, a), b in zip(d.named_parameters(), reference.parameters(), strict=True):
        assert torch.allclose(a, b, rtol=1e-12, atol=1e-14), name
