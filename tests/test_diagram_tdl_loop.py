"""A tapped delay line directly on a feedback loop: only its tap 0 (the undelayed x(k)) can close
an algebraic loop; a loop through taps 1..K only is simulated and differentiated exactly."""

from __future__ import annotations

import pytest
import torch

from meshprop.diagram import (
    AlgebraicLoopError,
    Diagram,
    Function,
    Gain,
    Split,
    Sum,
    TappedDelayLine,
)

TOL = 1e-10


def tdl_loop(width: int = 2, taps: int = 3, seed: int = 0, tap0_output: bool = True) -> Diagram:
    """h(k) = tanh(x(k) V + [h(k−1) | … | h(k−K)] W): the line's taps 1..K fed back directly,
    its tap 0 cut off by a Split (to a second output z(k) = σ(h(k)), or to nothing)."""
    d = Diagram()
    x = d.input("x", 1)
    u = d.add(Gain(1, width, seed=seed), x, name="V")
    s = d.add(Sum(2, width), u, None, name="s")
    h = d.add(Function("tanh", width), s, name="phi")
    line = d.add(TappedDelayLine(width, taps), h, name="line")
    tap0, delayed = d.add(Split([width, width * taps]), line, name="cut")
    d.connect(d.add(Gain(width * taps, width, seed=seed + 1), delayed, name="W"), "s", 1)
    d.output("y", h)
    if tap0_output:
        d.output("z", d.add(Function("sigmoid", width), tap0, name="sin"))
    return d.to(torch.float64)


def by_hand(d: Diagram, x: torch.Tensor, V: torch.Tensor, W: torch.Tensor, taps: int):
    """The same network as a plain PyTorch loop (the independent oracle)."""
    T, B, _ = x.shape
    width = V.shape[1]
    past = [x.new_zeros(B, width) for _ in range(taps)]  # h(k−1), …, h(k−K)
    ys, zs = [], []
    for k in range(T):
        h = torch.tanh(x[k] @ V + torch.cat(past, dim=1) @ W)
        ys.append(h)
        zs.append(torch.sigmoid(h))
        past = [h, *past[:-1]]
    return torch.stack(ys), torch.stack(zs)


def loss_of(y, z, ty, tz):
    return ((y - ty) ** 2).mean() + ((z - tz) ** 2).mean()


@pytest.mark.parametrize(("width", "taps"), [(1, 1), (1, 2), (2, 3)])
def test_tdl_loop_is_accepted_and_exact(width, taps):
    d = tdl_loop(width, taps, seed=width + taps)
    T, B = 11, 3
    x = torch.randn(T, B, 1, dtype=torch.float64)
    targets = {"y": torch.randn(T, B, width, dtype=torch.float64)}
    targets["z"] = torch.randn(T, B, width, dtype=torch.float64)

    V = d.blocks["V"].weight.detach().clone().requires_grad_(True)
    W = d.blocks["W"].weight.detach().clone().requires_grad_(True)
    y_ref, z_ref = by_hand(d, x, V, W, taps)
    out = d.run(x)
    assert float((out["y"] - y_ref).detach().abs().max()) <= TOL
    assert float((out["z"] - z_ref).detach().abs().max()) <= TOL
    gV, gW = torch.autograd.grad(loss_of(y_ref, z_ref, targets["y"], targets["z"]), (V, W))
    reference = {"V.weight": gV, "W.weight": gW}
    for method in ("reciprocal", "forward", "autograd"):
        value, grads = d.gradient(x, targets, method=method)
        assert float(value) == pytest.approx(
            float(loss_of(y_ref, z_ref, targets["y"], targets["z"]).detach()), rel=1e-12
        )
        for key, g in reference.items():
            err = float((grads[key] - g).abs().max() / g.abs().max())
            assert err <= TOL, (method, key, err)


def test_tdl_loop_with_unused_tap0_and_its_jacobian():
    d = tdl_loop(1, 2, seed=5, tap0_output=False)
    x = torch.randn(8, 2, 1, dtype=torch.float64)
    V = d.blocks["V"].weight.detach().clone().requires_grad_(True)
    W = d.blocks["W"].weight.detach().clone().requires_grad_(True)

    def f(v, w):
        return by_hand(d, x, v, w, 2)[0]

    jv, jw = torch.autograd.functional.jacobian(f, (V, W))
    reference = torch.cat([jv.flatten(3), jw.flatten(3)], dim=3)  # (T, B, O, P)
    J = d.jacobian(x)
    assert float((J - reference).abs().max() / reference.abs().max()) <= TOL
    # the reciprocal network (the tapped advance line on the loop) is accepted too
    d.reciprocal().validate()


def test_two_lines_on_one_loop_sweep_with_provisional_gains():
    """h(k) = tanh(x(k) + [g(k−1) g(k−2)] A), g(k) = tanh(h(k) B): the loop closes through the
    delayed taps of the second line; the first line's tap 0 feeds the gain B, which is evaluated
    provisionally before its final evaluation.  Its gradient must be accumulated once
    (reciprocal) and every method must be exact."""
    d = Diagram()
    x = d.input("x", 1)
    s = d.add(Sum(2, 1), x, None, name="s")
    h = d.add(Function("tanh", 1), s, name="h")
    h_now, _h_past = d.add(Split([1, 1]), d.add(TappedDelayLine(1, 1), h, name="h_line"))
    g = d.add(Function("tanh", 1), d.add(Gain(1, 1, seed=1), h_now, name="B"), name="g")
    _g0, g_past = d.add(Split([1, 2]), d.add(TappedDelayLine(1, 2), g, name="g_line"), name="gc")
    d.connect(d.add(Gain(2, 1, seed=2), g_past, name="A"), "s", 1)
    d.output("y", h)
    d = d.to(torch.float64)
    schedule = d.schedule() + d.reciprocal().schedule()
    assert ("B", False) in schedule and schedule.count(("B", True)) == 2  # forward, reciprocal
    T, B = 10, 2
    x = torch.randn(T, B, 1, dtype=torch.float64)
    target = torch.randn(T, B, 1, dtype=torch.float64)
    A = d.blocks["A"].weight.detach().clone().requires_grad_(True)
    Bw = d.blocks["B"].weight.detach().clone().requires_grad_(True)
    gs, ys = [x.new_zeros(B, 1), x.new_zeros(B, 1)], []
    for k in range(T):  # gs[-1] = g(k−1), gs[-2] = g(k−2)
        h_k = torch.tanh(x[k] + torch.cat([gs[-1], gs[-2]], dim=1) @ A)
        ys.append(h_k)
        gs.append(torch.tanh(h_k @ Bw))
    y_ref = torch.stack(ys)
    assert float((d.run(x) - y_ref).detach().abs().max()) <= TOL
    gA, gB = torch.autograd.grad(((y_ref - target) ** 2).mean(), (A, Bw))
    for method in ("reciprocal", "forward", "autograd"):
        _, grads = d.gradient(x, target, method=method)
        assert float((grads["A.weight"] - gA).abs().max() / gA.abs().max()) <= TOL, method
        assert float((grads["B.weight"] - gB).abs().max() / gB.abs().max()) <= TOL, method


def test_tap0_fed_back_is_still_an_algebraic_loop():
    d = Diagram()
    x = d.input("x", 1)
    s = d.add(Sum(2, 1), x, None, name="s")
    h = d.add(Function("tanh", 1), s, name="phi")
    line = d.add(TappedDelayLine(1, 2), h, name="line")
    d.connect(d.add(Gain(3, 1), line, name="W"), "s", 1)  # every tap, tap 0 included
    d.output("y", h)
    with pytest.raises(AlgebraicLoopError) as info:
        d.run(torch.zeros(4, 1, 1, dtype=torch.float64))
    message = str(info.value)
    assert "s -> phi -> line -> W -> s" in message
    assert "tap 0 of tapped delay line 'line'" in message
    assert "fed back" in message


def test_tap0_through_the_split_back_is_an_algebraic_loop():
    d = Diagram()
    x = d.input("x", 1)
    s = d.add(Sum(2, 1), x, None, name="s")
    h = d.add(Function("tanh", 1), s, name="phi")
    line = d.add(TappedDelayLine(1, 2), h, name="line")
    tap0, _delayed = d.add(Split([1, 2]), line, name="cut")
    d.connect(d.add(Gain(1, 1), tap0, name="W"), "s", 1)  # tap 0 fed back: algebraic
    d.output("y", h)
    d.output("rest", _delayed)
    with pytest.raises(AlgebraicLoopError, match="s -> phi -> line -> cut -> W -> s; tap 0"):
        d.run(torch.zeros(4, 1, 1, dtype=torch.float64))
