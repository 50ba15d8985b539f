"""meshprop.fast_optim.DirectAdamStep: torch's Adam update called directly is bit-identical to
``optimizer.step()``, and falls back to it wherever the direct call would not be."""

from __future__ import annotations

import copy

import pytest
import torch

import meshprop as mp
from meshprop.fast_optim import DirectAdamStep

CONFIGS = [
    {"lr": 3e-4},
    {"lr": 1e-2, "fused": True},
    {"lr": 1e-2, "foreach": True},
    {"lr": 1e-2, "foreach": False, "weight_decay": 0.1},
    {"lr": 1e-2, "amsgrad": True, "maximize": True, "betas": (0.8, 0.9)},
    {"lr": 1e-2, "weight_decay": 0.1, "decoupled_weight_decay": True, "fused": True},
]


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("config", CONFIGS, ids=lambda c: ",".join(map(str, c.items())))
def test_direct_step_is_bit_identical_to_optimizer_step(rng, dtype, config):
    p = torch.nn.Parameter(torch.randn(7, 5, dtype=dtype, generator=rng))
    q = torch.nn.Parameter(p.detach().clone())
    reference = torch.optim.Adam([p], **config)
    direct = DirectAdamStep(torch.optim.Adam([q], **config))
    for k in range(60):
        g = torch.randn(7, 5, dtype=dtype, generator=rng) * 10.0 ** (-(k % 5))
        p.grad, q.grad = g.clone(), g.clone()
        reference.step()
        direct.step()
        assert torch.equal(p, q), k
        if k == 30:  # the learning rate changes (a scheduler would do this)
            for opt in (reference, direct.optimizer):
                opt.param_groups[0]["lr"] *= 0.5
    assert direct.direct  # the direct path was taken
    state_p, state_q = reference.state[p], direct.optimizer.state[q]
    for key in state_p:
        assert torch.equal(state_p[key], state_q[key]), key


def test_falls_back_to_optimizer_step_where_the_direct_call_would_differ(rng):
    p = torch.nn.Parameter(torch.randn(4, dtype=torch.float64, generator=rng))
    opt = torch.optim.Adam([p], lr=1e-2)
    direct = DirectAdamStep(opt)
    calls = []
    p.grad = torch.ones(4, dtype=torch.float64)
    direct.step()  # no state yet: a regular step creates it
    direct.step()
    assert direct._states is not None
    handle = opt.register_step_post_hook(lambda *args: calls.append(1))
    direct.step()  # a hook: the regular step runs it
    assert calls == [1] and direct._states is None
    handle.remove()
    direct.step()
    assert direct._states is not None
    opt.load_state_dict(copy.deepcopy(opt.state_dict()))  # new state objects
    before = opt.state[p]["step"].item()
    direct.step()
    assert opt.state[p]["step"].item() == before + 1
    assert direct._states is not None and direct._states[0] is opt.state[p]
    sgd = DirectAdamStep(torch.optim.SGD([p], lr=0.1))
    value = p.detach().clone()
    sgd.step()
    assert torch.equal(p.detach(), value - 0.1 * p.grad)


def test_online_learner_weights_equal_a_plain_optimizer_step_loop(rng):
    """The learner's direct Adam gives exactly the weights of optimizer.step() after every
    element (a learner whose optimizer carries a no-op hook takes the regular path)."""
    from meshprop.commands.online import build_net  # the delayed-recall network, 6 hidden

    net = build_net(6, 3, torch.float32)
    twin = copy.deepcopy(net)
    fast = mp.OnlineLearner(net, mp.sequence.fast_adam(net.parameters(), lr=1e-2))
    plain_opt = mp.sequence.fast_adam(twin.parameters(), lr=1e-2)
    plain_opt.register_step_pre_hook(lambda *args: None)
    plain = mp.OnlineLearner(twin, plain_opt)
    x = torch.randint(0, 2, (300, 1, 1), generator=rng).float() * 2 - 1
    for t in range(5, 300):
        a = fast.step(x[t], x[t - 5])
        b = plain.step(x[t], x[t - 5])
        assert a == b
    assert fast._direct._states is not None and plain._direct._states is None
    assert torch.equal(net.A, twin.A)


def test_fused_group_with_a_tensor_learning_rate_is_bit_identical(rng):
    """A tensor lr goes to the functional call as the group holds it: still bit-identical."""
    p = torch.nn.Parameter(torch.randn(6, generator=rng))
    q = torch.nn.Parameter(p.detach().clone())
    reference = torch.optim.Adam([p], lr=torch.tensor(1e-2), fused=True)
    direct = DirectAdamStep(torch.optim.Adam([q], lr=torch.tensor(1e-2), fused=True))
    for _ in range(20):
        g = torch.randn(6, generator=rng)
        p.grad, q.grad = g.clone(), g.clone()
        reference.step()
        direct.step()
        assert torch.equal(p, q)
    assert direct.direct


def test_only_public_torch_names_are_called() -> None:
    """No private torch function (torch._...) in the direct step: the public functional Adam."""
    import importlib
    import inspect

    import meshprop.fast_optim as module

    source = inspect.getsource(module)
    assert "torch._" not in source
    assert "from torch.optim.adam import adam" in source
    assert "adam" in importlib.import_module("torch.optim.adam").__all__


def test_fused_group_of_mixed_dtypes_takes_the_functional_call(rng):
    """Two dtypes are two (device, dtype) groups in torch's fused Adam: still bit-identical."""
    ps = [
        torch.nn.Parameter(torch.randn(5, generator=rng)),
        torch.nn.Parameter(torch.randn(3, dtype=torch.float64, generator=rng)),
    ]
    qs = [torch.nn.Parameter(p.detach().clone()) for p in ps]
    reference = torch.optim.Adam(ps, lr=1e-2, fused=True)
    direct = DirectAdamStep(torch.optim.Adam(qs, lr=1e-2, fused=True))
    for _ in range(20):
        for p, q in zip(ps, qs, strict=True):
            g = torch.randn(p.shape, dtype=p.dtype, generator=rng)
            p.grad, q.grad = g.clone(), g.clone()
        reference.step()
        direct.step()
        assert all(torch.equal(p, q) for p, q in zip(ps, qs, strict=True))
    assert direct.direct
