"""Every gradient engine under torch.func (grad, per-sample vmap(grad), jacrev) and torch.compile.

Small random meshes with cycles and self-loops, mixed per-neuron activations, constant and
per-tick inputs, both built-in losses, float64.  The transforms must reproduce the engines' own
gradients (``mp.gradient``) and the autograd Jacobian to 1e-10 relative (float64 rounding of
the same maths).
"""

from __future__ import annotations

from dataclasses import dataclass

import pytest
import torch
import torch.nn.functional as F
from torch.func import functional_call, grad, jacrev, vmap

import meshprop as mp
from helpers import NAMES, random_topology, relative_error
from meshprop.engines import BoundEngine

ENGINES = list(mp.GRADIENT_METHODS)
BRIDGED = [e for e in ENGINES if e != "autograd"]
SEEDS = range(4)  # seed % 2: per-tick input; seed // 2: cross-entropy loss
TOL = 1e-10


@dataclass
class Case:
    net: mp.MeshNet
    x: torch.Tensor
    target: torch.Tensor
    loss: str

    @property
    def sample_dim(self) -> int:
        """The batch dimension of x: 1 for per-tick input (T, B, I), else 0."""
        return 1 if self.x.dim() == 3 else 0


def make_case(seed: int, engine: str, layout: str = "dense") -> Case:
    """A mesh of at most 11 neurons, a batch of 2–4, with ``engine`` as its gradient."""
    gen = torch.Generator().manual_seed(1000 + seed)
    topo = random_topology(gen, seed, max_inputs=3, max_hidden=4, max_outputs=3)
    picks = torch.randint(0, len(NAMES), (topo.n_neurons,), generator=gen)
    ticks = int(torch.randint(1, 5, (1,), generator=gen))
    batch = int(torch.randint(2, 5, (1,), generator=gen))
    net = mp.MeshNet(
        topo,
        ticks=ticks,
        activation=[NAMES[int(k)] for k in picks],
        grad=engine,
        dtype=torch.float64,
        seed=seed,
        layout=layout,
    )
    with torch.no_grad():  # larger weights than the default init: more non-linearity
        net.parameter.mul_(1.5)
    shape = (ticks, batch, topo.n_inputs) if seed % 2 else (batch, topo.n_inputs)
    x = torch.randn(shape, generator=gen, dtype=torch.float64)
    if (seed // 2) % 2:
        target = torch.randint(0, topo.n_outputs, (batch,), generator=gen)
        return Case(net, x, target, "cross_entropy")
    target = torch.randn(batch, topo.n_outputs, generator=gen, dtype=torch.float64)
    return Case(net, x, target, "mse")


def torch_loss(name: str, y: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """The built-in losses written with plain torch operations (what a torch.func user writes)."""
    if name == "mse":
        return ((y - target) ** 2).mean()
    return F.cross_entropy(y, target)


def loss_of(case: Case):
    """E(θ, x, target) through ``functional_call`` of the case's network."""

    def loss(params, x, target):
        return torch_loss(case.loss, functional_call(case.net, params, (x,)), target)

    return loss


LAYOUTS = ["dense", "sparse"]


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("engine", ENGINES)
def test_func_grad_equals_engine_gradient(engine, layout):
    for seed in SEEDS:
        case = make_case(seed, engine, layout)
        name = case.net.storage.parameter
        params = dict(case.net.named_parameters())
        dA, value = torch.func.grad_and_value(loss_of(case))(params, case.x, case.target)
        value_ref, dA_ref = mp.gradient(
            case.net, case.x, case.target, loss=case.loss, method=engine
        )
        assert dA[name].shape == dA_ref.shape
        assert relative_error(dA[name], dA_ref) <= TOL, f"seed {seed}"
        value = value.detach()
        assert abs(float(value) - float(value_ref)) <= 1e-12 * max(1.0, abs(float(value_ref)))
        assert case.net.parameter.grad is None  # torch.func leaves .grad alone


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("engine", ENGINES)
def test_per_sample_gradients_by_vmap_of_grad(engine, layout):
    for seed in SEEDS:
        case = make_case(seed, engine, layout)
        name = case.net.storage.parameter
        params = dict(case.net.named_parameters())
        dim, loss = case.sample_dim, loss_of(case)

        def one_sample(params, x, target, dim=dim, loss=loss):
            return loss(params, x.unsqueeze(dim), target.unsqueeze(0))

        per_sample = vmap(grad(one_sample), in_dims=(None, dim, 0))(params, case.x, case.target)
        for b in range(case.target.shape[0]):
            x_b = case.x.narrow(dim, b, 1)
            _, dA_b = mp.gradient(
                case.net, x_b, case.target[b : b + 1], loss=case.loss, method=engine
            )
            assert relative_error(per_sample[name][b], dA_b) <= TOL, f"seed {seed} sample {b}"


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("engine", ENGINES)
def test_jacrev_equals_the_autograd_jacobian(engine, layout):
    for seed in SEEDS:
        case = make_case(seed, engine, layout)
        reference = make_case(seed, "autograd", layout).net
        name = case.net.storage.parameter
        A, x = case.net.parameter.detach(), case.x
        J = jacrev(lambda A, net=case.net, x=x, n=name: functional_call(net, {n: A}, (x,)))(A)
        J_ref = torch.autograd.functional.jacobian(
            lambda A, net=reference, x=x, n=name: functional_call(net, {n: A}, (x,)), A
        )
        assert J.shape == (x.shape[-2], case.net.topology.n_outputs, *A.shape)
        assert J_ref.abs().max() > 0
        assert relative_error(J, J_ref) <= TOL, f"seed {seed}"


@pytest.mark.parametrize("engine", ENGINES)
def test_torch_compile_output_and_gradient_equal_eager(engine):
    """The autograd engine is traced through AOTAutograd (forward and backward graphs); the
    other engines run eagerly inside the compiled forward (a graph break at the bridge), so
    Dynamo alone (the "eager" backend) shows what changes for them."""
    torch.compiler.reset()
    case = make_case(1, engine)  # per-tick input
    backend = "aot_eager" if engine == "autograd" else "eager"
    compiled = torch.compile(case.net, backend=backend)
    y_eager = case.net(case.x)
    torch_loss(case.loss, y_eager, case.target).backward()
    grad_eager = case.net.A.grad.clone()
    case.net.A.grad = None
    y_compiled = compiled(case.x)
    torch_loss(case.loss, y_compiled, case.target).backward()
    assert relative_error(y_compiled, y_eager) <= TOL
    assert relative_error(case.net.A.grad, grad_eager) <= TOL
    with torch.no_grad():
        assert relative_error(compiled(case.x), y_eager) <= TOL


def test_autograd_forward_has_no_graph_break():
    import torch._dynamo  # (imported here: 1.3 s that only the compiling tests need)

    torch.compiler.reset()
    for seed in (0, 1):  # constant and per-tick input
        case = make_case(seed, "autograd")
        explanation = torch._dynamo.explain(case.net)(case.x)
        assert explanation.graph_break_count == 0, explanation.break_reasons
        assert explanation.graph_count == 1


def test_compiled_autograd_forward_still_checks_the_memory_limit():
    torch.compiler.reset()
    case = make_case(0, "autograd")
    compiled = torch.compile(case.net, backend="aot_eager")
    with mp.memory_limit(1), pytest.raises(mp.MemoryLimitError):
        compiled(case.x)


@pytest.mark.parametrize("engine", ENGINES)
def test_memory_guard_refuses_under_transforms(engine):
    """The guard's error (with its suggestion, computed from every engine's cached plans) comes
    out of grad and vmap as it does in eager mode, and the plans it caches stay usable."""
    case = make_case(2, engine)
    # plans of (topology, these ticks) are built first here, in the refusal under a transform
    case.net.ticks = 5 + ENGINES.index(engine)
    params = dict(case.net.named_parameters())
    loss = loss_of(case)

    def one_sample(params, x, target):
        return loss(params, x.unsqueeze(0), target.unsqueeze(0))

    with mp.memory_limit(1000):
        with pytest.raises(mp.MemoryLimitError):
            grad(loss)(params, case.x, case.target)
        with pytest.raises(mp.MemoryLimitError):
            vmap(grad(one_sample), in_dims=(None, 0, 0))(params, case.x, case.target)
    for method in ("fop", "fop_factored", "auto"):  # the plans cached above are plain tensors
        _, dA = mp.gradient(case.net, case.x, case.target, loss=case.loss, method=method)
        assert torch.isfinite(dA).all()


@pytest.mark.parametrize("engine", ENGINES)
def test_nan_input_is_refused_under_vmap(engine):
    case = make_case(0, engine)
    params = dict(case.net.named_parameters())
    x = case.x.clone()
    x[1, 0] = float("nan")

    def predict(params, x):
        return functional_call(case.net, params, (x.unsqueeze(0),))

    assert vmap(predict, in_dims=(None, 0))(params, case.x).shape[0] == x.shape[0]
    with pytest.raises(ValueError, match="NaN or inf"):
        vmap(predict, in_dims=(None, 0))(params, x)
    with pytest.raises(ValueError, match="NaN or inf"):
        grad(lambda p: functional_call(case.net, p, (x,)).sum())(params)


@pytest.mark.parametrize("engine", ENGINES)
def test_vmap_over_an_ensemble_of_weights(engine):
    case = make_case(2, engine)
    other = make_case(2, engine)
    with torch.no_grad():
        other.net.A.mul_(-0.5)
    stacked = {"A": torch.stack([case.net.A.detach(), other.net.A.detach()])}
    grads = vmap(grad(loss_of(case)), in_dims=(0, None, None))(stacked, case.x, case.target)
    for k, net in enumerate((case.net, other.net)):
        _, dA = mp.gradient(net, case.x, case.target, loss=case.loss, method=engine)
        assert relative_error(grads["A"][k], dA) <= TOL


@pytest.mark.parametrize("engine", ENGINES)
def test_nested_transforms(engine):
    """vmap(vmap(grad)) over a grid of samples, and grad outside a vmap over the batch."""
    case = make_case(0, engine)  # constant input, mse
    params = dict(case.net.named_parameters())
    B = case.x.shape[0]
    grid = torch.stack([case.x, 2 * case.x])  # (2, B, I)
    targets = torch.stack([case.target, -case.target])

    def one_sample(params, x, target):
        return loss_of(case)(params, x.unsqueeze(0), target.unsqueeze(0))

    per_sample = vmap(vmap(grad(one_sample), in_dims=(None, 0, 0)), in_dims=(None, 0, 0))
    grads = per_sample(params, grid, targets)["A"]
    for i in range(2):
        for b in range(B):
            _, dA = mp.gradient(
                case.net, grid[i, b : b + 1], targets[i, b : b + 1], loss="mse", method=engine
            )
            assert relative_error(grads[i, b], dA) <= TOL

    def batch_loss(params):
        y = vmap(lambda x: functional_call(case.net, params, (x.unsqueeze(0),))[0])(case.x)
        return torch_loss("mse", y, case.target)

    _, dA = mp.gradient(case.net, case.x, case.target, loss="mse", method=engine)
    assert relative_error(grad(batch_loss)(params)["A"], dA) <= TOL


@pytest.mark.parametrize("engine", BRIDGED)
def test_loss_backward_runs_the_engine_once_each_way(engine, monkeypatch):
    """The ordinary path: one engine forward, one engine backward, no recomputation."""
    case = make_case(1, engine)
    calls = {"forward": 0, "backward": 0}
    for name in calls:
        original = getattr(BoundEngine, name)

        def counted(self, *args, name=name, original=original):
            calls[name] += 1
            return original(self, *args)

        monkeypatch.setattr(BoundEngine, name, counted)
    torch_loss(case.loss, case.net(case.x), case.target).backward()
    assert calls == {"forward": 1, "backward": 1}
    _, dA = mp.gradient(case.net, case.x, case.target, loss=case.loss, method=engine)
    assert relative_error(case.net.A.grad, dA) <= TOL


@pytest.mark.parametrize("engine", ["bptt", "autograd"])
def test_input_gradients_by_func_grad(engine):
    case = make_case(3, engine)
    params = dict(case.net.named_parameters())
    reference = make_case(3, "autograd")
    dx = grad(loss_of(case), argnums=1)(params, case.x, case.target)
    x = case.x.clone().requires_grad_(True)
    torch_loss(case.loss, reference.net(x), case.target).backward()
    assert relative_error(dx, x.grad) <= TOL


def test_per_sample_jacobians_by_vmap_of_jacrev():
    case = make_case(0, "fop")
    A = case.net.A.detach()

    def outputs(A, x):
        return functional_call(case.net, {"A": A}, (x.unsqueeze(0),))[0]

    J = vmap(jacrev(outputs), in_dims=(None, 0))(A, case.x)
    reference = make_case(0, "autograd").net
    J_ref = torch.autograd.functional.jacobian(
        lambda A: functional_call(reference, {"A": A}, (case.x,)), A
    )
    assert relative_error(J, J_ref) <= TOL


@pytest.mark.parametrize("engine", BRIDGED)
def test_second_derivatives_are_refused_with_a_clear_error(engine):
    case = make_case(0, engine)
    params = dict(case.net.named_parameters())

    def first(params):
        return grad(loss_of(case))(params, case.x, case.target)["A"].sum()

    with pytest.raises(RuntimeError, match="first derivatives only"):
        grad(first)(params)
