"""The diagram engine: random diagrams with every kind of block, three gradient methods agreeing
in float64; validation errors; simulation semantics."""

from __future__ import annotations

import random

import pytest
import torch
from torch import nn

from meshprop.diagram import (
    Advance,
    AlgebraicLoopError,
    Branch,
    Concat,
    Constant,
    Delay,
    DiagGain,
    Diagram,
    Function,
    Gain,
    Multivariate,
    Product,
    Split,
    Sum,
    TappedAdvanceLine,
    TappedDelayLine,
    fir_synapse,
    iir_synapse,
)

TOL = 1e-10  # float64, relative


def max_rel(grads: dict, oracle: dict) -> float:
    scale = max(float(g.abs().max()) for g in oracle.values())
    assert scale > 0
    return max(float((grads[k] - oracle[k]).abs().max()) for k in oracle) / scale


class _TinyMLP(nn.Module):
    def __init__(self, n_in: int, n_out: int, seed: int) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.W = nn.Parameter(torch.randn(n_in, 3, generator=g, dtype=torch.float64) / n_in**0.5)
        self.V = nn.Parameter(torch.randn(3, n_out, generator=g, dtype=torch.float64) / 3**0.5)

    def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(torch.cat([a, b], 1) @ self.W) @ self.V


def random_diagram(seed: int) -> tuple[Diagram, int, int]:
    """A random network: gains, diagonal gains, functions, sums, products, concat/split,
    delays, tapped delay lines, FIR and IIR synapses, multivariate blocks, constants, and
    feedback loops closed through unit delays (with a tanh so they stay bounded)."""
    rng = random.Random(seed)
    d = Diagram()
    w_in = rng.randint(1, 3)
    pool = [d.input("x", w_in)]
    loops: list[tuple[str, int]] = []
    counter = [0]

    def width(p):
        return d.blocks[p.block].out_widths[p.index]

    def name(tag):
        counter[0] += 1
        return f"{tag}{counter[0]}"

    def to_width(p, w):
        if width(p) == w:
            return p
        return d.add(Gain(width(p), w, seed=rng.randrange(10**6)), p, name=name("g"))

    for _ in range(rng.randint(4, 9)):
        kind = rng.choice(
            [
                "gain",
                "diag",
                "func",
                "sum",
                "prod",
                "delay",
                "tdl",
                "fir",
                "iir",
                "concat",
                "mv",
                "loop",
                "const",
            ]
        )
        p = rng.choice(pool[-4:])
        w = width(p)
        if kind == "gain":
            new = d.add(Gain(w, rng.randint(1, 3), seed=rng.randrange(10**6)), p, name=name("g"))
        elif kind == "diag":
            new = d.add(DiagGain(w, seed=rng.randrange(10**6)), p, name=name("dg"))
        elif kind == "func":
            act = rng.choice(["tanh", "sigmoid", "softplus", "identity", "leaky_relu"])
            new = d.add(Function(act, w), p, name=name("f"))
        elif kind == "sum":
            q = to_width(rng.choice(pool), w)
            new = d.add(Sum(2, w), p, q, name=name("s"))
        elif kind == "prod":
            q = to_width(rng.choice(pool), w)
            new = d.add(Product(w), p, q, name=name("p"))
        elif kind == "delay":
            new = d.add(Delay(w), p, name=name("z"))
        elif kind == "tdl":
            new = d.add(TappedDelayLine(w, rng.randint(0, 3)), p, name=name("tdl"))
        elif kind == "fir":
            new = fir_synapse(
                d,
                p,
                rng.randint(1, 3),
                rng.randint(1, 3),
                name=name("fir"),
                seed=rng.randrange(10**6),
            )
        elif kind == "iir":
            new = iir_synapse(
                d,
                p,
                rng.randint(0, 2),
                rng.randint(1, 2),
                name=name("iir"),
                seed=rng.randrange(10**6),
            )
        elif kind == "concat":
            q = rng.choice(pool)
            c = d.add(Concat([w, width(q)]), p, q, name=name("cat"))
            parts = d.add(Split([1, w + width(q) - 1]), c, name=name("split"))
            pool.append(parts[0])
            new = parts[1]
        elif kind == "mv":
            q = rng.choice(pool)
            new = d.add(
                Multivariate(_TinyMLP(w + width(q), 2, rng.randrange(10**6)), [w, width(q)], 2),
                p,
                q,
                name=name("mv"),
            )
        elif kind == "loop":
            z = d.add(Delay(w), name=name("loop"))
            loops.append((z.block, w))
            new = d.add(Sum(2, w), p, z, name=name("s"))
        else:
            c = d.add(Constant(rng.uniform(-1, 1), w), name=name("c"))
            new = d.add(Sum(2, w), p, c, name=name("s"))
        pool.append(new)
    for z, w in loops:  # close each loop: late signal → gain → tanh → q⁻¹
        p = rng.choice(pool[-3:])
        g = d.add(
            Gain(
                width(p),
                w,
                weight=0.5
                * (
                    2
                    * torch.rand(
                        width(p),
                        w,
                        generator=torch.Generator().manual_seed(rng.randrange(10**6)),
                        dtype=torch.float64,
                    )
                    - 1
                ),
            ),
            p,
            name=name("fb"),
        )
        d.connect(d.add(Function("tanh", w), g, name=name("fbt")), z)
    both = d.add(Concat([width(pool[-1]), w_in]), pool[-1], pool[0], name=name("cat"))
    last = d.add(
        Gain(width(pool[-1]) + w_in, rng.randint(1, 2), seed=rng.randrange(10**6)),
        both,
        name=name("g"),
    )  # x reaches it directly: ∂J/∂W ≠ 0 even when T = 1
    outs = [last, *rng.sample(pool[1:], k=rng.randint(0, 1))]
    for i, p in enumerate(outs):
        d.output(f"y{i}", p)
    return d.to(torch.float64), w_in, len(outs)


CASES = list(range(36))


@pytest.mark.parametrize("seed", CASES)
def test_random_diagram_methods_agree(seed: int) -> None:
    d, w_in, n_out = random_diagram(seed)
    g = torch.Generator().manual_seed(1000 + seed)
    T = [1, 2, 5, 17, 50][seed % 5]
    B = 1 + seed % 8
    x = torch.randn(T, B, w_in, generator=g, dtype=torch.float64)
    targets = {
        f"y{i}": torch.randn(T, B, d.blocks[f"y{i}"].in_widths[0], generator=g, dtype=torch.float64)
        for i in range(n_out)
    }
    la, ga = d.gradient(x, targets, method="autograd")
    assert any(float(v.abs().max()) > 0 for v in ga.values())
    lr, gr = d.gradient(x, targets, method="reciprocal")
    lf, gf = d.gradient(x, targets, method="forward")
    assert set(gr) == set(ga) == set(gf) == set(d.parameter_dict())
    assert abs(float(lr - la)) <= TOL * abs(float(la))
    assert abs(float(lf - la)) <= TOL * abs(float(la))
    assert max_rel(gr, ga) <= TOL
    assert max_rel(gf, ga) <= TOL


def test_random_diagrams_cover_every_block_kind() -> None:
    kinds = set()
    for seed in CASES:
        d, _, _ = random_diagram(seed)
        kinds |= {b.kind for b in d.blocks.values()}
        kinds |= {b.kind for b in d.reciprocal().blocks.values()}
    expected = {
        "gain",
        "diag_gain",
        "function",
        "sum",
        "branch",
        "product",
        "delay",
        "tdl",
        "concat",
        "split",
        "multivariate",
        "constant",
        "advance",
        "tal",
        "zero",
        "derivative",
        "jacobian_t",
        "product_t",
        "gain_t",
        "diag_gain_t",
    }
    assert expected <= kinds, expected - kinds


def test_callable_loss_all_methods_agree() -> None:
    d, w_in, n_out = random_diagram(3)
    g = torch.Generator().manual_seed(7)
    x = torch.randn(9, 4, w_in, generator=g, dtype=torch.float64)
    targets = {
        f"y{i}": torch.randn(9, 4, d.blocks[f"y{i}"].in_widths[0], generator=g, dtype=torch.float64)
        for i in range(n_out)
    }

    def loss(y, t):  # only the last 3 steps count, weighted by channel
        return sum(((y[n][-3:] - t[n][-3:]).abs() ** 3).sum() for n in y)

    la, ga = d.gradient(x, targets, loss=loss, method="autograd")
    for method in ("reciprocal", "forward"):
        lm, gm = d.gradient(x, targets, loss=loss, method=method)
        assert abs(float(lm - la)) <= TOL * abs(float(la))
        assert max_rel(gm, ga) <= TOL


def test_initial_states_are_used_and_differentiated() -> None:
    from meshprop.diagram import examples

    d = examples.narx(inputs=2, hidden=4, outputs=2, input_taps=1, output_taps=3)
    x = torch.randn(6, 2, 2, dtype=torch.float64)
    t = torch.randn(6, 2, 2, dtype=torch.float64)
    init = {
        "z": torch.randn(2, 2, dtype=torch.float64),
        "y_tdl": torch.randn(2, 4, dtype=torch.float64),
        "x_tdl": torch.randn(2, 2, dtype=torch.float64),
    }
    la, ga = d.gradient(x, t, method="autograd", initial_states=init)
    lr, gr = d.gradient(x, t, method="reciprocal", initial_states=init)
    lf, gf = d.gradient(x, t, method="forward", initial_states=init)
    l0, _ = d.gradient(x, t, method="autograd")
    assert float(la) != float(l0)
    assert abs(float(lr - la)) <= TOL * float(la) and abs(float(lf - la)) <= TOL * float(la)
    assert max_rel(gr, ga) <= TOL and max_rel(gf, ga) <= TOL


def test_float32_agrees_with_float64() -> None:
    d, w_in, n_out = random_diagram(8)
    x = torch.randn(10, 3, w_in, dtype=torch.float64)
    targets = {
        f"y{i}": torch.randn(10, 3, d.blocks[f"y{i}"].in_widths[0], dtype=torch.float64)
        for i in range(n_out)
    }
    _, g64 = d.gradient(x, targets, method="reciprocal")
    d32 = d.to(torch.float32)
    _, g32 = d32.gradient(x.float(), {k: v.float() for k, v in targets.items()})
    assert all(v.dtype == torch.float32 for v in g32.values())
    assert max_rel({k: v.double() for k, v in g32.items()}, g64) <= 1e-5


# ------------------------------------------------------------------ semantics
def test_delay_tdl_and_iir_simulation_by_hand() -> None:
    d = Diagram()
    x = d.input("x", 1)
    d.output("z", d.add(Delay(1), x, name="q"))
    d.output("line", d.add(TappedDelayLine(1, 2), x))
    seq = torch.arange(1.0, 6.0, dtype=torch.float64).reshape(5, 1, 1)
    out = d.run(seq)
    assert out["z"][:, 0, 0].tolist() == [0, 1, 2, 3, 4]
    assert out["line"][:, 0].tolist() == [[1, 0, 0], [2, 1, 0], [3, 2, 1], [4, 3, 2], [5, 4, 3]]
    out = d.run(seq, initial_states={"q": torch.tensor([[7.0]], dtype=torch.float64)})
    assert out["z"][:, 0, 0].tolist() == [7, 1, 2, 3, 4]

    e = Diagram()
    s = iir_synapse(e, e.input("x", 1), a_taps=1, b_taps=1, name="h")
    e.output("y", s)
    with torch.no_grad():
        e.blocks["h_a"].weight.copy_(torch.tensor([1.0, 0.5]))
        e.blocks["h_b"].weight.copy_(torch.tensor([0.25]))
    y = e.run(torch.tensor([1.0, 0.0, 0.0, 0.0], dtype=torch.float64).reshape(4, 1, 1))
    # y(k) = x(k) + 0.5 x(k−1) + 0.25 y(k−1): impulse response 1, 0.75, 0.1875, 0.046875
    assert torch.allclose(
        y[:, 0, 0], torch.tensor([1.0, 0.75, 0.1875, 0.046875], dtype=torch.float64)
    )


def test_reciprocal_follows_the_six_rules() -> None:
    d = Diagram()
    x = d.input("x", 2)
    s = d.add(Sum(2, 2), x, None, name="s")
    f = d.add(Function("tanh", 2), s, name="f")
    b1, b2 = d.add(Branch(2, 2), f, name="b")
    z = d.add(Delay(2), b1, name="z")
    d.connect(d.add(Gain(2, 2), z, name="w"), "s", 1)
    d.add(TappedDelayLine(2, 3), b2, name="line")
    d.output("y", b2)  # b2 feeds the output and the line: an implicit branch
    r = d.reciprocal()
    kinds = {n: b.kind for n, b in r.blocks.items()}
    assert kinds["s"] == "branch" and kinds["b"] == "sum"  # rules 1, 2
    assert kinds["f"] == "derivative" and kinds["w"] == "gain_t"  # rule 3
    assert isinstance(r.blocks["z"], Advance)  # rule 5
    assert isinstance(r.blocks["line"], TappedAdvanceLine)
    assert kinds["y"] == "error_input" and kinds["x"] == "input_gradient"  # rule 6
    assert kinds["b__sum1"] == "sum"  # implicit branch point → sum
    assert kinds["line__zero0"] == "zero"  # an output nobody reads gets no error
    assert r.input_names == ["y"] and r.output_names == ["x"]
    assert r is d.reciprocal()  # cached


def test_input_gradient_from_reciprocal_matches_autograd() -> None:
    """Rule 6 read backward: the reciprocal network's outputs are ∂J/∂x(k); d(x) with
    grad="reciprocal" hands them to autograd as the input gradient."""
    d, w_in, n_out = random_diagram(11)
    x = torch.randn(7, 3, w_in, dtype=torch.float64, requires_grad=True)
    targets = {
        f"y{i}": torch.randn(7, 3, d.blocks[f"y{i}"].in_widths[0], dtype=torch.float64)
        for i in range(n_out)
    }

    def loss_of(out):
        out = out if isinstance(out, dict) else {"y0": out}
        return sum(((out[k] - targets[k]) ** 2).mean() for k in out)

    (gx,) = torch.autograd.grad(loss_of(d.run(x)), x)
    assert float(gx.abs().max()) > 0
    d.grad = "reciprocal"
    (gr,) = torch.autograd.grad(loss_of(d(x)), x)
    assert float((gr - gx).abs().max()) <= TOL * float(gx.abs().max())


# ------------------------------------------------------------------ validation
def test_algebraic_loop_is_rejected_naming_the_loop() -> None:
    d = Diagram()
    x = d.input("x", 1)
    s = d.add(Sum(2, 1), x, None, name="junction")
    f = d.add(Function("tanh", 1), s, name="neuron")
    d.connect(d.add(Gain(1, 1), f, name="feedback"), "junction", 1)
    d.output("y", f)
    with pytest.raises(AlgebraicLoopError, match="junction -> neuron -> feedback -> junction"):
        d.run(torch.zeros(3, 1, 1, dtype=torch.float64))
    with pytest.raises(AlgebraicLoopError, match="algebraic loop"):
        d.reciprocal()


def test_same_loop_with_delay_is_accepted() -> None:
    d = Diagram()
    x = d.input("x", 1)
    s = d.add(Sum(2, 1), x, None, name="junction")
    f = d.add(Function("tanh", 1), s, name="neuron")
    z = d.add(Delay(1), f, name="z")
    d.connect(d.add(Gain(1, 1, weight=torch.tensor([[0.5]])), z), "junction", 1)
    d.output("y", f)
    y = d.run(torch.ones(3, 1, 1, dtype=torch.float64))[:, 0, 0]
    t1 = torch.tanh(torch.tensor(1.0, dtype=torch.float64))
    assert torch.allclose(y[:2], torch.stack([t1, torch.tanh(1 + 0.5 * t1)]))


def test_wiring_errors() -> None:
    d = Diagram()
    x = d.input("x", 2)
    with pytest.raises(ValueError, match="width mismatch"):
        d.add(Gain(3, 1), x)
    with pytest.raises(ValueError, match="already exists"):
        d.input("x", 1)
    with pytest.raises(ValueError, match="identifier"):
        d.add(Delay(2), x, name="bad name")
    s = d.add(Sum(2, 2), x, name="s")
    d.output("y", s)
    with pytest.raises(ValueError, match="input port 1 of block 's'"):
        d.run(torch.zeros(2, 1, 2, dtype=torch.float64))
    d.connect(x, "s", 1)
    with pytest.raises(ValueError, match="already wired"):
        d.connect(x, "s", 1)
    with pytest.raises(ValueError, match=r"shape \(T, B, 2\)"):
        d.run(torch.zeros(2, 2))
    with pytest.raises(ValueError, match="NaN"):
        d.run(torch.full((2, 1, 2), float("nan"), dtype=torch.float64))
    with pytest.raises(TypeError, match="Block"):
        d.add("gain")
    with pytest.raises(ValueError, match="unknown method"):
        d.gradient(torch.zeros(2, 1, 2), torch.zeros(2, 1, 2), method="rtrl")
    with pytest.raises(ValueError, match="target for 'y' must have the output's shape"):
        d.gradient(torch.zeros(2, 1, 2), torch.zeros(2, 1, 3))
    with pytest.raises(ValueError, match="unknown activation"):
        Function("swish", 2)
    with pytest.raises(ValueError, match="initial state"):
        z = Diagram()
        z.output("y", z.add(Delay(1), z.input("x", 1), name="z"))
        z.run(torch.zeros(2, 1, 1), initial_states={"z": torch.zeros(3, 1)})
