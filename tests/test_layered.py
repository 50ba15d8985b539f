"""Layered networks: the two rules (papers 002, 003) against the four mesh engines and autograd,
the closed forms of paper 002 §4, and the MLP ⇄ MeshNet views."""

from __future__ import annotations

import json
import math
import random

import pytest
import torch
import torch.nn.functional as nnf

import meshprop as mp
from meshprop.layered import MLP, RULES, adjacency_to_weights

NAMES = sorted(mp.ACTIVATIONS)
RTOL = 1e-10  # float64
N_CASES = 56
MAX_NEURONS = 56  # keeps the literal O(N⁴) reference engine within the test budget


def random_case(seed: int) -> dict:
    """A random MLP problem: depth 1–5, widths 1–20, per-layer activations, batch 1–32."""
    rng = random.Random(seed)
    while True:
        depth = rng.randint(1, 5)
        sizes = [rng.randint(1, 20) for _ in range(depth + 1)]
        bias = rng.random() > 0.15
        if sum(sizes) + int(bias) <= MAX_NEURONS:
            break
    loss = rng.choice(["mse", "cross_entropy"])
    return {
        "sizes": sizes,
        "bias": bias,
        "activation": [rng.choice(NAMES) for _ in range(depth)],
        "batch": rng.choice([1, 32, *range(1, 33)]),
        "loss": loss,
        "seed": seed,
    }


CASES = [random_case(seed) for seed in range(N_CASES)]


def make_problem(case: dict) -> tuple[MLP, torch.Tensor, torch.Tensor]:
    mlp = MLP(
        case["sizes"],
        activation=case["activation"],
        bias=case["bias"],
        dtype=torch.float64,
        seed=case["seed"],
    )
    g = torch.Generator().manual_seed(1000 + case["seed"])
    x = torch.randn(case["batch"], case["sizes"][0], generator=g, dtype=torch.float64)
    if case["loss"] == "mse":
        target = torch.randn(case["batch"], case["sizes"][-1], generator=g, dtype=torch.float64)
    else:
        target = torch.randint(0, case["sizes"][-1], (case["batch"],), generator=g)
    return mlp, x, target


def autograd_oracle(mlp: MLP, x: torch.Tensor, target: torch.Tensor, loss: str):
    """Loss and dE/dW_h by PyTorch autograd on plain torch operations (no meshprop gradient)."""
    weights = [W.detach().clone().requires_grad_(True) for W in mlp.weights]
    X = x
    for W, name in zip(weights, mlp.activations, strict=True):
        Y = X @ W[:, : X.shape[1]].T + (W[:, -1] if mlp.bias else 0.0)
        X = {
            "relu": torch.relu,
            "tanh": torch.tanh,
            "sigmoid": torch.sigmoid,
            "identity": lambda t: t,
            "leaky_relu": lambda t: nnf.leaky_relu(t, 0.01),
            "softplus": nnf.softplus,
        }[name](Y)
    value = nnf.mse_loss(X, target) if loss == "mse" else nnf.cross_entropy(X, target)
    return value.detach(), list(torch.autograd.grad(value, weights))


def assert_grads_close(got: list[torch.Tensor], want: list[torch.Tensor], what: str) -> None:
    """Relative agreement: every entry within RTOL of the largest gradient entry."""
    assert len(got) == len(want), what
    scale = max(float(w.abs().max()) for w in want)
    for h, (a, b) in enumerate(zip(got, want, strict=True), start=1):
        assert a.shape == b.shape, f"{what}: W_{h} shape {a.shape} != {b.shape}"
        err = float((a - b).abs().max())
        assert err <= RTOL * max(scale, 1e-300), f"{what}: W_{h} error {err:.3e}, scale {scale:.3e}"


def test_random_cases_cover_the_specification():
    depths = {len(c["sizes"]) - 1 for c in CASES}
    widths = {s for c in CASES for s in c["sizes"]}
    batches = {c["batch"] for c in CASES}
    acts = {a for c in CASES for a in c["activation"]}
    assert len(CASES) >= 50
    assert depths == {1, 2, 3, 4, 5}
    assert min(widths) == 1 and max(widths) == 20
    assert min(batches) == 1 and max(batches) == 32
    assert acts == set(NAMES)
    assert sum(len(set(c["activation"])) > 1 for c in CASES) >= 25  # mixed per layer
    assert {c["bias"] for c in CASES} == {True, False}
    assert {c["loss"] for c in CASES} == {"mse", "cross_entropy"}


@pytest.mark.parametrize("case", CASES, ids=lambda c: f"{c['seed']}-{c['sizes']}")
def test_rules_equal_mesh_engines_and_autograd(case):
    mlp, x, target = make_problem(case)
    loss = case["loss"]
    oracle_value, oracle = autograd_oracle(mlp, x, target, loss)
    net = mlp.to_mesh()
    torch.testing.assert_close(net(x).detach(), mlp(x).detach(), rtol=1e-12, atol=1e-12)
    mesh_grads = {}
    for method in mp.GRADIENT_METHODS:
        value, dA = mp.gradient(net, x, target, loss=loss, method=method)
        assert math.isclose(float(value), float(oracle_value), rel_tol=1e-12, abs_tol=1e-14)
        # dE/dA is zero outside the layered blocks, and the blocks are dE/dW_h
        assert not dA[~net.topology.mask].any()
        mesh_grads[method] = adjacency_to_weights(dA, mlp.sizes, mlp.bias)
        assert_grads_close(mesh_grads[method], oracle, f"mesh engine {method} vs autograd")
    for rule in RULES:
        value, grads = mlp.gradient(x, target, loss=loss, rule=rule)
        assert math.isclose(float(value), float(oracle_value), rel_tol=1e-12, abs_tol=1e-14)
        assert_grads_close(grads, oracle, f"rule {rule} vs autograd")
        for method, mesh in mesh_grads.items():
            assert_grads_close(grads, mesh, f"rule {rule} vs mesh engine {method}")


# ------------------------------------------------------------ paper 002 §4
def sigma(t: float) -> float:
    return 1.0 / (1.0 + math.exp(-t))


def dsigma(t: float) -> float:
    return sigma(t) * (1.0 - sigma(t))


def J(out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """The elementary cost of paper 002 §4: J(f(x), y) = f(x) − y."""
    return (out - y).sum()


def closed_form_problem(sizes: list[int], weights: list[list[list[float]]], x: float):
    mlp = MLP(sizes, activation="sigmoid", dtype=torch.float64)
    with torch.no_grad():
        for W, values in zip(mlp.weights, weights, strict=True):
            W.copy_(torch.tensor(values, dtype=torch.float64))
    return mlp, torch.tensor([[x]], dtype=torch.float64), torch.tensor([[0.3]], dtype=torch.float64)


def all_gradients(mlp: MLP, x: torch.Tensor, y: torch.Tensor) -> dict[str, list[torch.Tensor]]:
    out = {rule: mlp.gradient(x, y, loss=J, rule=rule)[1] for rule in RULES}
    net = mlp.to_mesh()
    for method in mp.GRADIENT_METHODS:
        _, dA = mp.gradient(net, x, y, loss=J, method=method)
        out[method] = adjacency_to_weights(dA, mlp.sizes, mlp.bias)
    return out


def test_closed_form_A111():
    a11, a12, b1, b2, x = 0.7, -0.4, 1.3, 0.2, 0.9  # W¹ = (α¹₁₁ α¹₁₂), W² = (α²₁ α²₂)
    mlp, xt, y = closed_form_problem([1, 1, 1], [[[a11, a12]], [[b1, b2]]], x)
    w1 = a11 * x + a12
    outer = dsigma(b1 * sigma(w1) + b2)
    dW2 = [[outer * sigma(w1), outer]]
    dW1 = [[outer * dsigma(w1) * b1 * x, outer * dsigma(w1) * b1]]
    want = [torch.tensor(dW1, dtype=torch.float64), torch.tensor(dW2, dtype=torch.float64)]
    for name, grads in all_gradients(mlp, xt, y).items():
        assert_grads_close(grads, want, f"A[1,1,1] {name} vs paper 002 §4.1")


def test_closed_form_A121():
    a11, a12, a21, a22 = 0.7, -0.4, -1.1, 0.5
    b1, b2, b3, x = 1.3, -0.8, 0.2, 0.9
    mlp, xt, y = closed_form_problem([1, 2, 1], [[[a11, a12], [a21, a22]], [[b1, b2, b3]]], x)
    # paper 002 §4.2 prints Y¹₂ = α¹₂₁x + α¹₁₂, a typo: the bias of neuron 2 is α¹₂₂, as its own
    # X² and w² := α¹₂₁x + α¹₂₂ show; the closed form below uses w².
    w1, w2 = a11 * x + a12, a21 * x + a22
    outer = dsigma(b1 * sigma(w1) + b2 * sigma(w2) + b3)
    dW2 = [[outer * sigma(w1), outer * sigma(w2), outer]]
    dW1 = [
        [b1 * x * dsigma(w1) * outer, b1 * dsigma(w1) * outer],
        [b2 * x * dsigma(w2) * outer, b2 * dsigma(w2) * outer],
    ]
    want = [torch.tensor(dW1, dtype=torch.float64), torch.tensor(dW2, dtype=torch.float64)]
    grads = all_gradients(mlp, xt, y)
    for name, got in grads.items():
        assert_grads_close(got, want, f"A[1,2,1] {name} vs paper 002 §4.2")
    # the typo would change the answer: it is not a harmless rewrite
    typo = dsigma(b1 * sigma(w1) + b2 * sigma(a21 * x + a12) + b3) * sigma(w1)
    assert abs(typo - float(grads["two_step"][1][0, 0])) > 1e-3


# ---------------------------------------------------------- the MLP module
@pytest.mark.parametrize("grad", ["two_step", "tensor_batch", "autograd"])
def test_backward_through_module_matches_gradient(grad):
    case = CASES[7]
    mlp, x, target = make_problem(case)
    mlp.grad = grad
    x = x.clone().requires_grad_(True)
    out = mlp(x)
    value = nnf.mse_loss(out, target) if case["loss"] == "mse" else nnf.cross_entropy(out, target)
    value.backward()
    _, oracle = autograd_oracle(mlp, x.detach(), target, case["loss"])
    assert_grads_close([W.grad for W in mlp.weights], oracle, f"loss.backward() grad={grad}")
    # input gradient δ_0^up against the autograd MLP
    ref = MLP(
        case["sizes"],
        activation=case["activation"],
        bias=case["bias"],
        grad="autograd",
        dtype=torch.float64,
        seed=case["seed"],
    )
    x2 = x.detach().clone().requires_grad_(True)
    out2 = ref(x2)
    v2 = nnf.mse_loss(out2, target) if case["loss"] == "mse" else nnf.cross_entropy(out2, target)
    v2.backward()
    torch.testing.assert_close(x.grad, x2.grad, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("grad", ["two_step", "tensor_batch"])
def test_rule_functions_pass_gradcheck(grad):
    """gradcheck calls the backward once per output: the rule's saved cache must survive it."""
    mlp = MLP([3, 4, 2], activation="tanh", grad=grad, dtype=torch.float64, seed=1)
    x = torch.randn(5, 3, dtype=torch.float64, requires_grad=True)
    weights = list(mlp.weights)
    assert torch.autograd.gradcheck(lambda x: mlp(x), (x,), eps=1e-6, atol=1e-8, rtol=1e-6)
    y = mlp(x)
    first = torch.autograd.grad(y.sum(), weights, retain_graph=True)
    second = torch.autograd.grad(y.sum(), weights)
    for a, b in zip(first, second, strict=True):
        assert torch.equal(a, b)


def test_parameter_layout_and_count():
    mlp = MLP([4, 13, 13, 3], activation="tanh", output_activation="identity")
    assert [tuple(W.shape) for W in mlp.weights] == [(13, 5), (13, 14), (3, 14)]
    assert all(isinstance(W, torch.nn.Parameter) for W in mlp.weights)
    assert mlp.activations == ("tanh", "tanh", "identity")
    assert mlp.n_parameters == 13 * 5 + 13 * 14 + 3 * 14
    assert mlp.n_parameters == sum(p.numel() for p in mlp.parameters())
    assert mlp.n_parameters == mlp.to_mesh().n_parameters
    no_bias = MLP([4, 6, 2], bias=False)
    assert [tuple(W.shape) for W in no_bias.weights] == [(6, 4), (2, 6)]


def test_bias_is_the_last_column_and_the_bias_neuron():
    mlp = MLP([2, 3, 1], activation="identity", dtype=torch.float64, seed=0)
    x = torch.zeros(1, 2, dtype=torch.float64)
    # with x = 0 and identity activations the output is W2[:, -1] + W2[:, :-1] W1[:, -1]
    W1, W2 = (W.detach() for W in mlp.weights)
    torch.testing.assert_close(mlp(x)[0], W2[:, -1] + W2[:, :-1] @ W1[:, -1])
    net = mlp.to_mesh()
    bias_neuron = net.topology.bias_index
    assert bias_neuron == 2
    torch.testing.assert_close(net.A.detach()[bias_neuron, 3:6], W1[:, -1])
    torch.testing.assert_close(net.A.detach()[bias_neuron, 6], W2[0, -1])
    assert net.ticks == 2


def test_from_mesh_round_trip_and_without_stored_sizes():
    mlp = MLP([3, 7, 5, 2], activation=["tanh", "relu", "sigmoid"], dtype=torch.float64, seed=3)
    net = mlp.to_mesh()
    back = MLP.from_mesh(net)
    assert back.sizes == mlp.sizes and back.activations == mlp.activations and back.bias
    for a, b in zip(back.weights, mlp.weights, strict=True):
        assert torch.equal(a, b)
    # the same mask built edge by edge carries no layer sizes: they are inferred
    topo = mp.Topology.from_edges(3, 12, 2, edges=net.topology.edges)
    assert topo.layer_sizes is None
    plain = mp.MeshNet(topo, ticks=3, activation="tanh", dtype=torch.float64)
    assert MLP.from_mesh(plain).sizes == (3, 7, 5, 2)
    no_bias = MLP([2, 4, 3], bias=False, seed=1)
    assert MLP.from_mesh(no_bias.to_mesh()).sizes == (2, 4, 3)


def layered_plus(edge: tuple[int, int]) -> mp.MeshNet:
    base = mp.Topology.layered([3, 4, 4, 2])  # neurons: 0-2 in, 3 bias, 4-7, 8-11, 12-13 out
    topo = mp.Topology.from_edges(3, 8, 2, edges=[*base.edge_list(), edge])
    return mp.MeshNet(topo, ticks=3)


@pytest.mark.parametrize(
    "edge",
    [(9, 5), (6, 6), (5, 7), (0, 9), (4, 12), (12, 4), (13, 13)],
    ids=[
        "backward",
        "self-loop",
        "lateral",
        "skip-from-input",
        "skip",
        "output-feedback",
        "output-self-loop",
    ],
)
def test_from_mesh_names_the_offending_edge(edge):
    with pytest.raises(ValueError, match=rf"edge \({edge[0]}, {edge[1]}\)"):
        MLP.from_mesh(layered_plus(edge))


def test_from_mesh_refuses_meshes_that_are_not_layered():
    for net in (
        mp.MeshNet(mp.Topology.mesh(2, 3, 2), ticks=3),
        mp.MeshNet(mp.Topology.random(3, 6, 2, density=0.5, seed=0), ticks=3),
    ):
        with pytest.raises(ValueError, match=r"edge \((\d+), (\d+)\)") as info:
            MLP.from_mesh(net)
        i, j = (int(v) for v in info.value.args[0].split("edge (")[1].split(")")[0].split(", "))
        assert "missing" in str(info.value) or net.topology.mask[i, j]
    # a layered mask with one edge removed: the missing edge is named
    base = mp.Topology.layered([2, 3, 1])
    edges = [e for e in base.edge_list() if e != (0, 4)]
    with pytest.raises(ValueError, match=r"edge \(0, 4\).*missing"):
        MLP.from_mesh(mp.MeshNet(mp.Topology.from_edges(2, 3, 1, edges=edges), ticks=2))


def test_from_mesh_refuses_wrong_ticks_and_mixed_layer_activations():
    mlp = MLP([2, 3, 2])
    net = mlp.to_mesh()
    net.ticks = 3
    with pytest.raises(ValueError, match="ticks"):
        MLP.from_mesh(net)
    names = ["identity"] * 3 + ["relu", "tanh", "relu"] + ["relu"] * 2
    mixed = mp.MeshNet(mp.Topology.layered([2, 3, 2]), ticks=2, activation=names)
    with pytest.raises(ValueError, match=r"layer 1 .*mixes"):
        MLP.from_mesh(mixed)
    with pytest.raises(TypeError, match="MeshNet"):
        MLP.from_mesh(mlp)


def test_bad_input_is_refused_with_a_clear_message():
    with pytest.raises(ValueError, match="at least an input and an output"):
        MLP([3])
    with pytest.raises(ValueError, match=r"sizes\[1\] must be >= 1"):
        MLP([3, 0, 2])
    with pytest.raises(TypeError, match=r"sizes\[0\] must be an integer"):
        MLP([2.5, 3])
    with pytest.raises(ValueError, match="one name per layer"):
        MLP([3, 4, 2], activation=["relu"])
    with pytest.raises(ValueError, match="unknown activation 'swish' for layer 2"):
        MLP([3, 4, 2], activation=["relu", "swish"])
    with pytest.raises(ValueError, match="unknown grad"):
        MLP([3, 2], grad="fop")
    mlp = MLP([3, 4, 2])
    with pytest.raises(ValueError, match=r"shape \(B, 3\)"):
        mlp(torch.zeros(5, 4))
    with pytest.raises(ValueError, match="NaN or inf"):
        mlp(torch.tensor([[0.0, float("nan"), 1.0]]))
    with pytest.raises(ValueError, match="unknown layered rule"):
        mlp.gradient(torch.zeros(2, 3), torch.zeros(2, dtype=torch.long), rule="bptt")
    with pytest.raises(ValueError, match="label 2 is out of range"):
        mlp.gradient(torch.zeros(2, 3), torch.tensor([0, 2]))
    with pytest.raises(ValueError, match=r"mse expects a target of shape \(2, 2\)"):
        mlp.gradient(torch.zeros(2, 3), torch.zeros(2, 3), loss="mse")


@pytest.mark.slow
@pytest.mark.parametrize(
    ("argv", "line"),
    [
        (["--arch", "mlp", "--layers", "13,13"], "MLP A[2, 13, 13, 2], 249 trainable parameters"),
        (["--arch", "mlp", "--layers", "13,13", "--grad", "fop"], "249 trainable parameters"),
        (["--hidden", "12"], "12 hidden, 2 outputs, 3 ticks, 238 trainable parameters"),
    ],
)
def test_train_command_prints_the_parameter_count(argv, line, tmp_path, capsys):
    from meshprop.cli import main

    out = tmp_path / "run"
    common = ["--epochs", "1", "--samples", "120", "--no-progress", "--out", str(out)]
    assert main(["train", *argv, *common]) == 0
    printed = capsys.readouterr().out
    assert line in printed
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["model"]["parameters"] == int(line.split(" trainable")[0].split()[-1])
    assert metrics["config"]["arch"] == ("mlp" if "mlp" in argv else "mesh")
    # the checkpoint (an MLP is stored as its mesh view) reproduces the reported accuracy
    assert main(["evaluate", str(out / "checkpoint"), "--json"]) == 0
    evaluated = json.loads(capsys.readouterr().out)
    assert evaluated["test_accuracy"] == metrics["test_accuracy"]


def test_train_command_refuses_inconsistent_architecture_options(tmp_path, capsys):
    from meshprop.cli import main

    out = ["--epochs", "1", "--no-progress", "--out", str(tmp_path)]
    assert main(["train", "--arch", "mlp", *out]) == 2
    assert "needs its hidden layer sizes" in capsys.readouterr().err
    assert main(["train", "--layers", "4", *out]) == 2
    assert "layers applies to arch='mlp' only" in capsys.readouterr().err
    for option, value in (("--hidden", "5"), ("--ticks", "2"), ("--density", "0.5")):
        assert main(["train", "--arch", "mlp", "--layers", "4", option, value, *out]) == 2
        assert f"{option} applies to --arch mesh only" in capsys.readouterr().err
