"""Every gradient engine against every other and against PyTorch autograd.

Correctness is shown by disagreement that never happens: random topologies with cycles and
self-loops, mixed per-neuron activations, ticks 1–6, batch 1–16, constant and per-tick inputs,
both built-in losses.  Tolerances come from floating point: 1e-10 relative in float64, 1e-5 in
float32 (measured against float64 autograd on the same weights).
"""

from __future__ import annotations

import pytest
import torch

import meshprop as mp
from helpers import random_case, relative_error
from meshprop import protocol
from meshprop.engines import bind, get_engine

N_CASES = 120
ENGINES = [m for m in mp.GRADIENT_METHODS if m != "autograd"]


def autograd_gradient(case, dtype=torch.float64):
    net64 = case.net.to(dtype) if case.net.A.dtype != dtype else case.net
    x = case.x.to(dtype)
    target = case.target.to(dtype) if case.target.dtype.is_floating_point else case.target
    return mp.gradient(net64, x, target, loss=case.loss, method="autograd")


def test_registry_lists_the_core_engines():
    assert {"fop", "bptt", "autograd", "reference"} <= set(mp.GRADIENT_METHODS)
    for name in mp.GRADIENT_METHODS:
        assert get_engine(name).name == name


@pytest.mark.parametrize("method", ENGINES)
def test_engine_equals_autograd_float64(method, device):
    worst, worst_case = 0.0, ""
    for seed in range(N_CASES):
        case = random_case(seed, device=device)
        loss_ref, grad_ref = autograd_gradient(case)
        loss, grad = mp.gradient(case.net, case.x, case.target, loss=case.loss, method=method)
        assert grad.device.type == device.type
        mask = case.net.topology.mask.to(grad.device)
        assert torch.equal(grad != 0, (grad != 0) & mask)
        assert abs(float(loss) - float(loss_ref)) <= 1e-12 * max(1.0, abs(float(loss_ref)))
        error = relative_error(grad, grad_ref)
        if error > worst:
            worst, worst_case = error, case.description
    print(f"{method}: max relative error vs autograd over {N_CASES} cases = {worst:.2e}")
    assert worst <= 1e-10, f"{method} disagrees with autograd by {worst:.2e} on {worst_case}"


@pytest.mark.parametrize("method", ENGINES)
def test_engine_equals_autograd_float32(method, device):
    worst, worst_case = 0.0, ""
    for seed in range(N_CASES):
        case = random_case(seed, dtype=torch.float32, device=device)
        _, grad_ref = autograd_gradient(case)  # float64 on the same float32 weights
        case.net.to(torch.float32)
        _, grad = mp.gradient(case.net, case.x, case.target, loss=case.loss, method=method)
        assert grad.dtype == torch.float32
        error = relative_error(grad, grad_ref)
        if error > worst:
            worst, worst_case = error, case.description
    print(f"{method}: float32 max relative error vs float64 autograd = {worst:.2e}")
    assert worst <= 1e-5, f"{method} float32 error {worst:.2e} on {worst_case}"


def test_autograd_engine_equals_forward_mode_ad():
    """An oracle independent of reverse mode: directional derivatives by torch.func.jvp."""
    for seed in range(20):
        case = random_case(seed)
        net = case.net
        _, grad = mp.gradient(net, case.x, case.target, loss=case.loss, method="autograd")
        x = net.prepare_input(case.x)

        def loss_of(A, net=net, x=x, case=case):
            from meshprop.engines.autograd import differentiable_output

            y = differentiable_output(net.dynamics, A, x)
            if case.loss == "mse":
                return ((y - case.target) ** 2).mean()
            return torch.nn.functional.cross_entropy(y, case.target)

        direction = torch.randn_like(net.A) * net.topology.mask
        _, directional = torch.func.jvp(loss_of, (net.A.detach(),), (direction,))
        expected = (grad * direction).sum()
        assert abs(float(directional - expected)) <= 1e-10 * max(1.0, float(expected.abs()))


@pytest.mark.parametrize("method", ENGINES)
def test_callable_loss_gradient(method):
    def smooth_l1(y, target):
        return torch.nn.functional.smooth_l1_loss(y, target, beta=0.5) * 3.0

    for seed in range(10):
        case = random_case(seed)
        target = torch.randn(
            case.net.dynamics.batch_size(case.x), case.net.topology.n_outputs, dtype=torch.float64
        )
        _, grad_ref = mp.gradient(case.net, case.x, target, loss=smooth_l1, method="autograd")
        _, grad = mp.gradient(case.net, case.x, target, loss=smooth_l1, method=method)
        assert relative_error(grad, grad_ref) <= 1e-10


@pytest.mark.parametrize("method", ["fop", "bptt", "reference"])
def test_gradcheck_of_the_engine_function(method):
    for seed in (1, 4, 7):
        case = random_case(seed)
        net = case.net
        x = net.prepare_input(case.x)
        engine = get_engine(method)
        A = net.A.detach().clone().requires_grad_(True)
        assert torch.autograd.gradcheck(
            lambda A, x=x, net=net, engine=engine: protocol.apply(
                bind(engine, net.dynamics), {"A": A}, x
            ),
            (A,),
            eps=1e-6,
            atol=1e-8,
            rtol=1e-6,
        )


def test_bptt_input_gradient_equals_autograd():
    for seed in range(30):
        case = random_case(seed)
        grads = {}
        for method in ("bptt", "autograd"):
            case.net.grad = method
            x = case.x.clone().requires_grad_(True)
            y = case.net(x)
            loss = ((y - 0.3) ** 2).sum()
            (grads[method],) = torch.autograd.grad(loss, x)
        assert relative_error(grads["bptt"], grads["autograd"]) <= 1e-10


def test_fop_refuses_input_gradients():
    case = random_case(0)
    case.net.grad = "fop"
    with pytest.raises(ValueError, match="weights' gradient only"):
        case.net(case.x.clone().requires_grad_(True))


def test_masked_entries_get_exactly_zero_gradient():
    for seed in range(10):
        case = random_case(seed)
        outside = ~case.net.topology.mask
        for method in mp.GRADIENT_METHODS:
            _, grad = mp.gradient(case.net, case.x, case.target, loss=case.loss, method=method)
            assert torch.count_nonzero(grad[outside]) == 0, method
