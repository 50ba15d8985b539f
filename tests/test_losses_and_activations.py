"""Hand-written φ′ and dE/dy against PyTorch autograd."""

from __future__ import annotations

import pytest
import torch

from meshprop.activations import ACTIVATIONS, NeuronActivations
from meshprop.losses import loss_and_grad


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
