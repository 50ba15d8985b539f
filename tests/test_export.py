"""Export: ONNX files run by onnxruntime reproduce net(x) (random topologies, every activation,
several batch sizes, float32 and float64); torch.export of a MeshNet and of its unrolled module;
`meshprop export`.  onnx/onnxruntime are test-only dependencies (the [onnx] and [dev] extras)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import meshprop as mp
from meshprop.activations import ACTIVATIONS
from meshprop.cli import main
from meshprop.export import inference_module

ACTS = sorted(ACTIVATIONS)
BATCHES = (1, 4, 37)


def _net(seed: int, activation, dtype: torch.dtype, bias: bool = True) -> mp.MeshNet:
    g = torch.Generator().manual_seed(seed)
    inputs, hidden, outputs = (int(v) for v in torch.randint(1, 7, (3,), generator=g))
    topo = mp.Topology.random(
        inputs,
        hidden,
        outputs,
        density=0.3 + 0.7 * float(torch.rand(1, generator=g)),
        bias=bias,
        seed=seed,
    )
    if activation == "mixed":  # one activation per neuron, drawn at random
        activation = [
            ACTS[int(i)] for i in torch.randint(0, len(ACTS), (topo.n_neurons,), generator=g)
        ]
    ticks = int(torch.randint(1, 6, (1,), generator=g))
    net = mp.MeshNet(topo, ticks=ticks, activation=activation, dtype=dtype, seed=seed)
    with torch.no_grad():  # weights large enough to reach every activation's regimes
        net.A.mul_(3.0)
    return net.eval()


def _tolerance(dtype: torch.dtype) -> dict[str, float]:
    """float32: 1e-5, the engines' float32 tolerance; float64: rounding level (onnxruntime's
    kernels sum in another order than torch's BLAS, and the ticks carry that rounding along)."""
    if dtype == torch.float32:
        return {"rtol": 0.0, "atol": 1e-5}
    return {"rtol": 1e-12, "atol": 1e-12}


@pytest.mark.slow
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("activation", [*ACTS, "mixed"])
def test_onnxruntime_reproduces_net(tmp_path, activation, dtype):
    ort = pytest.importorskip("onnxruntime", reason="onnxruntime: pip install 'meshprop[onnx]'")
    pytest.importorskip("onnx", reason="onnx: pip install 'meshprop[onnx]'")
    for seed in range(3):
        net = _net(
            seed + 10 * ACTS.index(activation) if activation in ACTS else seed,
            activation,
            dtype,
            bias=seed != 2,
        )
        path = mp.export_onnx(
            net, tmp_path / f"m{seed}.onnx", torch.randn(2, net.topology.n_inputs)
        )
        session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        assert [i.name for i in session.get_inputs()] == ["x"]
        for batch in BATCHES:
            x = 4 * torch.randn(batch, net.topology.n_inputs, dtype=dtype)
            (y,) = session.run(None, {"x": x.numpy()})
            with torch.no_grad():
                expected = net(x).numpy()
            assert y.shape == expected.shape == (batch, net.topology.n_outputs)
            assert y.dtype == expected.dtype
            np.testing.assert_allclose(y, expected, **_tolerance(dtype))


@pytest.mark.slow
@pytest.mark.parametrize("activation", [*ACTS, "mixed"])
def test_torch_export_of_meshnet_and_unrolled_module(activation):
    net = _net(3, activation, torch.float64)
    batch = torch.export.Dim("batch")
    x0 = torch.randn(3, net.topology.n_inputs, dtype=torch.float64)
    with torch.no_grad():
        direct = torch.export.export(net, (x0,), dynamic_shapes=({0: batch},))
    unrolled = torch.export.export(inference_module(net), (x0,), dynamic_shapes=({0: batch},))
    for size in BATCHES:
        x = 4 * torch.randn(size, net.topology.n_inputs, dtype=torch.float64)
        with torch.no_grad():
            expected = net(x)
            torch.testing.assert_close(direct.module()(x), expected, rtol=0, atol=1e-12)
            torch.testing.assert_close(unrolled.module()(x), expected, rtol=0, atol=1e-12)


def test_export_rejects_bad_input(tmp_path):
    pytest.importorskip("onnx", reason="onnx: pip install 'meshprop[onnx]'")
    net = _net(0, "tanh", torch.float32)
    with pytest.raises(ValueError, match=r"shape \(B, "):
        mp.export_onnx(net, tmp_path / "m.onnx", torch.randn(net.ticks, 2, net.topology.n_inputs))
    with pytest.raises(ValueError, match="features per sample"):
        mp.export_onnx(net, tmp_path / "m.onnx", torch.randn(2, net.topology.n_inputs + 1))
    with pytest.raises(TypeError, match="MeshNet"):
        inference_module(torch.nn.Linear(2, 2))


def test_export_command_writes_a_model_onnxruntime_runs(tmp_path, capsys):
    ort = pytest.importorskip("onnxruntime", reason="onnxruntime: pip install 'meshprop[onnx]'")
    net = _net(4, "relu", torch.float64)
    mp.save_checkpoint(tmp_path / "ckpt", net)
    out = tmp_path / "model.onnx"
    assert main(["export", str(tmp_path / "ckpt"), "--format", "onnx", "--out", str(out)]) == 0
    assert "wrote" in capsys.readouterr().out
    session = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    x = torch.randn(5, net.topology.n_inputs, dtype=torch.float64)
    with torch.no_grad():
        np.testing.assert_allclose(
            session.run(None, {"x": x.numpy()})[0], net(x).numpy(), **_tolerance(torch.float64)
        )
    assert main(["export", str(tmp_path / "missing"), "--out", str(out)]) == 2
    assert "no checkpoint" in capsys.readouterr().err
