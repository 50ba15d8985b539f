"""Export a trained MeshNet for inference outside meshprop: ONNX (:func:`export_onnx`) and
``torch.export`` (:func:`inference_module`).

The exported graph is the forward dynamics of paper 000 Eq. 3 with the ticks unrolled:

    h_0 = 0,   h_n = φ̂(c_{n-1} A_c + h_{n-1} A_f)   (n = 1..T),   y = h_T[outputs]

with c = [x, 1] (inputs and bias clamped before every tick; ``x`` (B, I) shared by every tick),
A_c and A_f the masked blocks of A feeding the free neurons (see :mod:`meshprop.dynamics`), and
φ̂ applying each neuron's own activation.  The batch axis is dynamic.  Only inference is
exported (no gradient engine is involved).
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import torch
from torch import nn

from .activations import _SOFTPLUS_THRESHOLD, LEAKY_SLOPE
from .mesh import MeshNet

__all__ = ["UnrolledMesh", "export_onnx", "inference_module"]

ONNX_OPSET = 17


def _phi(name: str, t: torch.Tensor) -> torch.Tensor:
    """φ by name, written with ONNX-exportable operators (same values as ``ACTIVATIONS``)."""
    if name == "relu":
        return torch.relu(t)
    if name == "tanh":
        return torch.tanh(t)
    if name == "sigmoid":
        return torch.sigmoid(t)
    if name == "identity":
        return t
    if name == "leaky_relu":  # not ONNX LeakyRelu: its alpha is a float32 attribute
        return torch.where(t > 0, t, t * LEAKY_SLOPE)
    if name == "softplus":  # torch's threshold 20; log(1 + e^{-|t|}): ONNX has no log1p
        stable = torch.relu(t) + torch.log(1 + torch.exp(-torch.abs(t)))
        return torch.where(t > _SOFTPLUS_THRESHOLD, t, stable)
    raise ValueError(f"activation {name!r} has no export rule")


class UnrolledMesh(nn.Module):
    """``net``'s inference as a plain module: the masked weight blocks as buffers (copies, in
    ``net``'s dtype) and the T ticks unrolled; per-neuron activations are selected with one
    boolean mask per activation (``torch.where``), so every neuron gets exactly its own φ.

    ``forward(x)`` takes x of shape (B, I) and returns y of shape (B, O), equal to ``net(x)``.
    """

    A_c: torch.Tensor
    A_f: torch.Tensor
    ones: torch.Tensor

    def __init__(self, net: MeshNet) -> None:
        super().__init__()
        if not isinstance(net, MeshNet):
            raise TypeError(f"net must be a meshprop.MeshNet, got {type(net).__name__}")
        dyn = net.dynamics
        with torch.no_grad():
            A_c, A_f = dyn.split(net.A.detach())
        self.register_buffer("A_c", A_c.clone())
        self.register_buffer("A_f", A_f.clone())
        self.ticks = dyn.ticks
        self.bias = net.topology.bias
        self.n_inputs = net.topology.n_inputs
        self.n_outputs = dyn.n_outputs
        names = dyn.activations.names
        self.groups = sorted(set(names))
        for name in self.groups:
            member = torch.tensor([n == name for n in names])
            self.register_buffer(f"is_{name}", member)
        self.ones = torch.ones(1, 1, dtype=A_c.dtype)

    def phi(self, t: torch.Tensor) -> torch.Tensor:
        if len(self.groups) == 1:
            return _phi(self.groups[0], t)
        out = t
        for name in self.groups:
            out = torch.where(getattr(self, f"is_{name}"), _phi(name, t), out)
        return out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.to(self.A_c.dtype)
        c = torch.cat([x, self.ones.expand(x.shape[0], 1)], dim=1) if self.bias else x
        drive = c @ self.A_c  # the clamped part of T_n: the same at every tick
        h = self.phi(drive)  # tick 1: h_0 = 0
        for _ in range(1, self.ticks):
            h = self.phi(drive + h @ self.A_f)
        return h[:, h.shape[1] - self.n_outputs :]


def inference_module(net: MeshNet) -> UnrolledMesh:
    """The module that ``torch.export.export`` (and ONNX) take: ``net``'s inference, unrolled."""
    return UnrolledMesh(net).eval()


def _example(net: MeshNet, example_input: torch.Tensor | None) -> torch.Tensor:
    if example_input is None:
        example_input = torch.zeros(2, net.topology.n_inputs)
    if not isinstance(example_input, torch.Tensor):
        raise TypeError(
            f"example_input must be a torch.Tensor of shape (B, {net.topology.n_inputs}), "
            f"got {type(example_input).__name__}"
        )
    if example_input.dim() != 2:
        raise ValueError(
            f"export takes x of shape (B, {net.topology.n_inputs}) (the same input at every "
            f"tick), got shape {tuple(example_input.shape)}"
        )
    return net.prepare_input(example_input)


def export_onnx(
    net: MeshNet,
    path: str | os.PathLike[str],
    example_input: torch.Tensor | None = None,
    opset: int = ONNX_OPSET,
) -> Path:
    """Write ``net``'s inference as an ONNX model to ``path`` and return the path.

    The model has one input ``x`` (B, I) and one output ``y`` (B, O) in ``net``'s dtype, with a
    dynamic batch axis B; onnxruntime reproduces ``net(x)``.  ``example_input`` (B, I) fixes
    nothing but is checked and traced (default: zeros of shape (2, I)).  Uses PyTorch's
    TorchScript-based ONNX exporter (``torch.onnx.export(..., dynamo=False)``); needs the
    ``onnx`` package (``pip install meshprop[onnx]``).
    """
    try:
        import onnx  # noqa: F401  (torch.onnx needs it to write the file)
    except ImportError as error:
        raise ImportError(
            "exporting to ONNX needs the onnx package: pip install 'meshprop[onnx]'"
        ) from error
    x = _example(net, example_input)
    module = inference_module(net)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # the TorchScript exporter's notice
        torch.onnx.export(
            module,
            (x,),
            str(path),
            input_names=["x"],
            output_names=["y"],
            dynamic_axes={"x": {0: "batch"}, "y": {0: "batch"}},
            opset_version=opset,
            dynamo=False,
        )
    return path
