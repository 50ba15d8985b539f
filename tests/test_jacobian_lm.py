"""The one-call Jacobian (``mp.jacobian``) and Levenberg–Marquardt training on it."""

from __future__ import annotations

import itertools

import pytest
import torch

import meshprop as mp
from helpers import random_case, relative_error
from meshprop.diagram import examples
from meshprop.diagram.methods import pack
from meshprop.diagram.sensitivity import parameter_slices
from meshprop.diagram.simulate import check_inputs, simulate
from meshprop.training import levenberg_marquardt
from meshprop.training.levenberg_marquardt import lm_step

TOL = 1e-10


def edge_weights(net: mp.MeshNet) -> torch.Tensor:
    e = net.topology.edges
    return net.A.detach()[e[:, 0], e[:, 1]].clone()


def mesh_autograd_jacobian(net: mp.MeshNet, x: torch.Tensor) -> torch.Tensor:
    """∂y/∂(edge weights) by torch.autograd.functional.jacobian, (B, O, P)."""
    e, N = net.topology.edges, net.topology.n_neurons
    x = net.prepare_input(x)

    def f(w: torch.Tensor) -> torch.Tensor:
        A = torch.zeros(N, N, dtype=w.dtype).index_put((e[:, 0], e[:, 1]), w)
        return net.dynamics.output(A, x)

    return torch.autograd.functional.jacobian(f, edge_weights(net))


def diagram_theta(d) -> torch.Tensor:
    return torch.cat([p.detach().reshape(-1) for p in d.parameter_dict().values()])


def diagram_autograd_jacobian(d, x: torch.Tensor) -> torch.Tensor:
    """∂y(k)/∂θ by torch.autograd.functional.jacobian, (T, B, O, P)."""
    feeds = check_inputs(d, x)
    shapes = {k: p.shape for k, p in d.parameter_dict().items()}
    slices = parameter_slices(d)

    def f(theta: torch.Tensor) -> torch.Tensor:
        params = {k: theta[slices[k]].reshape(shapes[k]) for k in shapes}
        outs, _ = simulate(d, feeds, d.block_params(params))
        return pack(outs, d.output_names)

    return torch.autograd.functional.jacobian(f, diagram_theta(d))


@pytest.mark.parametrize("seed", range(8))
def test_mesh_jacobian_equals_autograd(seed):
    case = random_case(seed)  # cycles, self-loops, mixed activations, 1-6 ticks, per-tick x
    J = mp.jacobian(case.net, case.x)
    B = case.x.shape[-2]
    assert J.shape == (B, case.net.topology.n_outputs, case.net.topology.n_edges)
    reference = mesh_autograd_jacobian(case.net, case.x)
    assert relative_error(J, reference) <= TOL, case.description


DIAGRAMS = {
    "narx": lambda: examples.narx(2, 4, 2, input_taps=2, output_taps=2, seed=1),
    "cascaded": lambda: examples.cascaded(taps=2, hidden=3, seed=2),
    "fir": lambda: examples.fir_network((2, 3, 1), taps=(2, 1), seed=3),
    "iir": lambda: examples.iir_network(seed=4),
}


@pytest.mark.parametrize("name", sorted(DIAGRAMS))
def test_diagram_jacobian_equals_autograd(name):
    d = DIAGRAMS[name]()
    T, B = 9, 3
    x = torch.randn(T, B, d.input_widths()[0], dtype=torch.float64)
    J = mp.jacobian(d, x)
    P = sum(p.numel() for p in d.parameter_dict().values())
    assert J.shape == (T, B, sum(d.output_widths()), P)
    assert relative_error(J, diagram_autograd_jacobian(d, x)) <= TOL
    assert torch.equal(J, d.jacobian(x))


def test_jacobian_rejects_other_models():
    with pytest.raises(TypeError, match=r"MeshNet or a meshprop\.diagram\.Diagram"):
        mp.jacobian(torch.nn.Linear(2, 2), torch.zeros(1, 2))


def test_one_lm_step_is_the_closed_form_step_mesh():
    case = random_case(3)
    net, x = case.net, case.x
    target = torch.randn(x.shape[-2], net.topology.n_outputs, dtype=torch.float64)
    w0 = edge_weights(net)
    J = mesh_autograd_jacobian(net, x)  # independent: autograd, not the FOP sensitivities
    e = target - net.dynamics.output(net.A.detach(), net.prepare_input(x))
    history = levenberg_marquardt(net, x, target, epochs=1, mu=0.1)
    assert len(history) == 1, "the first step must be accepted within mu_max"
    mu = history.records[0]["mu"]
    Jm, ev = J.reshape(-1, J.shape[-1]), e.reshape(-1)
    closed = torch.linalg.solve(Jm.T @ Jm + mu * torch.eye(Jm.shape[1], dtype=Jm.dtype), Jm.T @ ev)
    assert relative_error(edge_weights(net) - w0, closed) <= TOL
    # the masked (non-edge) entries of A are still exactly zero
    assert torch.count_nonzero(net.A.detach()[~net.topology.mask]) == 0


def test_one_lm_step_is_the_closed_form_step_diagram():
    d = DIAGRAMS["narx"]()
    T, B = 12, 2
    x = torch.randn(T, B, 2, dtype=torch.float64)
    target = torch.randn(T, B, 2, dtype=torch.float64)
    theta0 = diagram_theta(d)
    J = diagram_autograd_jacobian(d, x)
    e = target - d.run(x).detach()
    history = levenberg_marquardt(d, x, target, epochs=1, mu=1.0)
    mu = history.records[0]["mu"]
    Jm, ev = J.reshape(-1, J.shape[-1]), e.reshape(-1)
    closed = torch.linalg.solve(Jm.T @ Jm + mu * torch.eye(Jm.shape[1], dtype=Jm.dtype), Jm.T @ ev)
    assert relative_error(diagram_theta(d) - theta0, closed) <= TOL
    assert history.records[0]["train_loss"] == pytest.approx(
        float(((target - d.run(x).detach()) ** 2).mean()), rel=1e-12
    )


def test_lm_step_helper_matches_normal_equations():
    J = torch.randn(4, 3, 5, dtype=torch.float64)
    e = torch.randn(4, 3, dtype=torch.float64)
    delta = lm_step(J, e, 0.5)
    Jm = J.reshape(-1, 5)
    residual = (Jm.T @ Jm + 0.5 * torch.eye(5, dtype=torch.float64)) @ delta - Jm.T @ e.reshape(-1)
    assert residual.abs().max() <= 1e-12


def test_lm_error_decreases_and_mask_stays_zero():
    case = random_case(5)
    net, x = case.net, case.x
    target = torch.randn(x.shape[-2], net.topology.n_outputs, dtype=torch.float64) * 0.3
    history = levenberg_marquardt(net, x, target, epochs=10)
    losses = history["train_loss"]
    assert all(b < a for a, b in itertools.pairwise(losses))
    assert torch.count_nonzero(net.A.detach()[~net.topology.mask]) == 0


def test_lm_rejects_other_losses_and_bad_targets():
    net = mp.MeshNet(mp.Topology.random(2, 3, 2, seed=0), dtype=torch.float64, seed=0)
    x = torch.randn(4, 2, dtype=torch.float64)
    with pytest.raises(ValueError, match="loss must be 'mse'"):
        levenberg_marquardt(net, x, torch.zeros(4, dtype=torch.long), loss="cross_entropy")
    with pytest.raises(ValueError, match=r"outputs' shape \(4, 2\)"):
        levenberg_marquardt(net, x, torch.zeros(4, 3, dtype=torch.float64))
    with pytest.raises(ValueError, match="mu must be"):
        levenberg_marquardt(net, x, torch.zeros(4, 2, dtype=torch.float64), mu=-1.0)


@pytest.mark.slow
def test_lm_fits_mackey_glass_narx_better_than_adam_in_as_many_iterations():
    """Measured on 8 seeds (T = 40, 15 iterations): LM's training MSE was 4 to 5·10⁴ times
    below the best of Adam at lr 0.03, 0.1 and 0.3 (seeds 0, 1, 2 here: 220, 5·10⁴, 790 times;
    at T = 80 they were 740, 5000, 28 times); assert only that it is lower for every seed."""
    from meshprop.diagram.examples import layered_narx
    from meshprop.diagram.series import mackey_glass

    s = torch.tensor(mackey_glass(41))
    s = (s - s.mean()) / s.std()
    x, y = s[:-1].reshape(-1, 1, 1), s[1:].reshape(-1, 1, 1)

    def mse(d) -> float:
        return float(((d.run(x).detach() - y) ** 2).mean())

    for seed in range(3):
        d = layered_narx(1, 3, 1, taps=2, seed=seed)
        assert len(levenberg_marquardt(d, x, y, epochs=15)) == 15
        lm = mse(d)
        adam = []
        for lr in (0.03, 0.1, 0.3):
            d = layered_narx(1, 3, 1, taps=2, seed=seed)
            mp.fit(d, (x, y), loss="mse", optimizer="adam", lr=lr, epochs=15, batch_size=1,
                   progress=False, evaluate_train=False)  # fmt: skip
            adam.append(mse(d))
        assert lm < min(adam), (seed, lm, adam)
