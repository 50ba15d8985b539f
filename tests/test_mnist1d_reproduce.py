"""``meshprop reproduce mnist1d`` end to end on a tiny budget (the data set is generated
locally by the mnist1d package; nothing is downloaded)."""

from __future__ import annotations

import json

import pytest

from meshprop.cli import main
from meshprop.experiment import mnist1d
from meshprop.experiment.models import ModelSpec, build_model


@pytest.mark.slow
def test_reproduce_mnist1d_end_to_end(tmp_path, monkeypatch):
    monkeypatch.setattr(mnist1d, "SPECS", (ModelSpec("mnn-80", "mnn", 50, 0.8),))
    monkeypatch.setattr(mnist1d, "TORCH_BUDGET", mnist1d.TorchBudget(epochs=1))
    out = tmp_path / "out"
    argv = [
        "reproduce",
        "mnist1d",
        "--runs",
        "1",
        "--epochs",
        "1",
        "--baselines",
        "logreg",
        "cnn",
        "gru",
        "--out",
        str(out),
    ]
    assert main(argv) == 0
    results = json.loads((out / "results.json").read_text())
    names = [c["name"] for c in results["configs"]]
    assert names == ["mnn-80", "logreg", "cnn", "gru"]
    by_name = {c["name"]: c for c in results["configs"]}
    assert by_name["mnn-80"]["params"] == round(0.2 * 90 * 60) + 60  # 1140
    assert by_name["logreg"]["params"] == 40 * 10 + 10
    for c in results["configs"]:
        assert set(c) == {"name", "params", "accuracies", "mean", "std"}
        assert 0.0 < c["accuracies"][0] <= 1.0  # 1000 test sequences
        assert abs(c["accuracies"][0] * 1000 - round(c["accuracies"][0] * 1000)) < 1e-9
    # logistic regression is deterministic and far above chance (0.1) on MNIST-1D
    assert by_name["logreg"]["mean"] > 0.2
    details = json.loads((out / "details.json").read_text())
    assert details["configs"][0]["max_weight_difference"] < 1e-12
    assert "mnn-80" in (out / "results.md").read_text()


def test_mnist1d_configurations_pair_by_size():
    sizes = {s.name: build_model(s, 40, 10, seed=0, grad="fop").n_parameters for s in mnist1d.SPECS}
    # 90 sources (40 inputs + 50 hidden) × 60 targets, kept fraction, plus 60 bias edges
    assert sizes["mnn-80"] == round(0.2 * 90 * 60) + 60 == 1140
    assert sizes["mnn-50"] == round(0.5 * 90 * 60) + 60 == 2760
    assert sizes["mlp-16"] == 41 * 16 + 17 * 16 + 17 * 10 == 1098
    assert sizes["mlp-32"] == 41 * 32 + 33 * 32 + 33 * 10 == 2698
    assert {a for a, _ in mnist1d.PAIRS} | {b for _, b in mnist1d.PAIRS} == set(sizes)
