"""Paper 002 §4: the closed-form gradients of A[1,1,1] and A[1,2,1], reproduced by every mesh
engine through Topology.layered (sigmoid everywhere, J(f(x), y) = f(x) − y, so dJ/dX² = 1)."""

from __future__ import annotations

import pytest
import torch

import meshprop as mp


def sigma(t):
    return torch.sigmoid(torch.as_tensor(t, dtype=torch.float64))


def dsigma(t):
    s = sigma(t)
    return s * (1 - s)


def J(f_x, y):  # the elementary cost of paper 002 §4
    return (f_x - y).sum()


@pytest.mark.parametrize("method", mp.GRADIENT_METHODS)
def test_case_A111(method):
    x, y = 0.7, 0.2
    a11, a12, a1, a2 = 0.3, -0.4, 1.1, 0.25  # W¹ = (α¹₁₁ α¹₁₂), W² = (α²₁ α²₂)
    topo = mp.Topology.layered([1, 1, 1], bias=True)  # neurons: x=0, bias=1, hidden=2, out=3
    net = mp.MeshNet(topo, ticks=2, activation="sigmoid", dtype=torch.float64)
    with torch.no_grad():
        net.A.zero_()
        net.A[0, 2], net.A[1, 2], net.A[2, 3], net.A[1, 3] = a11, a12, a1, a2
    _, dA = mp.gradient(
        net,
        torch.tensor([[x]], dtype=torch.float64),
        torch.tensor([[y]], dtype=torch.float64),
        loss=J,
        method=method,
    )
    w1 = a11 * x + a12
    Y2 = a1 * sigma(w1) + a2
    delta_W2 = torch.stack([dsigma(Y2) * sigma(w1), dsigma(Y2)])
    delta_W1 = torch.stack([dsigma(Y2) * dsigma(w1) * a1 * x, dsigma(Y2) * dsigma(w1) * a1])
    got_W2 = torch.stack([dA[2, 3], dA[1, 3]])
    got_W1 = torch.stack([dA[0, 2], dA[1, 2]])
    assert torch.allclose(got_W2, delta_W2, rtol=1e-12, atol=0)
    assert torch.allclose(got_W1, delta_W1, rtol=1e-12, atol=0)
    assert torch.count_nonzero(dA) == 4


@pytest.mark.parametrize("method", mp.GRADIENT_METHODS)
def test_case_A121(method):
    x, y = -0.6, 1.0
    W1 = torch.tensor([[0.5, -0.2], [-0.9, 0.4]], dtype=torch.float64)  # rows (α_k1, α_k2)
    a = torch.tensor([0.8, -1.3, 0.15], dtype=torch.float64)  # W² = (α²₁ α²₂ α²₃)
    topo = mp.Topology.layered([1, 2, 1], bias=True)  # x=0, bias=1, hidden=2,3, out=4
    net = mp.MeshNet(topo, ticks=2, activation="sigmoid", dtype=torch.float64)
    with torch.no_grad():
        net.A.zero_()
        for k in range(2):
            net.A[0, 2 + k], net.A[1, 2 + k] = W1[k, 0], W1[k, 1]
            net.A[2 + k, 4] = a[k]
        net.A[1, 4] = a[2]
    _, dA = mp.gradient(
        net,
        torch.tensor([[x]], dtype=torch.float64),
        torch.tensor([[y]], dtype=torch.float64),
        loss=J,
        method=method,
    )
    w = W1[:, 0] * x + W1[:, 1]  # w¹, w² (the paper's α¹₁₂ in the second row is a typo: α¹₂₂)
    Y2 = a[0] * sigma(w[0]) + a[1] * sigma(w[1]) + a[2]
    delta_W2 = dsigma(Y2) * torch.stack([sigma(w[0]), sigma(w[1]), torch.tensor(1.0)])
    delta_W1 = torch.stack(
        [
            torch.stack([a[k] * x * dsigma(w[k]) * dsigma(Y2), a[k] * dsigma(w[k]) * dsigma(Y2)])
            for k in range(2)
        ]
    )
    got_W2 = torch.stack([dA[2, 4], dA[3, 4], dA[1, 4]])
    got_W1 = torch.stack([torch.stack([dA[0, 2 + k], dA[1, 2 + k]]) for k in range(2)])
    assert torch.allclose(got_W2, delta_W2, rtol=1e-12, atol=0)
    assert torch.allclose(got_W1, delta_W1, rtol=1e-12, atol=0)
