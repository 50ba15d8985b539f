"""Hand-written φ′ and dE/dy against PyTorch autograd; the losses' targets and metrics."""

from __future__ import annotations

import math

import pytest
import torch

from meshprop.activations import ACTIVATIONS, NeuronActivations
from meshprop.losses import (
    check_target,
    loss_and_grad,
    loss_value,
    metrics,
    validate_target,
)


@pytest.mark.parametrize("name", sorted(ACTIVATIONS))
def test_derivative_equals_autograd(name):
    t = torch.cat([torch.linspace(-30, 30, 601, dtype=torch.float64), torch.zeros(1)])
    leaf = t.clone().requires_grad_(True)
    value = NeuronActivations((name,)).value(leaf.unsqueeze(-1)).squeeze(-1)
    (expected,) = torch.autograd.grad(value.sum(), leaf)
    s, d = ACTIVATIONS[name](t)
    assert torch.equal(s, value.detach())
    assert torch.allclose(d, expected, rtol=1e-13, atol=1e-15)
    s_np, d_np = NeuronActivations((name,)).numpy(t.numpy()[:, None])
    assert torch.allclose(torch.from_numpy(s_np[:, 0]), s, rtol=1e-12, atol=1e-14)
    assert torch.allclose(torch.from_numpy(d_np[:, 0]), d, rtol=1e-12, atol=1e-14)


def test_mixed_activations_apply_per_neuron():
    acts = NeuronActivations(("relu", "tanh", "relu", "identity"))
    t = torch.randn(3, 4, dtype=torch.float64)
    s, d = acts(t)
    assert torch.equal(s[:, 0], torch.relu(t[:, 0])) and torch.equal(s[:, 3], t[:, 3])
    assert torch.allclose(d[:, 1], 1 - torch.tanh(t[:, 1]) ** 2)
    assert acts.uniform is None and NeuronActivations(("tanh",) * 3).uniform == "tanh"


_LAYOUTS = {
    # hidden then outputs: the outputs' columns are one slice
    "contiguous": ("tanh",) * 5 + ("identity",) * 2,
    # the largest group in the middle, the others contiguous on either side
    "three groups": ("relu",) * 2 + ("softplus",) * 3 + ("sigmoid",) * 2,
    # groups spread over the neurons: selected by index
    "scattered": ("tanh", "relu", "identity", "leaky_relu", "softplus", "sigmoid") * 2
    + ("tanh", "relu", "tanh"),
    # the largest group is identity, whose φ(t) is t itself
    "identity first": ("identity",) * 4 + ("tanh", "relu"),
}


def _column_by_column(names, t):
    """φ(t) and φ′(t) applied one neuron (one column of the last axis) at a time (vectorised
    and scalar kernels may round φ differently in the last bit: compared at a few ulp)."""
    pairs = [ACTIVATIONS[name](t[..., k]) for k, name in enumerate(names)]
    return torch.stack([s for s, _ in pairs], -1), torch.stack([d for _, d in pairs], -1)


@pytest.mark.parametrize("layout", sorted(_LAYOUTS))
@pytest.mark.parametrize("shape", [(4,), (3, 4)], ids=["2d", "3d"])
def test_mixed_activations_equal_column_by_column(layout, shape, rng):
    names = _LAYOUTS[layout]
    acts = NeuronActivations(names)
    t = 3 * torch.randn(*shape, len(names), generator=rng, dtype=torch.float64)
    t[..., 0] = 0.0  # the kinks
    expected_s, expected_d = _column_by_column(names, t)
    for _ in range(2):  # the second call uses the index tensors kept from the first
        s, d = acts(t)
        assert s.shape == d.shape == t.shape
        torch.testing.assert_close(s, expected_s, rtol=1e-15, atol=1e-300)
        torch.testing.assert_close(d, expected_d, rtol=1e-15, atol=1e-300)
    torch.testing.assert_close(acts.value(t), expected_s, rtol=1e-15, atol=1e-300)
    s_np, d_np = acts.numpy(t.numpy())
    assert torch.allclose(torch.from_numpy(s_np), expected_s, rtol=1e-12, atol=1e-14)
    assert torch.allclose(torch.from_numpy(d_np), expected_d, rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("layout", sorted(_LAYOUTS))
def test_mixed_value_is_differentiable_and_matches_the_derivatives(layout, rng):
    names = _LAYOUTS[layout]
    acts = NeuronActivations(names)
    t = 3 * torch.randn(3, 2, len(names), generator=rng, dtype=torch.float64)
    leaf = t.clone().requires_grad_(True)
    value = acts.value(leaf)
    weights = torch.randn(value.shape, generator=rng, dtype=torch.float64)
    (grad,) = torch.autograd.grad((value * weights).sum(), leaf)
    s, d = acts(t)
    torch.testing.assert_close(value.detach(), s, rtol=1e-15, atol=1e-300)
    torch.testing.assert_close(grad, weights * d, rtol=1e-13, atol=1e-15)
    assert torch.autograd.gradcheck(acts.value, (t[0].clone().requires_grad_(True),))


@pytest.mark.parametrize("layout", sorted(_LAYOUTS))
def test_mixed_activations_leave_the_input_alone_and_work_under_autograd(layout, rng):
    """φ̂ overwrites the columns of the smaller groups in tensors of its own: never in t (the
    identity's φ(t) is t), never in a result autograd keeps; torch.func.vmap maps it."""
    names = _LAYOUTS[layout]
    acts = NeuronActivations(names)
    t = torch.randn(4, len(names), generator=rng, dtype=torch.float64)
    before = t.clone()
    s, d = acts(t)
    assert torch.equal(t, before)
    leaf = t.clone().requires_grad_(True)
    s_leaf, d_leaf = acts(leaf)
    (grad,) = torch.autograd.grad(s_leaf.sum(), leaf)
    assert torch.equal(s_leaf.detach(), s) and torch.equal(d_leaf.detach(), d)
    torch.testing.assert_close(grad, d, rtol=1e-13, atol=1e-15)
    s_map, d_map = torch.func.vmap(acts)(t.unsqueeze(1))
    assert torch.equal(s_map.squeeze(1), s) and torch.equal(d_map.squeeze(1), d)


def test_builtin_loss_gradients_equal_autograd():
    y = torch.randn(7, 3, dtype=torch.float64)
    labels = torch.randint(0, 3, (7,))
    target = torch.randn(7, 3, dtype=torch.float64)
    for loss, tgt, fn in [
        ("cross_entropy", labels, torch.nn.functional.cross_entropy),
        ("mse", target, torch.nn.functional.mse_loss),
    ]:
        leaf = y.clone().requires_grad_(True)
        expected_value = fn(leaf, tgt)
        (expected_grad,) = torch.autograd.grad(expected_value, leaf)
        value, grad = loss_and_grad(loss, y, tgt)
        assert torch.allclose(value, expected_value.detach(), rtol=1e-14)
        assert torch.allclose(grad, expected_grad, rtol=1e-13, atol=1e-16)


def test_callable_loss_must_return_a_scalar():
    with pytest.raises(ValueError, match="scalar"):
        loss_and_grad(lambda y, t: y, torch.zeros(2, 2), torch.zeros(2, 2))


@pytest.mark.parametrize("loss", ["mse", "cross_entropy"])
def test_loss_value_and_loss_and_grad_are_one_definition(loss, rng):
    y = torch.randn(6, 4, generator=rng, dtype=torch.float64)
    if loss == "mse":
        target = torch.randn(6, 4, generator=rng, dtype=torch.float64)
    else:
        target = torch.randint(0, 4, (6,), generator=rng)
    leaf = y.clone().requires_grad_(True)
    value = loss_value(loss, leaf, target)
    (grad,) = torch.autograd.grad(value, leaf)
    hand_value, hand_grad = loss_and_grad(loss, y, target)
    torch.testing.assert_close(hand_value, value.detach(), rtol=1e-14, atol=0)
    torch.testing.assert_close(hand_grad, grad, rtol=1e-13, atol=1e-16)


def test_callable_loss_gradient_is_autograd_on_the_loss_alone(rng):
    y = torch.randn(5, 3, generator=rng, dtype=torch.float64)
    w = torch.randn(5, 3, generator=rng, dtype=torch.float64)
    value, grad = loss_and_grad(lambda out, t: (out.tanh() * t).sum(), y, w)
    assert float(value) == pytest.approx(float((y.tanh() * w).sum()), rel=1e-14)
    torch.testing.assert_close(grad, (1 - y.tanh() ** 2) * w, rtol=1e-13, atol=1e-16)
    _, unused = loss_and_grad(lambda out, t: t.sum(), y, w)  # E does not depend on y
    assert torch.equal(unused, torch.zeros_like(y))


def test_named_outputs_sum_the_loss_of_each(rng):
    """A block diagram with several outputs: a built-in loss is Σ_outputs, a callable gets the
    dicts."""
    y = {n: torch.randn(4, 2, 3, generator=rng, dtype=torch.float64) for n in ("a", "b")}
    t = {n: torch.randn(4, 2, 3, generator=rng, dtype=torch.float64) for n in ("a", "b")}
    value, grads = loss_and_grad("mse", y, t)
    expected = sum(float(((y[n] - t[n]) ** 2).mean()) for n in y)
    assert float(value) == pytest.approx(expected, rel=1e-14)
    assert float(loss_value("mse", y, t)) == pytest.approx(expected, rel=1e-14)
    for n in y:
        torch.testing.assert_close(grads[n], 2 * (y[n] - t[n]) / 24, rtol=1e-14, atol=0)
    value, grads = loss_and_grad(lambda out, tgt: (out["a"] * tgt["b"]).sum(), y, t)
    assert torch.equal(grads["a"], t["b"]) and torch.equal(grads["b"], torch.zeros_like(y["b"]))
    with pytest.raises(
        TypeError, match=r"targets must be a dict with the output names \['a', 'b'\]"
    ):
        loss_and_grad("mse", y, t["a"])


def test_targets_are_checked_against_the_output_shape():
    labels = torch.tensor([0, 2, 1])
    validate_target("cross_entropy", labels, (3, 3))
    with pytest.raises(ValueError, match=r"label 2 is out of range: the network has 2 outputs"):
        validate_target("cross_entropy", labels, (3, 2))
    with pytest.raises(
        ValueError, match=r"cross_entropy needs outputs of shape \(batch, classes\)"
    ):
        validate_target("cross_entropy", labels, (5, 3, 3))
    with pytest.raises(ValueError, match=r"cross_entropy expects labels of shape \(4,\)"):
        validate_target("cross_entropy", labels, (4, 3))
    with pytest.raises(TypeError, match="integer class labels"):
        validate_target("cross_entropy", labels.double(), (3, 3))
    seq = torch.zeros(5, 2, 1, dtype=torch.float64)
    validate_target("mse", seq, (5, 2, 1))
    with pytest.raises(ValueError, match=r"mse expects a target of shape \(5, 2, 3\)"):
        validate_target("mse", seq, (5, 2, 3))
    with pytest.raises(TypeError, match="floating-point target"):
        validate_target("mse", labels, (3,))
    with pytest.raises(ValueError, match="target contains NaN or inf"):
        validate_target(lambda a, b: a.sum(), torch.tensor([1.0, float("inf")]), (2,))
    named = {"y": seq}
    validate_target("mse", named, {"y": (5, 2, 1)})
    with pytest.raises(ValueError, match=r"mse target for 'y' must have the output's shape"):
        validate_target("mse", named, {"y": (5, 2, 2)})
    with pytest.raises(ValueError, match=r"targets must be given for exactly \['y', 'z'\]"):
        validate_target("mse", named, {"y": (5, 2, 1), "z": (5, 2, 1)})
    with pytest.raises(ValueError, match="unknown loss 'l1'"):
        validate_target("l1", seq, (5, 2, 1))
    check_target("mse", torch.zeros(3, 2), 3, 2)  # the (batch, outputs) shorthand
    with pytest.raises(ValueError, match=r"mse expects a target of shape \(3, 1\)"):
        check_target("mse", torch.zeros(3, 2), 3, 1)


def test_metrics_are_the_textbook_definitions(rng):
    from sklearn.metrics import accuracy_score, log_loss, r2_score

    logits = torch.randn(50, 3, generator=rng, dtype=torch.float64)
    labels = torch.randint(0, 3, (50,), generator=rng)
    m = metrics(logits, labels, "cross_entropy")
    probs = torch.softmax(logits, dim=1).numpy()
    assert m["loss"] == pytest.approx(log_loss(labels.numpy(), probs, labels=[0, 1, 2]), rel=1e-12)
    assert m["accuracy"] == accuracy_score(labels.numpy(), probs.argmax(axis=1))
    # r2 = 1 − Σ residual² / Σ (target − its mean)²: scikit-learn's variance-weighted R²,
    # over the samples of (B, O) outputs and of (T, B, width) sequences alike
    for shape in [(40, 2), (6, 7, 3)]:
        y = torch.randn(*shape, generator=rng, dtype=torch.float64)
        t = y + 0.3 * torch.randn(*shape, generator=rng, dtype=torch.float64) + 1.0
        m = metrics(y, t, "mse")
        flat_t, flat_y = t.reshape(-1, shape[-1]).numpy(), y.reshape(-1, shape[-1]).numpy()
        assert m["r2"] == pytest.approx(
            r2_score(flat_t, flat_y, multioutput="variance_weighted"), rel=1e-12
        )
        assert m["mse"] == pytest.approx(float(((y - t) ** 2).mean()), rel=1e-14)
        assert m["loss"] == m["mse"]
    assert math.isnan(metrics(y, torch.ones_like(y), "mse")["r2"])  # constant target
