"""OnlineLearner.state_dict / load_state_dict: a stream cut in two, the second half continued by a
fresh learner (new network object, new optimizer) from the saved state, gives exactly (bit for
bit) the losses, weights and carried state of one uninterrupted learner — RTRL,
truncated BPTT, accumulated updates, B > 1 with masks."""

from __future__ import annotations

import copy

import pytest
import torch

import meshprop as mp


def _learner(net: mp.MeshNet, state: dict | None, **options) -> mp.OnlineLearner:
    optimizer = mp.sequence.fast_adam(net.parameters(), lr=1e-2)
    learner = mp.OnlineLearner(net, optimizer, **options)
    if state is not None:
        optimizer.load_state_dict(state["optimizer"])
        learner.load_state_dict(state["learner"])
    return learner


CASES = [
    ({"method": "fop"}, 1, 1, torch.float32),  # the delayed-recall layout: host-scalar path
    ({"method": "fop"}, 3, 2, torch.float64),
    ({"method": "fop"}, 2, 1, torch.float64),
    ({"method": "fop", "update_every": 3}, 1, 1, torch.float64),
    ({"method": "fop", "update_every": 4}, 2, 2, torch.float64),
    ({"method": "tbptt", "truncation": 4}, 2, 1, torch.float64),
    ({"method": "tbptt", "truncation": 3, "update_every": 2}, 1, 1, torch.float32),
]


@pytest.mark.parametrize(("options", "batch", "outputs", "dtype"), CASES)
def test_a_stream_continued_from_the_saved_state_equals_one_run(
    options, batch, outputs, dtype, tmp_path
) -> None:
    gen = torch.Generator().manual_seed(7)
    topo = mp.Topology.random(1, 5, outputs, density=1.0, bias=True, seed=3)
    net = mp.MeshNet(topo, ticks=2, activation="tanh", dtype=dtype, seed=1)
    L, cut = 40, 23
    x = torch.randn(L, batch, 1, generator=gen, dtype=dtype)
    target = torch.randn(L, batch, outputs, generator=gen, dtype=dtype)
    mask = torch.rand(L, batch, generator=gen) < 0.8
    masks = [None if batch == 1 else mask[t] for t in range(L)]

    whole_net = copy.deepcopy(net)
    whole = _learner(whole_net, None, **options)
    expected = [whole.step(x[t], target[t], masks[t]) for t in range(L)]

    first_net = copy.deepcopy(net)
    first = _learner(first_net, None, **options)
    losses = [first.step(x[t], target[t], masks[t]) for t in range(cut)]
    saved = {
        "weights": first_net.A.detach().clone(),
        "optimizer": first.optimizer.state_dict(),
        "learner": first.state_dict(),
    }
    torch.save(saved, tmp_path / "state.pt")
    saved = torch.load(tmp_path / "state.pt", weights_only=True)
    second_net = copy.deepcopy(net)
    with torch.no_grad():
        second_net.A.copy_(saved["weights"])
    second = _learner(second_net, saved, **options)
    losses += [second.step(x[t], target[t], masks[t]) for t in range(cut, L)]

    assert losses == expected  # NaN never: every element has a masked sample here
    assert torch.equal(second_net.A, whole_net.A)
    assert second.elements == whole.elements == L
    assert torch.equal(second.state, whole.state)
    if options["method"] == "fop":
        assert torch.equal(second.sensitivities, whole.sensitivities)


def test_load_state_dict_refuses_another_learners_state() -> None:
    topo = mp.Topology.random(1, 3, 1, density=1.0, bias=True, seed=0)
    net = mp.MeshNet(topo, ticks=1, activation="tanh", dtype=torch.float64, seed=0)
    fop = mp.OnlineLearner(net, torch.optim.Adam(net.parameters(), lr=1e-3))
    fop.step(torch.ones(1, 1, dtype=torch.float64), torch.zeros(1, 1, dtype=torch.float64))
    tbptt = mp.OnlineLearner(
        net, torch.optim.Adam(net.parameters(), lr=1e-3), method="tbptt", truncation=2
    )
    with pytest.raises(ValueError, match=r"method 'fop' \(this learner: 'tbptt'\)"):
        tbptt.load_state_dict(fop.state_dict())
    with pytest.raises(ValueError, match="not an OnlineLearner state"):
        fop.load_state_dict({"weights": 1})
    bigger = mp.MeshNet(
        mp.Topology.random(1, 4, 1, density=1.0, bias=True, seed=0), ticks=1, seed=0,
        activation="tanh", dtype=torch.float64,
    )  # fmt: skip
    other = mp.OnlineLearner(bigger, torch.optim.Adam(bigger.parameters(), lr=1e-3))
    with pytest.raises(ValueError, match="shape"):
        other.load_state_dict(fop.state_dict())
