"""The ``meshprop`` command through its entry point, in temporary directories.

Every run is checked against an independent computation: the split redrawn with numpy's own
generator (the split meshprop has always drawn), features standardised by hand, the saved
model applied with plain torch functions.
"""

from __future__ import annotations

import csv
import json
import subprocess
import sys

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import meshprop as mp
from meshprop.cli import build_parser, main
from meshprop.runs import RunConfig


@pytest.fixture(autouse=True)
def in_tmp(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    return tmp_path


def run_cli(capsys, *argv):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


FAST = ["--epochs", "3", "--no-progress"]


def old_split(n, test_size, val_size, seed):
    """The split of meshprop 0.1, written out: one permutation by numpy's default generator,
    then test, validation and training parts in that order."""
    order = np.random.default_rng(seed).permutation(n)
    n_test, n_val = round(test_size * n), round(val_size * n)
    test, rest = order[:n_test], order[n_test:]
    return {"train": np.sort(rest[n_val:]), "val": np.sort(rest[:n_val]), "test": np.sort(test)}


def independent_test_metrics(run_dir):
    """test_loss and test_accuracy of a saved classification run, recomputed from scratch: the
    dataset reloaded, the split redrawn, standardised with training statistics by hand, and
    the saved weights applied."""
    config = json.loads((run_dir / "config.json").read_text())
    ds = mp.data.load_dataset(config["dataset"], config["n_samples"], config["seed"])
    parts = old_split(len(ds.y), config["test_size"], config["val_size"], config["seed"])
    train = ds.X[parts["train"]]
    z = (ds.X[parts["test"]] - train.mean(axis=0)) / train.std(axis=0)
    net, _ = mp.load_checkpoint(run_dir / "checkpoint")
    with torch.no_grad():
        logits = net(torch.as_tensor(z).to(net.A.dtype))
    labels = torch.as_tensor(ds.y[parts["test"]])
    accuracy = float((logits.argmax(dim=1) == labels).double().mean())
    return float(F.cross_entropy(logits, labels)), accuracy


@pytest.mark.slow
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
    names = {p.name for p in (in_tmp / "run").iterdir()}
    assert names == {
        "run.json",
        "training-state.pt",
        "config.json",
        "metrics.json",
        "metrics.csv",
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
    config = json.loads((in_tmp / "run" / "config.json").read_text())
    assert config.pop("provenance")["seed"] == config["seed"]
    assert config == metrics["config"] == RunConfig(n_samples=200, dtype=dtype, epochs=3).to_dict()
    assert len(metrics["history"]["epochs"]) == 3
    assert metrics["dataset"] | {"name": "moons"} == {
        "name": "moons",
        "task": "classification",
        "samples": 200,
        "features": 2,
        "classes": 2,
        "train": 140,
        "val": 0,
        "test": 60,
    }
    loss, accuracy = independent_test_metrics(in_tmp / "run")
    assert metrics["test_accuracy"] == accuracy
    tolerance = 1e-12 if dtype == "float64" else 1e-6
    assert metrics["test_loss"] == pytest.approx(loss, rel=tolerance)
    # the printed summary shows the same numbers
    assert f"test accuracy | {accuracy:.4f}" in out and f"test loss     | {loss:.4f}" in out
    code, out, err = run_cli(capsys, "evaluate", "run/checkpoint", "--json")
    assert code == 0, err
    assert json.loads(out) == {k: metrics[k] for k in ("test_loss", "test_accuracy")}


@pytest.mark.slow
def test_train_defaults_are_the_run_configuration_defaults(capsys, in_tmp):
    code, out, err = run_cli(capsys, "train", "--epochs", "1", "--no-progress", "--out", "d")
    assert code == 0, err
    metrics = json.loads((in_tmp / "d" / "metrics.json").read_text())
    assert metrics["config"] == RunConfig(epochs=1).to_dict()
    assert metrics["config"]["dataset"] == "moons" and metrics["config"]["hidden"] == 5
    assert (metrics["dataset"]["train"], metrics["dataset"]["test"]) == (700, 300)
    assert metrics["model"] == {"neurons": 10, "edges": 70, "arch": "mesh", "parameters": 70}
    loss, accuracy = independent_test_metrics(in_tmp / "d")
    assert metrics["test_accuracy"] == accuracy
    assert metrics["test_loss"] == pytest.approx(loss, rel=1e-12)
    assert "wrote 9 files to d: config.json, metrics.json, checkpoint/, curves.png" in out
    # the line names exactly what is in the folder
    line = next(x for x in out.splitlines() if x.startswith("wrote 9 files to d: "))
    listed = line.removeprefix("wrote 9 files to d: ").split(", ")
    assert sorted(listed) == sorted(
        p.name + "/" if p.is_dir() else p.name for p in (in_tmp / "d").iterdir()
    )


@pytest.mark.slow
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
    assert net.topology == mp.Topology.random(4, 6, 3, density=0.5, bias=True, seed=3)
    assert doc["config"]["optimizer"] == "sgd" and doc["config"]["batch_size"] == 7
    assert (doc["config"]["lr"], doc["config"]["momentum"]) == (0.05, 0.9)
    metrics = json.loads((in_tmp / "r" / "metrics.json").read_text())
    assert "val_loss" in metrics["history"]["epochs"][0]
    assert metrics["dataset"]["val"] == 30 and metrics["dataset"]["test"] == 45
    loss, accuracy = independent_test_metrics(in_tmp / "r")
    assert metrics["test_accuracy"] == accuracy
    assert metrics["test_loss"] == pytest.approx(loss, rel=1e-12)


@pytest.mark.slow
def test_every_registered_engine_trains_to_the_same_weights(capsys, in_tmp):
    """One SGD step per engine from the same start: the weights agree to rounding."""
    options = ["--dataset", "moons", "--samples", "40", "--hidden", "2", "--epochs", "1"]
    options += ["--optimizer", "sgd", "--lr", "0.5", "--batch-size", "64", "--no-progress"]
    start = mp.MeshNet(mp.Topology.mesh(2, 2, 2), ticks=3, dtype=torch.float64, seed=0).A.detach()
    weights = {}
    for grad in mp.GRADIENT_METHODS:
        code, _, err = run_cli(capsys, "train", *options, "--grad", grad, "--out", f"g-{grad}")
        assert code == 0, err
        net, doc = mp.load_checkpoint(in_tmp / f"g-{grad}" / "checkpoint")
        assert doc["config"]["grad"] == grad == net.grad
        weights[grad] = net.A.detach()
    reference = weights["autograd"]
    assert float((reference - start).abs().max()) > 1e-3  # the step moved the weights
    for grad, A in weights.items():
        assert float((A - reference).abs().max()) <= 1e-14, grad


def write_csv(path, header, rows):
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        writer.writerows(rows)
    return path


def standardised(X, document):
    s = document["standardizer"]
    return (X - np.asarray(s["mean"])) / np.asarray(s["std"])


@pytest.mark.slow
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
    assert metrics["config"]["data"] == str(in_tmp / "d.csv")  # absolute: found from anywhere
    net, document = mp.load_checkpoint(in_tmp / "c" / "checkpoint")
    assert document["class_names"] == ["no", "yes"] and document["feature_names"] == list("abc")
    # the stored statistics are the training part's, redrawn independently
    train = X[old_split(90, 0.3, 0.0, 0)["train"]]
    np.testing.assert_array_equal(document["standardizer"]["mean"], train.mean(axis=0))
    np.testing.assert_array_equal(document["standardizer"]["std"], train.std(axis=0))
    code, out, _ = run_cli(capsys, "evaluate", "c/checkpoint", "--json")
    assert json.loads(out)["test_accuracy"] == metrics["test_accuracy"]
    code, out, err = run_cli(capsys, "predict", "c/checkpoint", "--data", "d.csv", "--out", "p.csv")
    assert code == 0, err and out == "wrote 90 predictions to p.csv\n"
    with open(in_tmp / "p.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == 90 and list(rows[0]) == ["row", "prediction", "p_no", "p_yes"]
    # the predictions are the saved model applied to the standardised rows
    with torch.no_grad():
        probs = torch.softmax(net(torch.as_tensor(standardised(X, document))), dim=1).numpy()
    assert [r["row"] for r in rows] == [str(k) for k in range(1, 91)]
    assert [r["prediction"] for r in rows] == [["no", "yes"][k] for k in probs.argmax(axis=1)]
    written = np.array([[float(r["p_no"]), float(r["p_yes"])] for r in rows])
    np.testing.assert_allclose(written, probs, rtol=5e-6, atol=1e-300)
    # evaluating on the whole file: the accuracy of the written predictions
    code, out, _ = run_cli(
        capsys, "evaluate", "c/checkpoint", "--data", "d.csv", "--split", "all", "--json"
    )
    agree = np.mean([r["prediction"] == lab for r, lab in zip(rows, labels, strict=True)])
    assert json.loads(out)["test_accuracy"] == pytest.approx(agree, abs=1e-12)


@pytest.mark.slow
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
    net, document = mp.load_checkpoint(in_tmp / "r" / "checkpoint")
    train = old_split(80, 0.3, 0.0, 0)["train"]
    s = document["standardizer"]
    assert (s["y_mean"], s["y_std"]) == pytest.approx((y[train].mean(), y[train].std()), rel=1e-15)
    with torch.no_grad():
        z = net(torch.as_tensor(standardised(X, document)))[:, 0].numpy()
    expected = z * s["y_std"] + s["y_mean"]  # in the target's units
    test = old_split(80, 0.3, 0.0, 0)["test"]
    mse = float(np.mean((expected[test] - y[test]) ** 2))
    assert metrics["test_mse"] == pytest.approx(mse, rel=1e-10)
    code, out, _ = run_cli(capsys, "evaluate", "r/checkpoint", "--json")
    assert json.loads(out)["test_mse"] == metrics["test_mse"]
    code, out, _ = run_cli(capsys, "predict", "r/checkpoint", "--data", "r.csv")
    values = [float(r["prediction"]) for r in csv.DictReader(out.splitlines())]
    np.testing.assert_allclose(values, expected, rtol=1e-7)


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
        (["--dataset", "mnist"], "--dataset must be one of moons, circles,"),
        (["--data", "none.csv", "--target", "t"], "CSV file '"),
        (["--data", "x.csv"], "a CSV file needs a target column (--target)"),
        (["--target", "t"], "--target applies to a CSV file (--data) only"),
        (["--dataset", "iris", "--data", "x.csv"], "give either --dataset or --data, not both"),
        (["--grad", "magic"], "--grad: unknown gradient method 'magic'; expected one of fop,"),
        (["--optimizer", "lbfgs"], "--optimizer must be one of adam, adamw, sgd,"),
        (["--batch-size", "0"], "--batch-size must be >= 1, got 0"),
        (["--epochs", "ten"], "--epochs must be an integer, got 'ten'"),
        (["--lr", "-1"], "--lr must be > 0, got -1.0"),
        (["--test-size", "0.5", "--val-size", "0.5"], "--test-size + --val-size must be below 1"),
        (["--patience", "3"], "early stopping (--patience) needs a validation split (--val-size"),
        (["--layers", "4,x"], "--layers takes comma-separated integers such as 13,13, got '4,x'"),
        (["--threads", "-1"], "--threads must be an integer >= 0"),
    ],
)
def test_train_errors_name_the_flags_typed(capsys, argv, message):
    code, _, err = run_cli(capsys, "train", *FAST, *argv)
    assert code == 2 and message in err and "Traceback" not in err, err
    assert len(err.strip().splitlines()) == 1


def test_evaluate_errors(capsys):
    code, _, err = run_cli(capsys, "evaluate", "nowhere")
    assert code == 2 and "no checkpoint at 'nowhere'" in err
    code, _, err = run_cli(capsys, "evaluate", "x", "--dataset", "iris", "--data", "y.csv")
    assert code == 2 and "give either --dataset or --data, not both" in err


def test_evaluate_refuses_a_checkpoint_not_written_by_train(capsys, in_tmp):
    mp.save_checkpoint(in_tmp / "bare", mp.MeshNet(mp.Topology.mesh(2, 1, 2), ticks=1))
    code, _, err = run_cli(capsys, "evaluate", "bare")
    assert code == 2 and "a checkpoint without config, task, feature_names" in err


def subparser(name):
    parser = build_parser()
    commands = next(a for a in parser._actions if a.dest == "command")
    return commands.choices[name]


@pytest.mark.parametrize("command", ["train", "evaluate", "predict", "reproduce", "bench"])
def test_help_of_every_subcommand_states_each_default_once(capsys, command):
    with pytest.raises(SystemExit) as exit_info:
        main([command, "--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith(f"usage: meshprop {command}")
    assert "default: None" not in out and "(default: %" not in out
    helps = [a.help for a in subparser(command)._actions if a.help]
    assert all(h.count("default:") <= 1 for h in helps)
    # the formatter adds nothing: every "default:" in the text is one option's own
    assert " ".join(out.split()).count("default:") == sum(h.count("default:") for h in helps)


def test_train_options_come_from_the_run_configuration(capsys):
    import dataclasses

    from meshprop.commands.options import flag

    options = {o for a in subparser("train")._actions for o in a.option_strings}
    for f in dataclasses.fields(RunConfig):
        assert flag(f.name) in options, f.name
        help_text = next(a.help for a in subparser("train")._actions if a.dest == f.name)
        assert help_text.startswith(f.metadata["help"])
        if f.default is not None and f.metadata["shown"] is None:
            assert f"default: {f.default})" in help_text
    assert flag("n_samples") == "--samples" and flag("batch_size") == "--batch-size"
    with pytest.raises(SystemExit):
        main(["train", "--help"])
    out = capsys.readouterr().out
    for name in mp.GRADIENT_METHODS:
        assert name in out


@pytest.mark.slow
def test_config_file_values_are_defaults_that_flags_override(capsys, in_tmp):
    (in_tmp / "iris.toml").write_text(
        '# a run\ndataset = "iris"\nhidden = 4\ndensity = 0.5\nepochs = 5\nlr = 1\n'
    )
    code, _, err = run_cli(
        capsys, "train", "--config", "iris.toml", "--epochs", "2", "--no-progress", "--out", "a"
    )
    assert code == 0, err
    config = json.loads((in_tmp / "a" / "config.json").read_text())
    config.pop("provenance")
    expected = RunConfig(dataset="iris", hidden=4, density=0.5, epochs=2, lr=1.0)
    assert config == expected.to_dict()
    assert isinstance(config["lr"], float)


@pytest.mark.slow
def test_rerunning_a_saved_config_repeats_the_run(capsys, in_tmp):
    argv = ["train", "--dataset", "circles", "--samples", "120", "--hidden", "3", "--seed", "4"]
    argv += ["--val-size", "0.2", "--patience", "2", "--epochs", "4", "--no-progress"]
    code, _, err = run_cli(capsys, *argv, "--out", "first")
    assert code == 0, err
    code, _, err = run_cli(
        capsys, "train", "--config", "first/config.json", "--no-progress", "--out", "again"
    )
    assert code == 0, err
    first, again = (
        json.loads((in_tmp / d / "config.json").read_text()) for d in ("first", "again")
    )
    assert first.pop("provenance")["torch"] == again.pop("provenance")["torch"]
    assert again == first and first["seed"] == 4 and first["patience"] == 2
    assert RunConfig.from_dict(first) == RunConfig(**first)
    metrics = [json.loads((in_tmp / d / "metrics.json").read_text()) for d in ("first", "again")]
    assert metrics[0]["history"]["epochs"] == metrics[1]["history"]["epochs"]
    assert metrics[0]["test_loss"] == metrics[1]["test_loss"]
    nets = [mp.load_checkpoint(in_tmp / d / "checkpoint")[0] for d in ("first", "again")]
    assert torch.equal(nets[0].A, nets[1].A)


@pytest.mark.slow
def test_config_file_data_path_is_relative_to_the_file_and_flags_replace_the_source(capsys, in_tmp):
    folder = in_tmp / "project"
    folder.mkdir()
    rng = np.random.default_rng(2)
    X = rng.normal(size=(40, 2))
    write_csv(folder / "d.csv", ["a", "b", "t"], [[*x, int(x[0] > 0)] for x in X.tolist()])
    (folder / "run.toml").write_text('data = "d.csv"\ntarget = "t"\nepochs = 1\n')
    code, _, err = run_cli(capsys, "train", "--config", "project/run.toml", "--no-progress")
    assert code == 0, err
    config = json.loads((in_tmp / "runs" / "train" / "config.json").read_text())
    assert (config["data"], config["dataset"]) == (str(folder / "d.csv"), None)
    # a dataset typed on the command line replaces the file's CSV source
    code, _, err = run_cli(
        capsys, "train", "--config", "project/run.toml", "--dataset", "iris", "--out", "i"
    )
    assert code == 0, err
    config = json.loads((in_tmp / "i" / "config.json").read_text())
    assert (config["dataset"], config["data"], config["target"]) == ("iris", None, None)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("epoch = 3\n", "c.toml: unknown key 'epoch'; valid keys are dataset, data, target,"),
        ("epochs = 0\n", "epochs (in c.toml) must be >= 1, got 0"),
        ("epochs = 2.5\n", "epochs (in c.toml) must be an integer, got 2.5"),
        ('layers = "13"\narch = "mlp"\n', "layers (in c.toml) must be a list of integers"),
        ("epochs = \n", "c.toml: not valid TOML"),
    ],
)
def test_config_file_errors_name_the_file_and_key(capsys, in_tmp, text, message):
    (in_tmp / "c.toml").write_text(text)
    code, _, err = run_cli(capsys, "train", "--config", "c.toml", "--no-progress")
    assert code == 2 and message in err, err
    assert len(err.strip().splitlines()) == 1


def test_yaml_config_needs_pyyaml(capsys, in_tmp, monkeypatch):
    monkeypatch.setitem(sys.modules, "yaml", None)  # as if PyYAML were not installed
    (in_tmp / "c.yaml").write_text("epochs: 1\n")
    code, _, err = run_cli(capsys, "train", "--config", "c.yaml")
    assert code == 2 and "reading YAML needs PyYAML" in err


@pytest.mark.subprocess
def test_console_script_entry_point(in_tmp):
    done = subprocess.run(
        [sys.executable, "-m", "meshprop", "--help"], capture_output=True, text=True, check=False
    )
    assert done.returncode == 0
    for command in ("train", "evaluate", "predict", "reproduce", "timeseries", "bench"):
        assert command in done.stdout


@pytest.mark.slow
def test_reproduce_commands_write_their_results(capsys, in_tmp):
    from meshprop.commands.reproduce import iris_config, toy_config

    code, out, err = run_cli(
        capsys, "reproduce", "iris", "--seeds", "2", "--epochs", "2", "--out", "iris"
    )
    assert code == 0, err
    summary = json.loads((in_tmp / "iris" / "iris.json").read_text())
    assert summary["config"] == iris_config(0, "fop", 2).to_dict()
    assert [r["seed"] for r in summary["runs"]["fop"]] == [0, 1]
    assert summary["same_accuracy"] is True and summary["max_final_weight_difference"] < 1e-10
    table = (in_tmp / "iris" / "iris.md").read_text()
    for seed, (a, b) in enumerate(zip(*summary["runs"].values(), strict=True)):
        assert f"{seed}               | {a['test_accuracy']:9.4f} | {b['test_accuracy']:9.4f}" in (
            table
        )
    assert table in out
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
        "config.json",  # the run folder's: the configuration, the manifest, the units done
        "run.json",
        "units.json",
    }
    summary = json.loads((in_tmp / "toys" / "summary.json").read_text())
    assert summary["moons"]["config"] == toy_config("moons", 0, "fop", 2).to_dict()
    assert f"moons: test accuracy {summary['moons']['test_accuracy']:.4f}" in out
    from PIL import Image

    with Image.open(in_tmp / "toys" / "moons.gif") as gif:
        assert gif.n_frames == 2
