"""meshprop.fast_optim.FastAdam: its direct step (torch's public functional Adam called
directly) is bit-identical to ``optimizer.step()``, and is ``step()`` wherever the direct call
would not be; step hooks, which it would not run, are refused."""

from __future__ import annotations

import copy

import pytest
import torch

import meshprop as mp
from meshprop.fast_optim import FastAdam, fast_adam

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
    direct = FastAdam([q], **config)
    for k in range(60):
        g = torch.randn(7, 5, dtype=dtype, generator=rng) * 10.0 ** (-(k % 5))
        p.grad, q.grad = g.clone(), g.clone()
        reference.step()
        direct.direct_step()
        assert torch.equal(p, q), k
        if k == 30:  # the learning rate changes (a scheduler would do this)
            for opt in (reference, direct):
                opt.param_groups[0]["lr"] *= 0.5
    assert direct._lists is not None  # the direct path was taken
    state_p, state_q = reference.state[p], direct.state[q]
    for key in state_p:
        assert torch.equal(state_p[key], state_q[key]), key


def test_direct_step_is_step_until_the_state_exists_and_after_a_reload(rng):
    p = torch.nn.Parameter(torch.randn(4, dtype=torch.float64, generator=rng))
    opt = FastAdam([p], lr=1e-2)
    p.grad = torch.ones(4, dtype=torch.float64)
    opt.direct_step()  # no state yet: a regular step creates it
    assert opt._lists is None and opt.state[p]["step"].item() == 1
    opt.direct_step()
    assert opt._lists is not None and opt.state[p]["step"].item() == 2
    opt.load_state_dict(copy.deepcopy(opt.state_dict()))  # new state objects
    assert opt._lists is None
    opt.direct_step()
    assert opt.state[p]["step"].item() == 3
    assert opt._lists is not None and opt._lists[1][0] is opt.state[p]
    p.grad = None  # no gradient: step() (which skips the parameter)
    opt.direct_step()
    assert opt.state[p]["step"].item() == 3


def test_step_hooks_are_refused_on_fast_adam():
    opt = fast_adam([torch.nn.Parameter(torch.zeros(3))], lr=0.1)
    with pytest.raises(RuntimeError, match="does not run step hooks"):
        opt.register_step_pre_hook(lambda *args: None)
    with pytest.raises(RuntimeError, match="does not run step hooks"):
        opt.register_step_post_hook(lambda *args: None)


def test_online_learner_weights_equal_a_plain_optimizer_step_loop(rng):
    """The learner's direct Adam (a FastAdam) gives exactly the weights of a plain
    torch.optim.Adam stepped by optimizer.step() after every element, whose hooks run."""
    from meshprop.commands.online import build_net  # the delayed-recall network, 6 hidden

    net = build_net(6, 3, torch.float32)
    twin = copy.deepcopy(net)
    fast = mp.OnlineLearner(net, fast_adam(net.parameters(), lr=1e-2))
    plain_opt = torch.optim.Adam(twin.parameters(), lr=1e-2, fused=True)
    calls = []
    plain_opt.register_step_pre_hook(lambda *args: calls.append(1))
    plain = mp.OnlineLearner(twin, plain_opt)
    x = torch.randint(0, 2, (300, 1, 1), generator=rng).float() * 2 - 1
    for t in range(5, 300):
        a = fast.step(x[t], x[t - 5])
        b = plain.step(x[t], x[t - 5])
        assert a == b
    assert fast.optimizer._lists is not None and len(calls) == 295
    assert torch.equal(net.A, twin.A)


def test_fused_group_with_a_tensor_learning_rate_is_bit_identical(rng):
    """A tensor lr goes to the functional call as the group holds it: still bit-identical."""
    p = torch.nn.Parameter(torch.randn(6, generator=rng))
    q = torch.nn.Parameter(p.detach().clone())
    reference = torch.optim.Adam([p], lr=torch.tensor(1e-2), fused=True)
    direct = FastAdam([q], lr=torch.tensor(1e-2), fused=True)
    for _ in range(20):
        g = torch.randn(6, generator=rng)
        p.grad, q.grad = g.clone(), g.clone()
        reference.step()
        direct.direct_step()
        assert torch.equal(p, q)
    assert direct._lists is not None


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
    direct = FastAdam(qs, lr=1e-2, fused=True)
    for _ in range(20):
        for p, q in zip(ps, qs, strict=True):
            g = torch.randn(p.shape, dtype=p.dtype, generator=rng)
            p.grad, q.grad = g.clone(), g.clone()
        reference.step()
        direct.direct_step()
        assert all(torch.equal(p, q) for p, q in zip(ps, qs, strict=True))
    assert direct._lists is not None


def test_direct_step_follows_state_tensors_replaced_in_place(rng):
    """A state tensor replaced inside the same state dict (what a structure change's remap
    does) and a new .grad object: the direct step uses the new ones, still bit-identical."""
    p = torch.nn.Parameter(torch.randn(6, generator=rng))
    q = torch.nn.Parameter(p.detach().clone())
    reference = torch.optim.Adam([p], lr=1e-2, fused=True)
    direct = FastAdam([q], lr=1e-2, fused=True)
    for k in range(12):
        g = torch.randn(6, generator=rng)
        p.grad, q.grad = g.clone(), g.clone()
        if k == 6:
            for opt, param in ((reference, p), (direct, q)):
                opt.state[param]["exp_avg"] = opt.state[param]["exp_avg"] * 0.5
        reference.step()
        direct.direct_step()
        assert torch.equal(p, q)
