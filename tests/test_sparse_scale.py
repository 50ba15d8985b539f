"""Sparse meshes that learn at scale: ``Topology.sparse_random`` (inputs wired to the
outputs within two ticks, O(P) memory), the SDDMM per-edge gradient of the sparse ``bptt``,
exactness of the sparse engines on such meshes, and learning digits with one."""

from __future__ import annotations

import json
import math

import pytest
import torch

import meshprop as mp
from helpers import relative_error
from meshprop import cli
from meshprop.bench import scale
from meshprop.bench.scale import ScaleRow, peak_tensor_bytes, probe_buffers, run_scale, slopes
from meshprop.engines.edge_ops import edge_grad, edge_index_of, tick_edges
from meshprop.threads import thread_policy
from meshprop.topology import _distinct_per_row


@pytest.mark.parametrize(
    ("inputs", "hidden", "outputs", "degree", "fan_in", "bias"),
    [
        (64, 2000, 10, 10.0, 3, True),  # the rejection path (k² ≤ inputs)
        (5, 300, 7, 6.0, 4, False),  # the sorted-keys path (k² > inputs)
        (3, 40, 4, 2.0, 8, True),  # fan_in ≥ inputs: every input; no hidden → hidden edge left
        (0, 50, 5, 4.0, 3, True),  # no data input
    ],
)
def test_sparse_random_wires_inputs_hidden_and_outputs(
    inputs, hidden, outputs, degree, fan_in, bias
):
    topo = mp.Topology.sparse_random(inputs, hidden, outputs, degree, fan_in, bias, seed=1)
    assert topo == mp.Topology.sparse_random(inputs, hidden, outputs, degree, fan_in, bias, seed=1)
    assert topo != mp.Topology.sparse_random(inputs, hidden, outputs, degree, fan_in, bias, seed=2)
    C, N = topo.n_clamped, topo.n_neurons
    first_out = N - outputs
    src, dst = topo.edges.unbind(1)
    assert int(dst.min()) >= C  # nothing enters a clamped neuron
    assert not bool((src >= first_out).any())  # outputs send nothing: valid without feedback
    hidden_ids = torch.arange(C, first_out)
    # every hidden neuron reads min(fan_in, inputs) distinct inputs (duplicates are impossible:
    # the constructor rejects them) and the bias
    from_inputs = src < inputs
    counts = torch.bincount(dst[from_inputs], minlength=N)[C:first_out]
    assert bool((counts == min(fan_in, inputs)).all())
    from_bias = src == inputs if bias else torch.zeros_like(src, dtype=torch.bool)
    assert int(from_bias.sum()) == (topo.n_free if bias else 0)
    # every hidden neuron feeds exactly one output; outputs are balanced
    to_out = (dst >= first_out) & (src >= C)
    assert torch.equal(torch.sort(src[to_out]).values, hidden_ids)
    per_output = torch.bincount(dst[to_out] - first_out, minlength=outputs)
    assert int(per_output.min()) == hidden // outputs
    assert int(per_output.max()) == -(-hidden // outputs)
    # the rest is hidden → hidden, up to round(degree · N) edges
    wired = int(from_inputs.sum()) + int(from_bias.sum()) + hidden
    assert topo.n_edges == max(round(degree * N), wired)
    rest = ~(from_inputs | from_bias | to_out)
    assert bool(((src[rest] >= C) & (src[rest] < first_out) & (dst[rest] < first_out)).all())


def test_sparse_random_has_cycles_and_self_loops_when_dense_enough():
    topo = mp.Topology.sparse_random(4, 6, 2, degree=4.0, fan_in=2, seed=0)
    src, dst = topo.edges.unbind(1)
    hidden = (src >= topo.n_clamped) & (dst < topo.n_neurons - 2)
    assert int(hidden.sum()) == 26  # of the 36 hidden pairs
    assert bool((src[hidden] == dst[hidden]).any())


def test_sparse_random_at_1e5_neurons_allocates_no_n2_and_reaches_the_outputs():
    def build():
        topo = mp.Topology.sparse_random(64, 100_000 - 75, 10, degree=10, seed=0)
        assert 0.99e6 <= topo.n_edges <= 1.01e6
        hash(topo)

    assert peak_tensor_bytes(build) < 2 * 10**8  # one N×N boolean mask would be 10¹⁰ bytes


def test_sparse_random_errors_name_what_was_wrong():
    with pytest.raises(ValueError, match="needs hidden >= outputs"):
        mp.Topology.sparse_random(4, 3, 5)
    with pytest.raises(ValueError, match="only 100 hidden pairs"):
        mp.Topology.sparse_random(4, 10, 2, degree=20.0)
    with pytest.raises(ValueError, match="positive finite"):
        mp.Topology.sparse_random(4, 10, 2, degree=0.0)
    with pytest.raises(ValueError, match="fan_in must be >= 0"):
        mp.Topology.sparse_random(4, 10, 2, fan_in=-1)


def test_distinct_per_row_draws_uniform_subsets():
    g = torch.Generator().manual_seed(0)
    rows = _distinct_per_row(20_000, 16, 4, g)
    assert rows.shape == (20_000, 4)
    assert bool((rows.sort(1).values.diff(dim=1) > 0).all())  # distinct in every row
    counts = torch.bincount(rows.reshape(-1), minlength=16).double()
    expected = 20_000 * 4 / 16  # binomial std ≈ 43: 6 std is a failure, not noise
    assert float((counts - expected).abs().max()) < 6 * (20_000 * 0.25 * 0.75) ** 0.5


def test_edge_grad_is_the_sum_over_the_batch_at_every_edge():
    g = torch.Generator().manual_seed(3)
    topo = mp.Topology.sparse_random(5, 30, 3, degree=4.0, seed=3)
    index = edge_index_of(topo, torch.device("cpu"))
    S = torch.randn(7, topo.n_neurons, generator=g, dtype=torch.float64)
    e = torch.randn(topo.n_free, 7, generator=g, dtype=torch.float64).T  # not contiguous
    src, dst = topo.edges.unbind(1)
    expected = (S[:, src] * e[:, dst - topo.n_clamped]).sum(0)
    assert relative_error(edge_grad(index, S, e), expected) < 1e-14
    empty = mp.Topology.from_edges(2, 3, 1, [])
    assert edge_grad(edge_index_of(empty, torch.device("cpu")), S[:, :7], e[:, :4]).shape == (0,)


@pytest.mark.parametrize("ticks", [2, 3])
def test_sparse_engines_equal_dense_autograd_on_a_wired_mesh(ticks):
    topo = mp.Topology.sparse_random(6, 60, 4, degree=5.0, fan_in=2, seed=ticks)
    names = sorted(mp.ACTIVATIONS)
    pick = torch.randint(0, len(names), (topo.n_neurons,), generator=torch.Generator())
    activation = [names[int(k)] for k in pick]
    dense = mp.MeshNet(topo, ticks=ticks, activation=activation, dtype=torch.float64, seed=1)
    sparse = mp.MeshNet(
        topo, ticks=ticks, activation=activation, dtype=torch.float64, layout="sparse"
    )
    src, dst = topo.edges.unbind(1)
    with torch.no_grad():
        sparse.weight.copy_(dense.A[src, dst])
    x = torch.randn(9, 6, dtype=torch.float64)
    target = torch.randint(0, 4, (9,))
    _, dA = mp.gradient(dense, x, target, method="autograd")
    for method in ("bptt", "fop", "autograd"):
        _, dw = mp.gradient(sparse, x, target, method=method)
        assert relative_error(dw, dA[src, dst]) < 1e-10, method


def test_a_wired_sparse_mesh_learns_digits():
    from sklearn.datasets import load_digits

    X, y = load_digits(return_X_y=True)
    X, y = torch.tensor(X / 16.0, dtype=torch.float32), torch.tensor(y)
    topo = mp.Topology.sparse_random(64, 500, 10, degree=10, fan_in=3, seed=0)
    net = mp.MeshNet(
        topo, ticks=2, layout="sparse", seed=0, activation="tanh", output_activation="identity"
    )
    opt = torch.optim.Adam(net.parameters(), lr=1e-2)
    g = torch.Generator().manual_seed(0)
    train, test = torch.arange(1400), torch.arange(1400, len(X))
    with thread_policy(1):  # small products: threads only add synchronisation
        for _ in range(100):
            idx = train[torch.randint(0, 1400, (32,), generator=g)]
            opt.zero_grad()
            _, net.weight.grad = mp.gradient(net, X[idx], y[idx], method="bptt")
            opt.step()
    with torch.no_grad():
        accuracy = float((net(X[test]).argmax(1) == y[test]).float().mean())
    assert accuracy > 0.7  # chance is 0.1


def scale_row(engine: str, edges: int, seconds: float, neurons: int) -> ScaleRow:
    return ScaleRow("sparse", engine, neurons, edges, 2, 32, seconds, 1, 1, 1.0)


def test_scale_slopes_fit_the_power_of_the_edges():
    rows = [scale_row("bptt", p, 3e-9 * p, p // 10) for p in (10**4, 10**5, 10**6)]
    rows += [scale_row("dense", p, 1e-12 * p**2, p // 10) for p in (10**4, 10**5)]
    rows += [scale_row("flat", p, 0.01 + 1e-9 * p, p // 10) for p in (10**3, 10**4, 10**6)]
    rows.append(scale_row("lonely", 10**6, 1.0, 10**5))  # one point: no slope
    fits = slopes(rows)
    assert fits["sparse/bptt T=2"] == pytest.approx(1.0, abs=1e-12)
    assert fits["sparse/dense T=2"] == pytest.approx(2.0, abs=1e-12)
    assert "sparse/lonely T=2" not in fits
    # a fixed overhead flattens the fit over every size; the large sizes recover the slope
    assert fits["sparse/flat T=2"] < 0.5
    assert slopes(rows, min_neurons=1000)["sparse/flat T=2"] == pytest.approx(
        math.log((0.01 + 1e-3) / (0.01 + 1e-5)) / math.log(100), abs=1e-12
    )


@pytest.mark.slow
def test_scale_workload_runs_every_engine_that_fits_and_writes_the_plot(capsys, tmp_path):
    out = tmp_path / "scale.json"
    code = cli.main(
        [
            "bench",
            "--workload",
            "scale",
            "--sizes",
            "150",
            "300",
            "--threads",
            "1",
            "--output",
            str(out),
        ]
    )
    assert code == 0
    text = capsys.readouterr().out
    assert "measured bandwidth" in text and "slope of log(time) vs log(edges)" in text
    records = json.loads(out.read_text())
    head, rows = records[0], records[1:]
    assert head["bandwidth_bytes_s"] > 0 and "sparse/bptt T=2" in head["slopes"]
    kinds = {(r["layout"], r["engine"], r["ticks"]) for r in rows}
    assert {("sparse", e, T) for e in ("bptt", "fop", "autograd") for T in (2, 3)} <= kinds
    assert {("dense", e, T) for e in ("bptt", "fop_factored") for T in (2, 3)} <= kinds
    assert all(r["median_s"] > 0 and r["peak_bytes"] > 0 and r["limit_s"] > 0 for r in rows)
    assert (tmp_path / "scale.png").stat().st_size > 0


@pytest.mark.slow
def test_scale_sweep_on_random_meshes_and_unknown_kinds():
    rows, rate = run_scale(
        sizes=(200,), ticks=(2,), repeats=1, dense_max=0, dense_bptt_max=0, topology="random"
    )
    assert rate > 0 and [(r.layout, r.engine) for r in rows] == [
        ("sparse", "bptt"),
        ("sparse", "fop"),
        ("sparse", "autograd"),
    ]
    assert rows[0].edges == mp.Topology.random(64, 125, 10, density=10 / 135, seed=0).n_edges
    with pytest.raises(ValueError, match="unknown scale topology 'grid'"):
        run_scale(sizes=(200,), topology="grid")


@pytest.mark.parametrize("sequence", [False, True])
def test_sparse_bptt_prunes_to_the_edges_that_reach_an_output_exactly(sequence):
    topo = mp.Topology.random(8, 300, 4, density=2 / 304, seed=1)
    ticks = 3
    pruned = tick_edges(topo, ticks, torch.device("cpu"))
    assert all(ids is not None for ids, _ in pruned)  # a sparse random mesh: every tick pruned
    assert len(pruned[-1][0]) < topo.n_edges / 10
    names = ["sigmoid", "tanh", "relu"] * topo.n_neurons  # sigmoid(0) ≠ 0 off R_n
    activation = names[: topo.n_neurons]
    dense = mp.MeshNet(topo, ticks=ticks, activation=activation, dtype=torch.float64, seed=2)
    sparse = mp.MeshNet(
        topo, ticks=ticks, activation=activation, dtype=torch.float64, layout="sparse", grad="bptt"
    )
    src, dst = topo.edges.unbind(1)
    with torch.no_grad():
        sparse.weight.copy_(dense.A[src, dst])
    dense.grad = "autograd"
    shape = (ticks, 5, 8) if sequence else (5, 8)
    x = torch.randn(*shape, dtype=torch.float64)
    x_d, x_s = x.clone().requires_grad_(True), x.clone().requires_grad_(True)
    y_d, y_s = dense(x_d), sparse(x_s)
    assert relative_error(y_s, y_d) < 1e-12
    (y_d * torch.arange(1.0, 5.0, dtype=torch.float64)).sum().backward()
    (y_s * torch.arange(1.0, 5.0, dtype=torch.float64)).sum().backward()
    assert relative_error(sparse.weight.grad, dense.A.grad[src, dst]) < 1e-10
    assert relative_error(x_s.grad, x_d.grad) < 1e-10


@pytest.mark.parametrize("kind", ["wired", "random"])
def test_sparse_bptt_estimate_bounds_its_measured_peak(kind):
    from meshprop.bench.scale import _topology
    from meshprop.engines import get_engine

    net = mp.MeshNet(_topology(5000, kind=kind), ticks=3, layout="sparse", seed=0)
    x, y = torch.randn(32, 64), torch.randint(0, 10, (32,))
    mp.gradient(net, x, y, method="bptt")  # caches built outside the measured step
    peak = peak_tensor_bytes(lambda: mp.gradient(net, x, y, method="bptt"))
    estimate = get_engine("bptt", "sparse").estimate_bytes(net.dynamics, 32, 4)
    assert 0.5 * estimate < peak <= estimate  # a bound, and not a loose one


def test_the_bandwidth_probe_copies_written_memory(monkeypatch):
    source, destination = probe_buffers(4096)
    assert bool((source == 1).all()) and torch.equal(destination, source)  # no zero pages
    seen: list[bool] = []
    real = scale.probe_buffers

    def spy(nbytes, device="cpu"):
        source, destination = real(nbytes, device)
        seen.append(bool((source != 0).all()))
        return source, destination

    monkeypatch.setattr(scale, "probe_buffers", spy)
    assert scale.bandwidth(nbytes=4096, repeats=1) > 0
    assert seen == [True]


def test_edge_columns_are_copies_and_the_target_order_is_the_key_order():
    one = mp.Topology.from_edges(1, 1, 1, [(0, 2)])
    one.edge_targets.sub_(1)  # a copy, even of a single edge (a contiguous view otherwise)
    assert one.edges.tolist() == [[0, 2]]
    topo = mp.Topology.sparse_random(6, 200, 3, degree=5, seed=2)
    edges = topo.edges
    assert torch.equal(topo.edge_sources, edges[:, 0]) and torch.equal(
        topo.edge_targets, edges[:, 1]
    )
    index = edge_index_of(topo, torch.device("cpu"))
    keys = index.dst * topo.n_neurons + index.src
    assert torch.equal(index.by_target, torch.argsort(keys))  # unique keys: one order


def test_thinned_keeps_a_seeded_random_fraction_of_the_edges():
    topo = mp.Topology.sparse_random(6, 300, 3, degree=6.0, seed=0)
    thin = topo.thinned(0.1, seed=4)
    assert thin.n_edges == round(0.1 * topo.n_edges)
    keys = set(map(tuple, topo.edges.tolist()))
    assert set(map(tuple, thin.edges.tolist())) <= keys  # a subset, nothing new
    assert torch.equal(thin.edges, topo.thinned(0.1, seed=4).edges)  # seeded
    assert not torch.equal(thin.edges, topo.thinned(0.1, seed=5).edges)
    with pytest.raises(ValueError, match=r"fraction must be in \(0, 1\]"):
        topo.thinned(0.0)


def test_degree_mesh_with_density_starts_structure_learning_at_that_fraction():
    from meshprop.runs.config import ConfigError, RunConfig
    from meshprop.runs.preflight import network_size
    from meshprop.runs.run import build_net

    config = RunConfig(
        dataset="digits", hidden=400, degree=8, density=0.1, structure="rigl", layout="sparse"
    )
    net = build_net(config, 64, 10)
    full = mp.Topology.sparse_random(64, 400, 10, degree=8, bias=True, seed=config.seed)
    assert net.topology.n_edges == round(0.1 * full.n_edges)
    whole = RunConfig(dataset="digits", hidden=400, degree=8, layout="sparse")
    assert network_size(config)[1] == round(0.1 * network_size(whole)[1])  # preflight counts it
    with pytest.raises(ConfigError, match="magnitude prunes a full mesh"):
        RunConfig(dataset="digits", hidden=400, degree=8, density=0.1, structure="magnitude")


def test_rigl_scores_the_support_first_and_equals_a_sort_of_every_absent_entry(monkeypatch):
    """A sparse ReLU mesh at a tenth of its edges: most neurons stay at zero or reach no output,
    so their rows/columns of dE/dA are exactly zero and RigL's top k is found on the support;
    the answer equals a sort of every absent allowed entry, also where zeros must fill it."""
    from meshprop.structure import absent_gradient
    from meshprop.structure.edges import candidates, largest

    topo = mp.Topology.sparse_random(5, 60, 3, degree=4, seed=1).thinned(0.3, seed=1)
    net = mp.MeshNet(topo, ticks=2, activation="relu", layout="sparse", dtype=torch.float64)
    g = torch.Generator().manual_seed(0)
    X, y = torch.randn(7, 5, generator=g, dtype=torch.float64), torch.randint(0, 3, (7,))
    S, E = absent_gradient.gradient_factors(net, X, y, "cross_entropy")
    support = int((S != 0).any(0).sum()) * int((E != 0).any(0).sum())
    assert support < topo.n_neurons * topo.n_free // 4  # the support is small here
    free = candidates(topo)
    scores = (S.T @ E).abs()[free[:, 0], free[:, 1] - topo.n_clamped]
    positive = int((scores > 0).sum())
    scanned = []
    real_scan = absent_gradient._scan
    monkeypatch.setattr(
        absent_gradient,
        "_scan",
        lambda *a: scanned.append(len(a[3]) * len(a[4])) or real_scan(*a),
    )
    monkeypatch.setattr(absent_gradient, "BLOCK_ENTRIES", 3 * topo.n_free)
    for k in (1, 9, positive, positive + 4):  # the last needs zeros: every row is scored
        scanned.clear()
        got = absent_gradient.largest_absent_gradients(topo, S, E, k)
        assert torch.equal(got, free[largest(scores, k)])
        full = topo.n_neurons * topo.n_free
        assert scanned[0] < full and (scanned[-1] == full) == (k > positive)
