"""The paper's examples (paper 004 §3) and paper 000's MNN as diagrams: three gradient methods
agree, the reciprocal networks have the structure the paper derives, the MNN diagram matches
the core engines, and the drawings render."""

from __future__ import annotations

import pytest
import torch

import meshprop as mp
from meshprop.diagram import draw, examples

TOL = 1e-10

BUILDERS = {
    "feedforward": lambda: examples.feedforward((3, 5, 4, 2)),
    "narx": lambda: examples.narx(inputs=2, hidden=5, outputs=2, input_taps=2, output_taps=2),
    "cascaded": lambda: examples.cascaded(taps=2),
    "fir_network": lambda: examples.fir_network((2, 4, 3, 1), taps=(3, 2, 1)),
    "iir_network": lambda: examples.iir_network(inputs=2, hidden=3, outputs=2),
}


def max_rel(grads: dict, oracle: dict) -> float:
    scale = max(float(g.abs().max()) for g in oracle.values())
    assert scale > 0
    return max(float((grads[k] - oracle[k]).abs().max()) for k in oracle) / scale


@pytest.mark.parametrize("name", list(BUILDERS))
@pytest.mark.parametrize("T,B", [(1, 1), (13, 4), (40, 8)])
def test_example_gradients_agree(name: str, T: int, B: int) -> None:
    d = BUILDERS[name]()
    g = torch.Generator().manual_seed(T * 100 + B)
    x = torch.randn(T, B, d.blocks["x"].out_widths[0], generator=g, dtype=torch.float64)
    t = torch.randn(T, B, d.blocks["y"].in_widths[0], generator=g, dtype=torch.float64)
    la, ga = d.gradient(x, t, method="autograd")
    for method in ("reciprocal", "forward"):
        lm, gm = d.gradient(x, t, method=method)
        assert abs(float(lm - la)) <= TOL * float(la)
        assert max_rel(gm, ga) <= TOL, method


def test_bptt_reciprocal_has_advance_in_feedback() -> None:
    """Fig. 2 / Eq. 4: in NARX's reciprocal, δ(k) = N′(k+1)ᵀδ(k+1) − 2e(k): the output error
    and the advanced delta meet in a summing junction that feeds N′(k)ᵀ."""
    r = examples.narx().reciprocal()
    assert r.blocks["z"].kind == "advance"
    assert r.blocks["N"].kind == "jacobian_t"
    assert r.blocks["N__sum0"].kind == "sum"
    assert r.edges[("N", 0)].block == "N__sum0"
    feeding = {r.edges[("N__sum0", i)].block for i in range(2)}
    assert feeding == {"y", "z"}


def test_cascaded_reciprocal_sums_advanced_deltas() -> None:
    """Eq. 7: δ_u(k) = δ₁(k) + δ₂(k+1) + δ₃(k+2) — the tapped advance line of u's delays."""
    r = examples.cascaded(taps=2).reciprocal()
    assert r.blocks["u_tdl"].kind == "tal" and r.blocks["u_tdl"].taps == 2
    assert r.edges[("N1", 0)].block == "u_tdl"


def test_fir_reciprocal_is_temporal_backprop_eq13() -> None:
    """Eq. 13 by hand for a single linear FIR synapse y(k) = Σ_m w(m) x(k−m):
    δ_x(k) = Σ_m w(m) δ_y(k+m) (the filter w(q⁺¹)) and ∂J/∂w(m) = Σ_k x(k−m) δ_y(k)."""
    from meshprop.diagram import Diagram, fir_synapse

    d = Diagram()
    y = fir_synapse(d, d.input("x", 1), 1, 3, name="F")
    d.output("y", y)
    d = d.to(torch.float64)
    T = 12
    x = torch.randn(T, 1, 1, dtype=torch.float64)
    t = torch.randn(T, 1, 1, dtype=torch.float64)
    _, grads = d.gradient(x, t, method="reciprocal")
    w = d.blocks["F_W"].weight.detach()[:, 0]
    yv = d.run(x)[:, 0, 0]
    delta = 2 * (yv - t[:, 0, 0]) / T
    xv = x[:, 0, 0]
    by_hand = torch.stack([sum(xv[k - m] * delta[k] for k in range(m, T)) for m in range(4)])
    assert torch.allclose(grads["F_W.weight"][:, 0], by_hand, rtol=1e-12, atol=0)
    assert torch.allclose(yv[5], sum(w[m] * xv[5 - m] for m in range(4)), rtol=1e-12)


@pytest.mark.parametrize("loss", ["mse", "cross_entropy"])
@pytest.mark.parametrize("seed", range(4))
def test_mnn_as_diagram_matches_core_bptt(loss: str, seed: int) -> None:
    topo = mp.Topology.random(
        inputs=3, hidden=4 + seed, outputs=2, density=0.6, bias=seed % 2 == 0, seed=seed
    )
    net = mp.MeshNet(
        topo,
        ticks=2 + seed,
        activation=["tanh", "sigmoid", "softplus", "leaky_relu"][seed],
        output_activation="identity",
        dtype=torch.float64,
        seed=seed,
    )
    g = torch.Generator().manual_seed(seed)
    B = 5
    per_tick = seed % 2 == 1
    x = torch.randn(*((net.ticks,) if per_tick else ()), B, 3, generator=g, dtype=torch.float64)
    if loss == "mse":
        target = torch.randn(B, 2, generator=g, dtype=torch.float64)

        def last(y, t):
            return ((y[-1] - t) ** 2).mean()
    else:
        target = torch.randint(0, 2, (B,), generator=g)

        def last(y, t):
            return torch.nn.functional.cross_entropy(y[-1], t)

    L, dA = mp.gradient(net, x, target, loss=loss, method="bptt")
    d = examples.mnn(net)
    xs = x if per_tick else x.expand(net.ticks, B, 3)
    with torch.no_grad():
        assert torch.allclose(d.run(xs)[-1], net(x), rtol=1e-13, atol=1e-14)
    for method in ("reciprocal", "forward", "autograd"):
        ld, grads = d.gradient(xs, target, loss=last, method=method)
        dA_d = examples.mnn_gradient(grads, net)
        assert abs(float(ld - L)) <= TOL * abs(float(L))
        assert float((dA_d - dA).abs().max()) <= TOL * float(dA.abs().max()), method
        assert bool((dA_d[~topo.mask] == 0).all())


def test_mnn_with_input_taps_runs() -> None:
    topo = mp.Topology.mesh(inputs=4, hidden=3, outputs=1, bias=True)
    net = mp.MeshNet(topo, ticks=1, activation="tanh", dtype=torch.float64, seed=0)
    d = examples.mnn(net, input_taps=3)
    assert d.blocks["x"].out_widths == (1,)
    x = torch.randn(9, 2, 1, dtype=torch.float64)
    t = torch.randn(9, 2, 1, dtype=torch.float64)
    _, ga = d.gradient(x, t, method="autograd")
    _, gr = d.gradient(x, t, method="reciprocal")
    assert max_rel(gr, ga) <= TOL
    with pytest.raises(ValueError, match="multiple"):
        examples.mnn(net, input_taps=2)


def test_draw_writes_png(tmp_path) -> None:
    path = tmp_path / "narx.png"
    fig = draw(examples.narx(), path, title="NARX")
    assert fig is not None
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 10_000


@pytest.mark.parametrize("grad", ["bptt", "autograd"])
def test_meshnet_as_one_multivariate_block(grad: str) -> None:
    """Rule 4 with a whole MNN as the block: NARX whose 𝒩 is a MeshNet."""
    from meshprop.diagram import Concat, Delay, Diagram, Multivariate, TappedDelayLine

    topo = mp.Topology.random(inputs=3, hidden=4, outputs=1, density=0.7, bias=True, seed=2)
    net = mp.MeshNet(
        topo,
        ticks=3,
        activation="tanh",
        output_activation="identity",
        dtype=torch.float64,
        seed=0,
        grad=grad,
    )
    d = Diagram()
    xs = d.add(TappedDelayLine(1, 1), d.input("x", 1))
    z = d.add(Delay(1), name="z")
    y = d.add(Multivariate(net, [3], 1, name="MNN"), d.add(Concat([2, 1]), xs, z), name="N")
    d.connect(y, "z")
    d.output("y", y)
    x = torch.randn(8, 3, 1, dtype=torch.float64)
    t = torch.randn(8, 3, 1, dtype=torch.float64)
    _, ga = d.gradient(x, t, method="autograd")
    assert list(ga) == ["N.module.A"]
    for method in ("reciprocal", "forward"):
        _, gm = d.gradient(x, t, method=method)
        assert max_rel(gm, ga) <= TOL
    net.grad = "fop"
    with pytest.raises(ValueError, match="weights' gradient only"):
        d.gradient(x, t, method="reciprocal")
