"""Layout parity: a MeshNet computes the same on ``layout="dense"`` and ``layout="sparse"``
(the same weights copied edge by edge), for every capability that takes a MeshNet."""

from __future__ import annotations

import json
import pickle

import numpy as np
import pytest
import torch

import meshprop as mp
from helpers import random_case, random_topology
from meshprop.cli import main
from meshprop.export import inference_module
from meshprop.training.jacobian import ParameterVector

# --- capabilities

TOL = 1e-10


def _sparse_twin(net: mp.MeshNet) -> mp.MeshNet:
    """A sparse-layout MeshNet with ``net``'s topology, settings and weights."""
    twin = mp.MeshNet(
        net.topology,
        ticks=net.ticks,
        activation=net.activation,
        output_activation=net.output_activation,
        grad=net.grad,
        dtype=net.parameter.dtype,
        layout="sparse",
    )
    with torch.no_grad():
        twin.parameter.copy_(net.edge_weights())
    return twin


def _pair(seed: int) -> tuple[mp.MeshNet, mp.MeshNet, torch.Tensor]:
    """(dense, sparse, x (B, I)): a random float64 mesh with cycles, self-loops and mixed
    activations (``helpers.random_case``) on both layouts."""
    case = random_case(seed)
    x = case.x if case.x.dim() == 2 else case.x[0]
    return case.net, _sparse_twin(case.net), x


def _gap(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a.detach().double() - b.detach().double()).abs().max())


@pytest.mark.parametrize("seed", range(3))
def test_checkpoint_round_trip_keeps_the_layout(tmp_path, seed):
    dense, sparse, x = _pair(seed)
    for net in (dense, sparse):
        mp.save_checkpoint(tmp_path / net.layout, net, extra={"note": seed})
        loaded, document = mp.load_checkpoint(tmp_path / net.layout)
        assert loaded.layout == net.layout and document["note"] == seed
        assert document["model"]["layout"] == net.layout
        assert torch.equal(loaded.parameter, net.parameter)
        assert _gap(loaded(x), dense(x)) <= TOL


def test_version_2_checkpoint_loads_as_dense(tmp_path):
    dense, _, x = _pair(0)
    mp.save_checkpoint(tmp_path, dense)
    path = tmp_path / "model.json"
    document = json.loads(path.read_text())
    document["version"] = 2
    del document["model"]["layout"]
    path.write_text(json.dumps(document))
    loaded, _ = mp.load_checkpoint(tmp_path)
    assert loaded.layout == "dense" and torch.equal(loaded(x), dense(x))


def test_sparse_checkpoint_refuses_weights_of_the_wrong_shape(tmp_path):
    from safetensors.torch import load_file, save_file

    _, sparse, _ = _pair(1)
    mp.save_checkpoint(tmp_path, sparse)
    tensors = load_file(str(tmp_path / "model.safetensors"))
    tensors["weight"] = tensors["weight"][:-1].contiguous()
    save_file(tensors, str(tmp_path / "model.safetensors"))
    with pytest.raises(ValueError, match=r"expected a floating-point tensor 'weight' of shape"):
        mp.load_checkpoint(tmp_path)


@pytest.mark.parametrize("products", ["matrix", "edges"])
def test_exported_module_is_the_same_on_both_layouts(products):
    for seed in range(4):
        dense, sparse, x = _pair(seed)
        y = dense(x)
        for net in (dense, sparse):
            module = inference_module(net, products=products)
            assert _gap(module(x), y) <= TOL
            y32 = inference_module(net, dtype="float32", products=products)(x.float())
            assert y32.dtype == torch.float32 and _gap(y32, y) <= 1e-5


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_onnx_export_of_both_layouts_reproduces_net(tmp_path, dtype):
    ort = pytest.importorskip("onnxruntime")
    pytest.importorskip("onnx")
    dense, sparse, x = _pair(5)
    y = dense(x).detach().numpy()
    tol = 1e-5 if dtype == "float32" else TOL
    for net in (dense, sparse):
        for products in ("matrix", "edges"):
            path = mp.export_onnx(
                net, tmp_path / f"{products}.onnx", dtype=dtype, products=products
            )
            session = ort.InferenceSession(str(path))
            for batch in (1, 7):
                xb = torch.randn(batch, net.topology.n_inputs, dtype=torch.float64)
                (out,) = session.run(None, {"x": xb.numpy().astype(dtype)})
                assert out.dtype == np.dtype(dtype)
                assert np.abs(out - dense(xb).detach().numpy()).max() <= tol
            (out,) = session.run(None, {"x": x.numpy().astype(dtype)})
            assert np.abs(out - y).max() <= tol


def test_export_refuses_other_dtypes():
    dense, _, _ = _pair(0)
    with pytest.raises(ValueError, match="float32 or float64"):
        inference_module(dense, dtype="float16")


@pytest.mark.parametrize("seed", range(4))
def test_jacobian_is_the_same_on_both_layouts(seed):
    dense, sparse, x = _pair(seed)
    J = mp.jacobian(dense, x)
    assert _gap(mp.jacobian(sparse, x), J) <= TOL

    def f(w: torch.Tensor) -> torch.Tensor:  # autograd through the sparse storage
        return sparse.storage.differentiable_output(sparse.dynamics, w, x)

    reference = torch.autograd.functional.jacobian(f, sparse.edge_weights())
    assert _gap(J, reference) <= TOL


def test_parameter_vector_and_levenberg_marquardt_agree_on_both_layouts():
    from meshprop.training.levenberg_marquardt import levenberg_marquardt

    dense, sparse, x = _pair(2)
    target = torch.randn(len(x), dense.topology.n_outputs, dtype=torch.float64)
    for net in (dense, sparse):
        vector = ParameterVector(net)
        theta = vector.get()
        assert torch.equal(theta, dense.edge_weights())
        vector.set(theta * 2)
        assert torch.equal(net.edge_weights(), 2 * theta)
        vector.set(theta)
    histories = [levenberg_marquardt(net, x, target, epochs=3) for net in (dense, sparse)]
    assert _gap(sparse.edge_weights(), dense.edge_weights()) <= TOL
    for a, b in zip(histories[0]["train_loss"], histories[1]["train_loss"], strict=True):
        assert abs(a - b) <= TOL


@pytest.mark.parametrize("grad", ["fop", "bptt", "autograd"])
def test_fit_and_test_metrics_are_the_same_on_both_layouts(grad):
    from meshprop.data import Standardizer
    from meshprop.runs.evaluation import test_metrics

    gen = torch.Generator().manual_seed(3)
    dense = mp.MeshNet(
        random_topology(gen, 3), ticks=3, activation="tanh", grad=grad, dtype=torch.float64
    )
    sparse = _sparse_twin(dense)
    X = torch.randn(40, dense.topology.n_inputs, generator=gen, dtype=torch.float64)
    y = torch.randint(0, dense.topology.n_outputs, (40,), generator=gen)
    histories = [
        mp.fit(net, (X, y), epochs=3, batch_size=8, lr=0.05, progress=False)
        for net in (dense, sparse)
    ]
    assert _gap(sparse.edge_weights(), dense.edge_weights()) <= TOL
    for a, b in zip(histories[0]["train_loss"], histories[1]["train_loss"], strict=True):
        assert abs(a - b) <= TOL
    scaler = Standardizer.fit(X.numpy())
    metrics = [test_metrics(net, X, y, "classification", scaler) for net in (dense, sparse)]
    assert abs(metrics[0]["test_loss"] - metrics[1]["test_loss"]) <= TOL


def test_plots_draw_both_layouts_alike():
    from meshprop import plots

    dense, sparse, _ = _pair(4)
    for pixels in (600, 3):  # one entry per neuron, then blocks of neurons
        image, step = plots.weight_image(dense, pixels)
        image_s, step_s = plots.weight_image(sparse, pixels)
        assert step == step_s and np.array_equal(image, image_s)
    A = dense.dense_weights().numpy()
    assert np.array_equal(plots.weight_image(dense)[0], A)  # small: the matrix itself
    for net in (dense, sparse):
        plots.plt.close(plots.plot_topology(net))
        plots.plt.close(plots.plot_weight_matrix(net, pixels=3))
    topo = mp.Topology.random(2, 4, 2, density=0.7, seed=1)
    two_d = mp.MeshNet(topo, ticks=2, dtype=torch.float64, seed=1)
    X = np.random.default_rng(0).normal(size=(30, 2))
    labels = (X[:, 0] > 0).astype(int)
    grids = []
    for net in (two_d, _sparse_twin(two_d)):
        xx, yy = plots._grid(X, 20)
        grids.append(plots._predict_grid(net, xx, yy))
        plots.plt.close(plots.plot_decision_boundary(net, X, labels))
    assert np.array_equal(*grids)


def test_weight_image_of_a_large_sparse_mesh_needs_no_n2():
    from meshprop import plots

    topo = mp.Topology.sparse_random(8, 20_000, 3, degree=5, seed=0)
    net = mp.MeshNet(topo, ticks=2, layout="sparse", dtype=torch.float32, seed=0)
    with mp.memory_limit("64MiB"):
        image, step = plots.weight_image(net)
    step_expected = -(-topo.n_neurons // 600)
    M = -(-topo.n_neurons // step_expected)
    assert step == step_expected and image.shape == (M, M) and M <= 600
    assert np.abs(image).max() == pytest.approx(float(net.edge_weights().abs().max()))


def test_sklearn_estimators_take_a_layout():
    from meshprop.sklearn import MeshClassifier, MeshRegressor

    rng = np.random.default_rng(0)
    X = rng.normal(size=(60, 3))
    y = (X[:, 0] + X[:, 1] > 0).astype(int)
    kwargs = {"hidden": 5, "epochs": 3, "random_state": 0}
    dense = MeshClassifier(**kwargs).fit(X, y)
    sparse = MeshClassifier(layout="sparse", **kwargs).fit(X, y)
    net = sparse.network_
    assert net.layout == "sparse" and net.topology == dense.network_.topology
    assert sparse.score(X, y) > 0.6
    restored = pickle.loads(pickle.dumps(sparse))
    assert restored.network_.layout == "sparse"
    assert np.array_equal(restored.predict_proba(X), sparse.predict_proba(X))
    # the initial draws differ by layout (Layout.initial); with the same weights, the same model
    with torch.no_grad():
        net.parameter.copy_(net.storage.from_edge_values(dense.network_.edge_weights()))
    assert np.abs(sparse.predict_proba(X) - dense.predict_proba(X)).max() <= TOL
    regressor = MeshRegressor(layout="sparse", **kwargs).partial_fit(X, X[:, 0])
    assert regressor.network_.layout == "sparse" and np.isfinite(regressor.predict(X)).all()
    with pytest.raises(ValueError, match="layout must be one of"):
        MeshClassifier(layout="csr").fit(X, y)


def test_cli_train_evaluate_predict_export_a_sparse_run(tmp_path, capsys):
    ort = pytest.importorskip("onnxruntime")
    pytest.importorskip("onnx")
    out = tmp_path / "run"
    args = ["train", "--dataset", "iris", "--hidden", "6", "--degree", "3", "--ticks", "2"]
    args += ["--epochs", "2", "--layout", "sparse", "--out", str(out)]
    assert main(args) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    net, _ = mp.load_checkpoint(out / "checkpoint")
    assert net.layout == "sparse" and metrics["config"]["layout"] == "sparse"
    capsys.readouterr()
    assert main(["evaluate", str(out / "checkpoint")]) == 0
    shown = capsys.readouterr().out
    assert f"{metrics['test_accuracy']}" in shown
    model = tmp_path / "m.onnx"
    assert main(["export", str(out / "checkpoint"), "--out", str(model), "--dtype", "float32"]) == 0
    assert "float32" in capsys.readouterr().out
    x = torch.randn(5, 4, dtype=torch.float64)
    (y,) = ort.InferenceSession(str(model)).run(None, {"x": x.numpy().astype(np.float32)})
    assert np.abs(y - net(x).detach().numpy()).max() <= 1e-5
    dense = mp.MeshNet(net.topology, ticks=2, output_activation="identity", dtype=torch.float64)
    with torch.no_grad():
        dense.parameter.copy_(dense.storage.from_edge_values(net.edge_weights()))
    assert _gap(dense(x), net(x)) <= TOL


def test_fit_of_a_sparse_net_resumes_bit_identically(tmp_path):
    from meshprop.training import TrainingCheckpoint, TrainingInterruptedError

    gen = torch.Generator().manual_seed(7)
    topo = random_topology(gen, 7)
    X = torch.randn(30, topo.n_inputs, generator=gen, dtype=torch.float64)
    y = torch.randint(0, topo.n_outputs, (30,), generator=gen)

    def train(checkpoint=None):
        net = mp.MeshNet(topo, ticks=3, layout="sparse", dtype=torch.float64, seed=1)
        history = mp.fit(net, (X, y), epochs=4, batch_size=8, progress=False, checkpoint=checkpoint)
        return net, history

    reference = train()
    polls = {"n": 0}

    def stop() -> bool:
        polls["n"] += 1
        return polls["n"] == 7

    with pytest.raises(TrainingInterruptedError):
        train(TrainingCheckpoint(tmp_path / "state.pt", resume=True, stop_requested=stop))
    net, history = train(TrainingCheckpoint(tmp_path / "state.pt", resume=True))
    assert torch.equal(net.parameter, reference[0].parameter)
    assert history.records == reference[1].records


def test_sparse_run_preflight_counts_edges_not_n2():
    from meshprop.runs.config import RunConfig
    from meshprop.runs.preflight import check_run, network_size

    config = RunConfig(dataset="digits", hidden=100_000, degree=10, layout="sparse")
    N, P = network_size(config)
    assert N > 100_000 and 10 * N <= P < 11 * N
    with mp.memory_limit("1GiB"):
        need, disk = check_run(config)
    assert need < 2**30 and disk < 2**30
    dense = RunConfig(dataset="digits", hidden=100_000, degree=10)
    with mp.memory_limit("1GiB"), pytest.raises(mp.MemoryLimitError, match="--layout sparse"):
        check_run(dense)


def test_capabilities_at_2e4_neurons_allocate_nothing_n2(tmp_path):
    """A 2·10⁴-neuron sparse mesh under a 96 MiB limit, where the guard refuses N×N (1.6 GB in
    float32): checkpoint, jacobian, export (per-edge products), metrics — all run."""
    topo = mp.Topology.sparse_random(16, 20_000, 4, degree=8, seed=0)
    net = mp.MeshNet(topo, ticks=2, layout="sparse", dtype=torch.float32, seed=0)
    x = torch.randn(3, 16)
    with mp.memory_limit("96MiB"):
        with pytest.raises(mp.MemoryLimitError):
            net.dense_weights()
        y = net(x).detach()
        mp.save_checkpoint(tmp_path / "ckpt", net)
        loaded, _ = mp.load_checkpoint(tmp_path / "ckpt")
        assert loaded.layout == "sparse" and torch.equal(loaded(x), y)
        J = mp.jacobian(net, x[:1])
        assert J.shape == (1, 4, topo.n_edges) and bool(J.abs().sum() > 0)
        module = inference_module(net)
        assert module.products == "edges" and _gap(module(x), y) <= 1e-5
        ort = pytest.importorskip("onnxruntime")
        pytest.importorskip("onnx")
        path = mp.export_onnx(net, tmp_path / "m.onnx")
    (out,) = ort.InferenceSession(str(path)).run(None, {"x": x.numpy()})
    assert np.abs(out - y.numpy()).max() <= 1e-5
