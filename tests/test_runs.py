"""The run configuration from Python: validation, configuration files, merging of settings."""

from __future__ import annotations

import dataclasses
import json

import pytest

from meshprop.runs import ConfigError, RunConfig, load_config_file
from meshprop.runs.config import merge_settings


def test_defaults_are_the_documented_run():
    config = RunConfig()
    assert (config.dataset, config.hidden, config.ticks, config.epochs) == ("moons", 5, 3, 60)
    assert (config.grad, config.optimizer, config.lr, config.batch_size) == (
        "fop",
        "adam",
        0.01,
        32,
    )
    assert RunConfig.from_dict(config.to_dict()) == config


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"epochs": 0}, "epochs must be >= 1, got 0"),
        ({"epochs": True}, "epochs must be an integer, got True"),
        ({"lr": "fast"}, "lr must be a number, got 'fast'"),
        ({"density": 1.5}, r"density must be in \(0, 1\], got 1.5"),
        ({"dtype": "float16"}, "dtype must be one of float32, float64, got 'float16'"),
        ({"activation": "gelu"}, "activation must be one of relu, tanh"),
        ({"grad": "two_step"}, "grad: unknown gradient method 'two_step'"),
        ({"arch": "mlp"}, r"an MLP needs its hidden layer sizes \(layers, e.g. 13,13\)"),
        ({"arch": "mlp", "layers": [4], "hidden": 7}, "hidden applies to arch mesh only"),
        ({"layers": [4]}, r"layers applies to arch='mlp' only \(give arch mlp\)"),
        ({"arch": "mlp", "layers": [4, 0]}, r"layers must be all >= 1, got \[4, 0\]"),
        ({"data": "x.csv"}, "give either dataset or data, not both"),
        ({"dataset": None}, r"give a built-in dataset \(dataset\) or a CSV file \(data\)"),
        ({"dataset": None, "data": "x.csv"}, r"a CSV file needs a target column \(target\)"),
        ({"target": "y"}, r"target applies to a CSV file \(data\) only"),
        ({"patience": 2}, r"early stopping \(patience\) needs a validation split \(val_size"),
        ({"test_size": 0.6, "val_size": 0.4}, "test_size \\+ val_size must be below 1"),
        ({"seed": -1}, "seed must be >= 0, got -1"),
    ],
)
def test_invalid_settings_name_the_field(change, message):
    with pytest.raises(ConfigError, match=message):
        RunConfig(**change)


def test_values_are_normalised_to_their_types():
    config = RunConfig(lr=1, density=1, arch="mlp", layers=(13, 13), grad="two_step")
    assert isinstance(config.lr, float) and isinstance(config.density, float)
    assert config.layers == [13, 13]
    assert json.loads(json.dumps(config.to_dict())) == config.to_dict()


def test_config_error_names_settings_as_the_caller_spells_them():
    error = ConfigError("{0} + {1} must be below 1, got {{0.5}}", "test_size", "val_size")
    assert str(error) == "test_size + val_size must be below 1, got {0.5}"
    assert error.describe(lambda f: "--" + f.replace("_", "-")).startswith("--test-size + --val")
    with pytest.raises(ConfigError) as info:
        RunConfig(data="{x}.csv", dataset=None)
    assert "'{x}.csv'" in str(info.value) and info.value.fields == ("target",)


def test_merge_settings_later_sources_win_and_replace_the_data_source():
    file = {"data": "/d.csv", "target": "t", "epochs": 5, "hidden": 3}
    assert merge_settings([file, {"epochs": 2}]) == {
        "data": "/d.csv",
        "target": "t",
        "epochs": 2,
        "hidden": 3,
        "dataset": None,
    }
    assert merge_settings([file, {"dataset": "iris"}]) == {
        "dataset": "iris",
        "epochs": 5,
        "hidden": 3,
    }
    assert merge_settings([{"dataset": "iris"}, {"data": "/e.csv"}]) == {
        "data": "/e.csv",
        "dataset": None,
    }


def test_config_files_toml_and_json(tmp_path):
    (tmp_path / "a.toml").write_text('dataset = "wine"\nlayers = [8, 8]\narch = "mlp"\n')
    values = load_config_file(tmp_path / "a.toml")
    assert values == {"dataset": "wine", "layers": [8, 8], "arch": "mlp"}
    assert RunConfig(**values, grad="two_step").layers == [8, 8]
    saved = RunConfig(dataset="iris", seed=3)
    (tmp_path / "config.json").write_text(json.dumps(saved.to_dict()))
    assert RunConfig(**load_config_file(tmp_path / "config.json")) == saved
    (tmp_path / "b.toml").write_text('data = "../d.csv"\ntarget = "y"\n')
    assert load_config_file(tmp_path / "b.toml")["data"] == str(tmp_path.parent / "d.csv")


@pytest.mark.parametrize(
    ("name", "text", "error", "message"),
    [
        ("c.ini", "", ValueError, "unknown configuration format '.ini'"),
        ("c.json", "[1, 2]", ValueError, "expected a table of settings, got list"),
        ("c.json", "{", ValueError, "not valid JSON"),
        ("c.toml", "hidden = 2\nticks = 3\nbatchsize = 8\n", ValueError, "unknown key 'batchsize'"),
    ],
)
def test_config_file_errors(tmp_path, name, text, error, message):
    (tmp_path / name).write_text(text)
    with pytest.raises(error, match=message):
        load_config_file(tmp_path / name)
    with pytest.raises(FileNotFoundError, match="configuration file"):
        load_config_file(tmp_path / "missing.toml")


def test_every_field_is_documented():
    for f in dataclasses.fields(RunConfig):
        assert f.metadata["help"] and f.metadata["group"] in ("data", "network", "optimisation")
