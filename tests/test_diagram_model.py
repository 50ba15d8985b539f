"""A Diagram as a model that speaks ``meshprop.protocol``: ``d(x)`` then ``loss.backward()``
gives the parameter gradients of the method named by ``d.grad``, equal to autograd's over the
unrolled simulation; every method is a VJP function keyed like ``named_parameters()``; the
reciprocal pass never evaluates a block's function again."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import meshprop as mp
from meshprop import protocol
from meshprop.diagram import (
    DIAGRAM_METHODS,
    Concat,
    Delay,
    Diagram,
    Function,
    Gain,
    Multivariate,
    Product,
    Sum,
    examples,
)
from meshprop.diagram.methods import bind

TOL = 1e-10  # float64, relative to the largest gradient entry


def _mesh() -> Diagram:
    topo = mp.Topology.mesh(inputs=3, hidden=3, outputs=1, bias=True)
    net = mp.MeshNet(topo, ticks=1, activation="tanh", dtype=torch.float64, seed=0)
    with torch.no_grad():
        net.A.mul_(0.5)  # a contracting recurrent state, as `meshprop timeseries --model mesh`
    return examples.mnn(net, input_taps=2)


BUILDERS = {
    "feedforward": lambda: examples.feedforward((3, 5, 4, 2)),
    "narx": lambda: examples.narx(inputs=2, hidden=5, outputs=2, input_taps=2, output_taps=2),
    "cascaded": lambda: examples.cascaded(taps=2),
    "fir": lambda: examples.fir_network((2, 4, 3, 1), taps=(3, 2, 1)),
    "iir": lambda: examples.iir_network(inputs=2, hidden=3, outputs=2),
    "mesh": _mesh,
}


def _data(d: Diagram, T: int, B: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(T, B, d.blocks["x"].out_widths[0], generator=g, dtype=torch.float64)
    t = torch.randn(T, B, d.blocks["y"].in_widths[0], generator=g, dtype=torch.float64)
    return x, t


def _rel(got: dict, oracle: dict) -> float:
    scale = max(float(g.abs().max()) for g in oracle.values())
    assert scale > 0
    return max(float((got[k] - oracle[k]).abs().max()) for k in oracle) / scale


@pytest.mark.parametrize("method", DIAGRAM_METHODS)
@pytest.mark.parametrize("name", list(BUILDERS))
def test_loss_backward_through_the_model_equals_autograd(name: str, method: str) -> None:
    d = BUILDERS[name]()
    x, t = _data(d, T=15, B=4, seed=len(name))
    params = d.parameter_dict()
    oracle_loss = F.mse_loss(d.run(x), t)  # plain autograd over the unrolled simulation
    oracle = dict(zip(params, torch.autograd.grad(oracle_loss, list(params.values())), strict=True))

    d.grad = method
    d.zero_grad(set_to_none=True)
    y = d(x)
    bridged = type(y.grad_fn).__name__ == "_BridgeBackward"
    assert bridged == (method != "autograd")  # reciprocal and forward run through protocol.apply
    loss = F.mse_loss(y, t)
    loss.backward()
    assert abs(float((loss - oracle_loss).detach())) <= TOL * float(oracle_loss.detach())
    assert _rel({k: p.grad for k, p in params.items()}, oracle) <= TOL


@pytest.mark.parametrize("method", DIAGRAM_METHODS)
def test_methods_are_vjp_functions_keyed_like_named_parameters(method: str) -> None:
    """backward(grad_y) is the vector–Jacobian product for any cotangent, keyed and ordered
    like named_parameters(); input gradients come with reciprocal and autograd."""
    d = examples.narx(inputs=2, hidden=4, outputs=2, input_taps=1, output_taps=2)
    fn = bind(d, method)
    assert isinstance(fn, protocol.VJPFunction)
    params = {k: p.detach() for k, p in d.named_parameters()}
    x, _ = _data(d, T=9, B=3, seed=1)
    grad_y = torch.randn(9, 3, 2, dtype=torch.float64)
    y, saved = fn.forward(params, x)
    grads, grad_x = fn.backward(params, x, saved, grad_y)
    assert list(grads) == list(params)

    leaves = dict(d.named_parameters())
    x_leaf = x.clone().requires_grad_(True)
    y_ref = d.run(x_leaf)
    assert float((y - y_ref.detach()).abs().max()) <= 1e-13
    ref = torch.autograd.grad((y_ref * grad_y).sum(), [x_leaf, *leaves.values()])
    assert _rel(grads, dict(zip(leaves, ref[1:], strict=True))) <= TOL
    if method == "forward":
        assert grad_x is None and not fn.provides_input_grad
    else:
        assert fn.provides_input_grad
        assert float((grad_x - ref[0]).abs().max()) <= TOL * float(ref[0].abs().max())


def _two_in_two_out() -> Diagram:
    """Inputs a (2) and b (1); outputs u = tanh(a W + q⁻¹u G) and v = (u P) ⊙ (b Q)."""
    d = Diagram()
    a, b = d.input("a", 2), d.input("b", 1)
    s = d.add(Sum(2, 3), d.add(Gain(2, 3, seed=1), a, name="W"), None, name="s")
    u = d.add(Function("tanh", 3), s, name="phi")
    fb = d.add(Gain(3, 3, weight=0.4 * torch.eye(3, dtype=torch.float64)), name="G")
    d.connect(fb, "s", 1)
    d.connect(d.add(Delay(3), u, name="z"), "G")
    v = d.add(
        Product(2),
        d.add(Gain(3, 2, seed=2), u, name="P"),
        d.add(Gain(1, 2, seed=3), b, name="Q"),
        name="prod",
    )
    d.output("u", u)
    d.output("v", v)
    return d


@pytest.mark.parametrize("method", DIAGRAM_METHODS)
def test_dict_inputs_and_outputs(method: str) -> None:
    d = _two_in_two_out()
    g = torch.Generator().manual_seed(3)
    a = torch.randn(8, 5, 2, generator=g, dtype=torch.float64, requires_grad=True)
    b = torch.randn(8, 5, 1, generator=g, dtype=torch.float64, requires_grad=True)
    tu = torch.randn(8, 5, 3, generator=g, dtype=torch.float64)
    tv = torch.randn(8, 5, 2, generator=g, dtype=torch.float64)

    def loss_of(out: dict) -> torch.Tensor:
        return F.mse_loss(out["u"], tu) + (out["v"] - tv).abs().pow(3).mean()

    params = d.parameter_dict()
    ref = torch.autograd.grad(loss_of(d.run({"a": a, "b": b})), [a, b, *params.values()])
    oracle = dict(zip(params, ref[2:], strict=True))
    d.grad = method
    if method == "forward":  # parameter gradients only
        with pytest.raises(ValueError, match="parameter gradients only"):
            d({"a": a, "b": b})
        a, b = a.detach(), b.detach()
    out = d({"a": a, "b": b})
    assert set(out) == {"u", "v"}
    loss_of(out).backward()
    assert _rel({k: p.grad for k, p in params.items()}, oracle) <= TOL
    if method != "forward":
        for got, want in zip((a.grad, b.grad), ref[:2], strict=True):
            assert float((got - want).abs().max()) <= TOL * float(want.abs().max())


class _CountingMLP(nn.Module):
    def __init__(self, n_in: int, n_out: int) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(n_in, 4), nn.Tanh(), nn.Linear(4, n_out)).double()
        self.calls = 0

    def forward(self, u: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        return self.net(u)


def _narx_with(fn: nn.Module | object, n_in: int = 3) -> Diagram:
    d = Diagram()
    x = d.input("x", 1)
    z = d.add(Delay(2), name="z")
    y = d.add(Multivariate(fn, [n_in], 2), d.add(Concat([1, 2]), x, z), name="N")
    d.connect(y, "z")
    d.output("y", y)
    return d


def test_reciprocal_evaluates_a_multivariate_block_once_per_step() -> None:
    """Rule 4 without a second forward: F runs T times in the forward pass and not at all while
    the reciprocal network runs backward."""
    mlp = _CountingMLP(3, 2)
    d = _narx_with(mlp)
    T, B = 11, 4
    x = torch.randn(T, B, 1, dtype=torch.float64)
    t = torch.randn(T, B, 2, dtype=torch.float64)
    _, oracle = d.gradient(x, t, method="autograd")
    mlp.calls = 0
    _, grads = d.gradient(x, t, method="reciprocal")
    assert mlp.calls == T
    assert _rel(grads, oracle) <= TOL

    mlp.calls = 0
    d.grad = "reciprocal"
    loss = F.mse_loss(d(x), t)
    assert mlp.calls == T
    loss.backward()
    assert mlp.calls == T  # the backward pass evaluated nothing
    assert _rel({k: p.grad for k, p in d.parameter_dict().items()}, oracle) <= TOL

    mlp.calls = 0  # the forward method: one vectorised Jacobian evaluation per step
    _, grads = d.gradient(x, t, method="forward")
    assert mlp.calls == T
    assert _rel(grads, oracle) <= TOL


class _Guarded(_CountingMLP):
    """An MLP whose forward branches on the values of its input: torch.func cannot vmap it."""

    def forward(self, u: torch.Tensor) -> torch.Tensor:
        if float(u.detach().abs().max()) > 1e6:
            raise ValueError("input too large")
        return super().forward(u)


def test_forward_method_falls_back_per_sample_for_untransformable_functions() -> None:
    """When torch.func cannot transform F, the forward method evaluates it once per sample and
    step, with exact Jacobians; the reciprocal method is unaffected (T evaluations)."""
    mlp = _Guarded(3, 2)
    d = _narx_with(mlp)
    T, B = 6, 4
    x = torch.randn(T, B, 1, dtype=torch.float64)
    t = torch.randn(T, B, 2, dtype=torch.float64)
    _, oracle = d.gradient(x, t, method="autograd")
    mlp.calls = 0
    _, grads = d.gradient(x, t, method="forward")
    assert mlp.calls == T * B  # the failed attempt stops before evaluating the MLP
    assert d.blocks["N"].vmappable is False
    assert _rel(grads, oracle) <= TOL
    mlp.calls = 0
    _, grads = d.gradient(x, t, method="reciprocal")
    assert mlp.calls == T
    assert _rel(grads, oracle) <= TOL


def test_forward_method_vmaps_a_meshnet_block_bridged_to_its_engine() -> None:
    """A MeshNet bridged to its BPTT engine is transformed by torch.func (jacrev over θ and x,
    vmapped over the batch: no per-sample fallback) and its parameter gradients equal
    autograd."""
    topo = mp.Topology.random(inputs=3, hidden=3, outputs=2, density=0.8, bias=True, seed=4)
    net = mp.MeshNet(
        topo,
        ticks=2,
        activation="tanh",
        output_activation="identity",
        dtype=torch.float64,
        seed=1,
        grad="bptt",
    )
    d = _narx_with(net)
    x = torch.randn(7, 3, 1, dtype=torch.float64)
    t = torch.randn(7, 3, 2, dtype=torch.float64)
    _, oracle = d.gradient(x, t, method="autograd")
    _, grads = d.gradient(x, t, method="forward")
    assert d.blocks["N"].vmappable is True
    assert list(grads) == ["N.module.A"]
    assert _rel(grads, oracle) <= TOL


def test_a_module_shared_by_two_blocks_gets_one_gradient() -> None:
    """One nn.Module in two Multivariate blocks: one parameter name (the first block's), whose
    gradient sums both blocks' contributions, by every method."""
    shared = examples.mlp_module(2, 3, 2, seed=5)
    d = Diagram()
    x = d.input("x", 2)
    h = d.add(Multivariate(shared, [2], 2), x, name="N1")
    y = d.add(Multivariate(shared, [2], 2), d.add(Function("tanh", 2), h), name="N2")
    d.output("y", y)
    assert list(d.parameter_dict()) == [f"N1.module.{n}" for n, _ in shared.named_parameters()]
    xs = torch.randn(4, 3, 2, dtype=torch.float64)
    ts = torch.randn(4, 3, 2, dtype=torch.float64)
    _, oracle = d.gradient(xs, ts, method="autograd")
    for method in ("reciprocal", "forward"):
        _, grads = d.gradient(xs, ts, method=method)
        assert _rel(grads, oracle) <= TOL, method


def test_grad_attribute_and_block_names_are_validated() -> None:
    assert Diagram().grad == "reciprocal"
    with pytest.raises(ValueError, match="unknown method 'bptt'"):
        Diagram(grad="bptt")
    d = Diagram()
    with pytest.raises(ValueError, match="unknown method"):
        d.grad = "rtrl"
    with pytest.raises(ValueError, match="taken by an attribute"):
        d.add(Delay(1), d.input("x", 1), name="run")
    assert list(d.blocks) == ["x"]


def test_no_grad_call_is_a_plain_run() -> None:
    d = examples.fir_network()
    x, _ = _data(d, T=6, B=2, seed=0)
    with torch.no_grad():
        y = d(x)
    assert y.grad_fn is None
    assert torch.equal(y, d.run(x).detach())
