"""The ``meshprop`` command through its entry point, in temporary directories."""

from __future__ import annotations

import csv
import json
import subprocess
import sys

import numpy as np
import pytest

import meshprop as mp
from meshprop.cli import main


@pytest.fixture(autouse=True)
def in_tmp(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    return tmp_path


def run_cli(capsys, *argv):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


FAST = ["--epochs", "3", "--no-progress"]


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_train_writes_metrics_checkpoint_and_plots_and_evaluate_reproduces_them(
    capsys, in_tmp, dtype
):
    code, out, err = run_cli(
        capsys,
        "train",
        "--dataset",
        "moons",
        "--samples",
        "200",
        "--dtype",
        dtype,
        *FAST,
        "--out",
        "run",
    )
    assert code == 0, err
    assert "test accuracy" in out and "moons" in out
    names = {p.name for p in (in_tmp / "run").iterdir()}
    assert names == {
        "metrics.json",
        "checkpoint",
        "curves.png",
        "topology.png",
        "decision_boundary.png",
    }
    assert {p.name for p in (in_tmp / "run" / "checkpoint").iterdir()} == {
        "model.json",
        "model.safetensors",
    }
    metrics = json.loads((in_tmp / "run" / "metrics.json").read_text())
    assert len(metrics["history"]["epochs"]) == 3 and metrics["config"]["n_samples"] == 200
    code, out, err = run_cli(capsys, "evaluate", "run/checkpoint", "--json")
    assert code == 0, err
    assert json.loads(out)["test_accuracy"] == metrics["test_accuracy"]
    assert json.loads(out)["test_loss"] == metrics["test_loss"]


def test_train_defaults_use_the_builtin_dataset(capsys, in_tmp):
    code, _, err = run_cli(capsys, "train", "--epochs", "1", "--no-progress", "--out", "d")
    assert code == 0, err
    metrics = json.loads((in_tmp / "d" / "metrics.json").read_text())
    assert metrics["config"]["dataset"] == "moons" and 0.0 <= metrics["test_accuracy"] <= 1.0


def test_train_options_reach_the_model(capsys, in_tmp):
    code, _, err = run_cli(
        capsys,
        "train",
        "--dataset",
        "iris",
        "--hidden",
        "6",
        "--ticks",
        "2",
        "--density",
        "0.5",
        "--activation",
        "tanh",
        "--grad",
        "bptt",
        "--optimizer",
        "sgd",
        "--lr",
        "0.05",
        "--momentum",
        "0.9",
        "--batch-size",
        "7",
        "--seed",
        "3",
        "--val-size",
        "0.2",
        "--patience",
        "5",
        *FAST,
        "--out",
        "r",
    )
    assert code == 0, err
    net, doc = mp.checkpoint.load_checkpoint(in_tmp / "r" / "checkpoint")
    assert (net.ticks, net.topology.n_hidden, net.activation, net.grad) == (2, 6, "tanh", "bptt")
    full = mp.Topology.mesh(4, 6, 3).n_edges
    assert net.topology.n_edges == round(0.5 * full)
    assert doc["config"]["optimizer"] == "sgd" and doc["config"]["batch_size"] == 7
    metrics = json.loads((in_tmp / "r" / "metrics.json").read_text())
    assert "val_loss" in metrics["history"]["epochs"][0]
    assert metrics["dataset"]["val"] == 30 and metrics["dataset"]["test"] == 45


@pytest.mark.parametrize("grad", mp.GRADIENT_METHODS)
def test_every_registered_engine_is_accepted(capsys, grad):
    code, _, err = run_cli(
        capsys,
        "train",
        "--dataset",
        "moons",
        "--samples",
        "40",
        "--hidden",
        "2",
        "--epochs",
        "1",
        "--no-progress",
        "--grad",
        grad,
        "--out",
        f"g-{grad}",
    )
    assert code == 0, err


def write_csv(path, header, rows):
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        writer.writerows(rows)
    return path


def test_csv_classification_train_evaluate_predict(capsys, in_tmp):
    rng = np.random.default_rng(0)
    X = rng.normal(size=(90, 3))
    labels = np.where(X[:, 0] + X[:, 1] > 0, "yes", "no")
    write_csv(
        in_tmp / "d.csv",
        ["a", "b", "c", "label"],
        [[*map(float, x), lab] for x, lab in zip(X, labels, strict=True)],
    )
    code, _, err = run_cli(
        capsys,
        "train",
        "--data",
        "d.csv",
        "--target",
        "label",
        "--epochs",
        "5",
        "--no-progress",
        "--out",
        "c",
    )
    assert code == 0, err
    metrics = json.loads((in_tmp / "c" / "metrics.json").read_text())
    code, out, _ = run_cli(capsys, "evaluate", "c/checkpoint", "--json")
    assert json.loads(out)["test_accuracy"] == metrics["test_accuracy"]
    code, out, err = run_cli(capsys, "predict", "c/checkpoint", "--data", "d.csv", "--out", "p.csv")
    assert code == 0, err
    with open(in_tmp / "p.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == 90 and set(rows[0]) == {"row", "prediction", "p_no", "p_yes"}
    assert {r["prediction"] for r in rows} <= {"yes", "no"}
    for r in rows:
        assert float(r["p_no"]) + float(r["p_yes"]) == pytest.approx(1.0, abs=1e-5)
    # evaluating on the whole file: the accuracy of the written predictions
    code, out, _ = run_cli(
        capsys, "evaluate", "c/checkpoint", "--data", "d.csv", "--split", "all", "--json"
    )
    agree = np.mean([r["prediction"] == lab for r, lab in zip(rows, labels, strict=True)])
    assert json.loads(out)["test_accuracy"] == pytest.approx(agree, abs=1e-12)


def test_csv_regression_reports_mse_in_original_units(capsys, in_tmp):
    rng = np.random.default_rng(1)
    X = rng.normal(size=(80, 2))
    y = 100 + 20 * X[:, 0]
    write_csv(
        in_tmp / "r.csv",
        ["u", "v", "price"],
        [[*x, t] for x, t in zip(X.tolist(), y.tolist(), strict=True)],
    )
    code, out, err = run_cli(
        capsys,
        "train",
        "--data",
        "r.csv",
        "--target",
        "price",
        "--epochs",
        "20",
        "--lr",
        "0.02",
        "--activation",
        "tanh",
        "--no-progress",
        "--out",
        "r",
    )
    assert code == 0, err
    metrics = json.loads((in_tmp / "r" / "metrics.json").read_text())
    assert metrics["dataset"]["task"] == "regression" and metrics["test_r2"] > 0.5
    code, out, _ = run_cli(capsys, "evaluate", "r/checkpoint", "--json")
    assert json.loads(out)["test_mse"] == metrics["test_mse"]
    code, out, _ = run_cli(capsys, "predict", "r/checkpoint", "--data", "r.csv")
    values = [float(r["prediction"]) for r in csv.DictReader(out.splitlines())]
    assert len(values) == 80 and 60 < np.mean(values) < 140  # original units, not z-scores


@pytest.mark.parametrize(
    ("rows", "message"),
    [
        ([[1, 2, 0], [3, "nan", 1], [4, 5, 0]], "d.csv: column 'b', row 2 holds 'nan'"),
        ([[1, 2, 0], [3, 4, 1], ["x7", 5, 0]], "d.csv: column 'a', row 3 holds 'x7', not a"),
        ([[1, 2, 1], [3, 4, 1], [4, 5, 1]], "d.csv: target column 't' holds a single class"),
    ],
)
def test_bad_csv_gives_one_clear_line_and_exit_2(capsys, in_tmp, rows, message):
    write_csv(in_tmp / "d.csv", ["a", "b", "t"], rows)
    code, _, err = run_cli(capsys, "train", "--data", "d.csv", "--target", "t", *FAST)
    assert code == 2
    assert message in err and "Traceback" not in err and len(err.strip().splitlines()) == 1
    with pytest.raises(ValueError, match=r"row|single class"):
        main(["--debug", "train", "--data", "d.csv", "--target", "t", *FAST])


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["train", "--dataset", "mnist", *FAST], "unknown dataset 'mnist'"),
        (["train", "--data", "none.csv", "--target", "t", *FAST], "none.csv"),
        (["train", "--data", "x.csv", *FAST], "needs a target column"),
        (["train", "--grad", "magic", "--epochs", "1"], "unknown gradient method 'magic'"),
        (["train", "--optimizer", "lbfgs", "--epochs", "1"], "unknown optimizer 'lbfgs'"),
        (["evaluate", "nowhere"], "no checkpoint at 'nowhere'"),
    ],
)
def test_usage_errors(capsys, argv, message):
    code, _, err = run_cli(capsys, *argv)
    assert code == 2 and message in err and "Traceback" not in err


@pytest.mark.parametrize("command", ["train", "evaluate", "predict", "reproduce"])
def test_help_of_every_subcommand(capsys, command):
    with pytest.raises(SystemExit) as exit_info:
        main([command, "--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith(f"usage: meshprop {command}")
    if command == "train":
        for option in (
            "--dataset",
            "--data",
            "--target",
            "--hidden",
            "--ticks",
            "--density",
            "--activation",
            "--grad",
            "--optimizer",
            "--lr",
            "--epochs",
            "--batch-size",
            "--seed",
            "--out",
        ):
            assert option in out
        for name in mp.GRADIENT_METHODS:
            assert name in out


def test_console_script_entry_point(in_tmp):
    done = subprocess.run(
        [sys.executable, "-m", "meshprop", "--help"], capture_output=True, text=True, check=False
    )
    assert done.returncode == 0
    for command in ("train", "evaluate", "predict", "reproduce"):
        assert command in done.stdout


def test_reproduce_commands_write_their_results(capsys, in_tmp):
    code, out, err = run_cli(
        capsys, "reproduce", "iris", "--seeds", "2", "--epochs", "2", "--out", "iris"
    )
    assert code == 0, err
    summary = json.loads((in_tmp / "iris" / "iris.json").read_text())
    assert [r["seed"] for r in summary["runs"]["fop"]] == [0, 1]
    assert summary["same_accuracy"] is True and summary["max_final_weight_difference"] < 1e-10
    assert "mean ± std" in out
    code, out, err = run_cli(
        capsys,
        "reproduce",
        "toys",
        "--sets",
        "moons",
        "--epochs",
        "2",
        "--frames",
        "2",
        "--out",
        "toys",
    )
    assert code == 0, err
    assert {p.name for p in (in_tmp / "toys").iterdir()} == {
        "moons.gif",
        "moons.png",
        "summary.json",
        "summary.md",
        "toys.png",
    }
    from PIL import Image

    with Image.open(in_tmp / "toys" / "moons.gif") as gif:
        assert gif.n_frames == 2
