"""Export a trained MeshNet for inference outside meshprop: ONNX (:func:`export_onnx`) and
``torch.export`` (:func:`inference_module`).

The exported graph is the forward dynamics of paper 000 Eq. 3 with the ticks unrolled:

    h_0 = 0,   h_n = φ̂(c_{n-1} A_c + h_{n-1} A_f)   (n = 1..T),   y = h_T[outputs]

with c = [x, 1] (inputs and bias clamped before every tick; ``x`` (B, I) shared by every tick),
A_c and A_f the masked blocks of A feeding the free neurons (see :mod:`meshprop.dynamics`), and
φ̂ applying each neuron's own activation.  Large meshes (10⁵ neurons) are exported with the
products written per edge (gather, multiply, scatter-add), never an N×N matrix.  The batch axis
is dynamic, the dtype float32 or float64 at the caller's choice.  Only inference is exported (no
gradient engine is involved).
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import torch
from torch import nn

from .activations import _SOFTPLUS_THRESHOLD, LEAKY_SLOPE
from .mesh import MeshNet

__all__ = [
    "EXPORT_DTYPES",
    "MATRIX_BYTES",
    "PRODUCTS",
    "UnrolledMesh",
    "default_products",
    "export_onnx",
    "inference_module",
]

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


#: the largest N×N weight matrix (bytes) exported as matrix products; larger meshes are
#: exported as per-edge products (gather, multiply, scatter-add), whatever their layout
MATRIX_BYTES = 2**26
#: how the exported graph computes a tick: ``"matrix"`` (MatMul on the masked blocks of A) or
#: ``"edges"`` (Gather of the sources, Mul by the edge weights, ScatterElements-add per target)
PRODUCTS = ("matrix", "edges")
EXPORT_DTYPES = {"float32": torch.float32, "float64": torch.float64}


def _export_dtype(net: MeshNet, dtype: torch.dtype | str | None) -> torch.dtype:
    """The exported model's dtype: ``dtype`` (float32/float64, a torch dtype or its name) or,
    by default, that of ``net``'s weights."""
    if dtype is None:
        return net.parameter.dtype
    resolved = EXPORT_DTYPES.get(dtype) if isinstance(dtype, str) else dtype
    if resolved not in EXPORT_DTYPES.values():
        raise ValueError(
            f"dtype must be float32 or float64 (torch.float32, torch.float64 or their names), "
            f"got {dtype!r}"
        )
    assert isinstance(resolved, torch.dtype)
    return resolved


def default_products(net: MeshNet, dtype: torch.dtype) -> str:
    """``"matrix"`` when the N×N weight matrix takes at most :data:`MATRIX_BYTES`, else
    ``"edges"`` (a 10⁵-neuron sparse mesh: P products per tick, nothing of size N²)."""
    N = net.topology.n_neurons
    itemsize = torch.empty(0, dtype=dtype).element_size()
    return "matrix" if N * N * itemsize <= MATRIX_BYTES else "edges"


class UnrolledMesh(nn.Module):
    """``net``'s inference as a plain module: the weights as buffers (copies in ``dtype``,
    default ``net``'s) and the T ticks unrolled; per-neuron activations are selected with one
    boolean mask per activation (``torch.where``), so every neuron gets exactly its own φ.

    The weights are read as the edge vector (``net.edge_weights()``), so both layouts export
    alike.  ``products`` chooses how a tick is computed (:data:`PRODUCTS`; default
    :func:`default_products`): ``"matrix"`` keeps the masked blocks A_c (clamped → free) and
    A_f (free → free) of A; ``"edges"`` keeps the P edges (sources, targets, weights) and
    computes T[b, j] = Σ_{p: j_p = j} S[b, i_p] w_p by gather and scatter-add — the ONNX
    operators Gather, Mul and ScatterElements (reduction add), nothing of size N².

    ``forward(x)`` takes x of shape (B, I) and returns y of shape (B, O), equal to ``net(x)``.
    """

    A_c: torch.Tensor
    A_f: torch.Tensor
    ones: torch.Tensor

    def __init__(
        self, net: MeshNet, dtype: torch.dtype | str | None = None, products: str | None = None
    ) -> None:
        super().__init__()
        if not isinstance(net, MeshNet):
            raise TypeError(f"net must be a meshprop.MeshNet, got {type(net).__name__}")
        dtype = _export_dtype(net, dtype)
        products = default_products(net, dtype) if products is None else products
        if products not in PRODUCTS:
            raise ValueError(f"products must be one of {PRODUCTS}, got {products!r}")
        self.products = products
        dyn, topo = net.dynamics, net.topology
        self.n_free = topo.n_free
        weights = net.edge_weights().to(dtype)
        edges = topo.edges.to(weights.device)
        C = topo.n_clamped
        if products == "matrix":
            A = weights.new_zeros(topo.n_neurons, topo.n_neurons)
            A[edges[:, 0], edges[:, 1]] = weights
            A_c, A_f = dyn.split(A)
            self.register_buffer("A_c", A_c.clone())
            self.register_buffer("A_f", A_f.clone())
        else:
            clamped = edges[:, 0] < C  # the edges from inputs and bias: the drive, once
            for part, keep in (("c", clamped), ("f", ~clamped)):
                src = edges[keep, 0] - (0 if part == "c" else C)
                self.register_buffer(f"src_{part}", src.clone())
                self.register_buffer(f"dst_{part}", (edges[keep, 1] - C).clone())
                self.register_buffer(f"w_{part}", weights[keep].clone())
        self.ticks = dyn.ticks
        self.bias = topo.bias
        self.n_inputs = topo.n_inputs
        self.n_outputs = dyn.n_outputs
        names = dyn.activations.names
        self.groups = sorted(set(names))
        for name in self.groups:
            member = torch.tensor([n == name for n in names])
            self.register_buffer(f"is_{name}", member)
        self.ones = torch.ones(1, 1, dtype=dtype)

    def phi(self, t: torch.Tensor) -> torch.Tensor:
        if len(self.groups) == 1:
            return _phi(self.groups[0], t)
        out = t
        for name in self.groups:
            out = torch.where(getattr(self, f"is_{name}"), _phi(name, t), out)
        return out

    def _edge_product(self, S: torch.Tensor, part: str) -> torch.Tensor:
        """Σ over the edges of ``part`` ("c": from clamped, "f": from free neurons) of
        S[:, i_p] w_p into their targets: (B, F)."""
        messages = S.index_select(1, getattr(self, f"src_{part}")) * getattr(self, f"w_{part}")
        target = getattr(self, f"dst_{part}").expand_as(messages)
        return S.new_zeros(S.shape[0], self.n_free).scatter_add(1, target, messages)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.to(self.ones.dtype)
        c = torch.cat([x, self.ones.expand(x.shape[0], 1)], dim=1) if self.bias else x
        matrix = self.products == "matrix"
        # the clamped part of T_n: the same at every tick
        drive = c @ self.A_c if matrix else self._edge_product(c, "c")
        h = self.phi(drive)  # tick 1: h_0 = 0
        for _ in range(1, self.ticks):
            h = self.phi(drive + (h @ self.A_f if matrix else self._edge_product(h, "f")))
        return h[:, h.shape[1] - self.n_outputs :]


def inference_module(
    net: MeshNet, dtype: torch.dtype | str | None = None, products: str | None = None
) -> UnrolledMesh:
    """The module that ``torch.export.export`` (and ONNX) take: ``net``'s inference, unrolled
    (see :class:`UnrolledMesh` for ``dtype`` and ``products``)."""
    return UnrolledMesh(net, dtype, products).eval()


def _example(net: MeshNet, example_input: torch.Tensor | None, dtype: torch.dtype) -> torch.Tensor:
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
    return net.prepare_input(example_input).to(dtype)


def export_onnx(
    net: MeshNet,
    path: str | os.PathLike[str],
    example_input: torch.Tensor | None = None,
    opset: int = ONNX_OPSET,
    dtype: torch.dtype | str | None = None,
    products: str | None = None,
) -> Path:
    """Write ``net``'s inference as an ONNX model to ``path`` and return the path.

    The model has one input ``x`` (B, I) and one output ``y`` (B, O) in ``dtype`` (float32 or
    float64, whatever ``net`` was trained in; default: ``net``'s dtype), with a dynamic batch
    axis B; onnxruntime reproduces ``net(x)`` (to that dtype's rounding).  Both layouts export;
    a mesh whose N×N matrix exceeds :data:`MATRIX_BYTES` is written with per-edge products
    (``products``, see :class:`UnrolledMesh`).  ``example_input`` (B, I) fixes nothing but is
    checked and traced (default: zeros of shape (2, I)).  Uses PyTorch's
    TorchScript-based ONNX exporter (``torch.onnx.export(..., dynamo=False)``); needs the
    ``onnx`` package (``pip install meshprop[onnx]``).
    """
    try:
        import onnx  # noqa: F401  (torch.onnx needs it to write the file)
    except ImportError as error:
        raise ImportError(
            "exporting to ONNX needs the onnx package: pip install 'meshprop[onnx]'"
        ) from error
    module = inference_module(net, dtype, products)
    x = _example(net, example_input, module.ones.dtype)
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
