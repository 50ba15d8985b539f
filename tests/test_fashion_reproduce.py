"""``meshprop reproduce fashion-mnist`` end to end on tiny IDX files written here (nothing is
downloaded), the four configurations' sizes, and FOP against autograd training the same run."""

from __future__ import annotations

import json
import statistics

import numpy as np
import pytest

from meshprop.cli import main
from meshprop.data import idx
from meshprop.experiment import fashion
from meshprop.experiment.compare import Features, Protocol, compare
from meshprop.experiment.models import ModelSpec, build_model, mnn_topology
from test_fashion_idx import write_split


def _mlp_params(i: int, h: int, o: int) -> int:
    return (i + 1) * h + (h + 1) * h + (h + 1) * o


def test_configurations_have_the_papers_sizes():
    sizes = {}
    for spec in fashion.SPECS:
        net = build_model(spec, 32, 10, seed=0, grad="fop")
        sizes[spec.name] = net.n_parameters
    # 82 sources (32 inputs + 50 hidden) × 60 targets, 15 % / 20 % kept, plus 60 bias edges
    assert sizes["mnn-85"] == round(0.15 * 82 * 60) + 60 == 798
    assert sizes["mnn-80"] == round(0.20 * 82 * 60) + 60 == 1044
    assert sizes["mlp-13"] == _mlp_params(32, 13, 10) == 751
    assert sizes["mlp-17"] == _mlp_params(32, 17, 10) == 1047


def test_mnn_topology_keeps_every_bias_edge_and_no_output_feedback():
    topo = mnn_topology(32, 50, 10, removed=0.85, seed=4)
    mask = topo.mask
    assert mask[32, 33:].all()  # the bias neuron feeds every hidden and output neuron
    assert not mask[83:, :].any()  # outputs feed nothing
    assert not mask[:, :33].any()  # nothing feeds inputs or bias
    assert int(mask[:32].sum() + mask[33:83].sum()) == 738
    assert mnn_topology(32, 50, 10, 0.85, seed=5) != topo  # the seed draws the edges
    assert mnn_topology(32, 50, 10, 0.85, seed=4) == topo


@pytest.mark.parametrize("grad", ["fop", "auto"])
def test_fop_and_autograd_train_the_same_weights(grad):
    g = np.random.default_rng(0)
    X = g.normal(size=(120, 32))
    y = (X[:, :10].argmax(axis=1)).astype(np.int64)
    data = Features(X[:90], y[:90], X[90:], y[90:])
    specs = [ModelSpec("mnn-85", "mnn", 50, 0.85), ModelSpec("mlp-13", "mlp", 13)]
    protocol = Protocol(epochs=2, batch_size=16, lr=3e-3, grad=grad, compare_grad="autograd")
    results = compare(specs, data, runs=1, protocol=protocol)
    for r, spec in zip(results, specs, strict=True):
        assert r.max_weight_difference is not None
        assert r.max_weight_difference < 1e-12, (spec.name, r.max_weight_difference)
        assert r.compare_accuracy == r.accuracies[0]


def test_weights_move_in_training_so_the_agreement_is_not_vacuous():
    g = np.random.default_rng(1)
    X = g.normal(size=(60, 32))
    y = g.integers(0, 10, 60)
    spec = ModelSpec("mnn-85", "mnn", 50, 0.85)
    from meshprop.training import fit

    net = build_model(spec, 32, 10, seed=0, grad="fop")
    before = net.A.detach().clone()
    fit(net, (X, y), epochs=1, batch_size=16, lr=3e-3, progress=False, evaluate_train=False)
    assert float((net.A.detach() - before).abs().max()) > 1e-3


def test_a_learning_topology_moves_edges_keeps_their_number_and_fop_agrees_with_autograd():
    g = np.random.default_rng(2)
    X = g.normal(size=(96, 32))
    y = (X[:, :10].argmax(axis=1)).astype(np.int64)
    data = Features(X[:64], y[:64], X[64:], y[64:])
    (spec,) = [s for s in fashion.structure_specs(["rigl"]) if s.name == "mnn-85-rigl"]
    assert (spec.hidden, spec.removed, spec.structure) == (50, 0.85, "rigl")
    protocol = Protocol(
        epochs=2, batch_size=16, lr=3e-3, grad="fop", compare_grad="autograd", update_every=2
    )
    (result,) = compare([spec], data, runs=1, protocol=protocol)
    static = build_model(fashion.SPECS[0], 32, 10, seed=0, grad="fop")
    assert result.params == static.n_parameters == 798  # RigL keeps the number of edges
    assert result.max_weight_difference is not None and result.max_weight_difference < 1e-12
    # the edges moved: the trained weights sit off the static mesh's initial edges
    from meshprop.experiment.compare import _train

    _, weights, _, _ = _train(spec, data, 0, "fop", protocol, None, None)  # type: ignore[arg-type]
    off = weights[~static.topology.mask].abs()
    assert int((off > 0).sum()) > 0
    assert ("mnn-85-rigl", "mlp-13") in fashion.structure_pairs(["rigl"])
    with pytest.raises(ValueError, match="needs an mnn"):
        ModelSpec("mlp-13", "mlp", 13, structure="rigl")


def _write_tiny_dataset(directory) -> None:
    g = np.random.default_rng(0)
    labels = np.tile(np.arange(10), 6).astype(np.uint8)  # every class present
    # each class a different bright square, plus noise: learnable from the CAE's code
    images = g.integers(0, 40, size=(60, 8, 8)).astype(np.uint8)
    for k, c in enumerate(labels):
        r, col = divmod(int(c), 4)
        images[k, 2 * r : 2 * r + 2, 2 * col : 2 * col + 2] = 250
    write_split(directory, "train", images[:40], labels[:40], compress=True)
    write_split(directory, "test", images[40:], labels[40:])


@pytest.mark.slow
def test_reproduce_fashion_mnist_end_to_end(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(idx, "DEBIAN_DIR", tmp_path / "nowhere")
    data = tmp_path / "data"
    data.mkdir()
    _write_tiny_dataset(data)
    out = tmp_path / "out"
    argv = [
        "reproduce",
        "fashion-mnist",
        "--runs",
        "2",
        "--epochs",
        "1",
        "--cae-epochs",
        "1",
        "--data-dir",
        str(data),
        "--cache-dir",
        str(tmp_path / "cache"),
        "--out",
        str(out),
    ]
    assert main(argv) == 0
    results = json.loads((out / "results.json").read_text())
    assert list(results) == ["configs"]
    assert [c["name"] for c in results["configs"]] == ["mnn-85", "mnn-80", "mlp-13", "mlp-17"]
    assert [c["params"] for c in results["configs"]] == [798, 1044, 751, 1047]
    for c in results["configs"]:
        assert set(c) == {"name", "params", "accuracies", "mean", "std"}
        assert len(c["accuracies"]) == 2
        for a in c["accuracies"]:
            assert 0 <= a <= 1 and abs(a * 20 - round(a * 20)) < 1e-9  # 20 test images
        assert c["mean"] == pytest.approx(statistics.mean(c["accuracies"]), abs=1e-15)
        assert c["std"] == pytest.approx(statistics.stdev(c["accuracies"]), abs=1e-15)
    details = json.loads((out / "details.json").read_text())
    for c in details["configs"]:
        assert c["max_weight_difference"] < 1e-12
    assert not details["cae"]["from_cache"]
    table = (out / "results.md").read_text()
    assert "| mnn-85 | 798 |" in table and "beat" in table
    assert (out / "accuracies.png").stat().st_size > 1000
    # a second run finds the CAE features in the cache; meshes whose edges learn join in
    extra = ["--compare", "none", "--runs", "1", "--structure", "rigl", "--update-every", "1"]
    assert main([*argv, *extra]) == 0
    assert json.loads((out / "details.json").read_text())["cae"]["from_cache"]
    configs = json.loads((out / "results.json").read_text())["configs"]
    names = [c["name"] for c in configs]
    assert names == ["mnn-85", "mnn-80", "mlp-13", "mlp-17", "mnn-85-rigl", "mnn-80-rigl"]
    assert [c["params"] for c in configs][4:] == [798, 1044]
    assert "mnn-85-rigl (798 weights)" in (out / "results.md").read_text()


def test_missing_data_is_one_clear_error(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(idx, "DEBIAN_DIR", tmp_path / "nowhere")
    code = main(
        ["reproduce", "fashion-mnist", "--data-dir", str(tmp_path), "--out", str(tmp_path / "o")]
    )
    assert code != 0
    err = capsys.readouterr().err
    assert "t10k-labels-idx1-ubyte" in err and "make data" in err
