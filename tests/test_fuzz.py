"""Property-based tests (hypothesis): Topology builders, MeshNet inputs, every gradient engine
against autograd, the CSV reader (the checkpoint loader: tests/test_fuzz_checkpoint.py).

Two profiles: ``ci`` (the default: a few hundred examples in all, part of ``make test``) and
``fuzz`` (``make fuzz``: 2,000 examples per test, over 10,000 in all).  A bad input must end in
one exception a user can read (ValueError, TypeError, FileNotFoundError: what ``meshprop``
prints as one line), never another exception type or a hang (hypothesis' deadline).
"""

from __future__ import annotations

import json
import os
import tempfile
from datetime import timedelta
from pathlib import Path

import pytest
import torch

hypothesis = pytest.importorskip("hypothesis", reason="hypothesis: pip install -e '.[dev]'")
from hypothesis import HealthCheck, assume, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

import meshprop as mp  # noqa: E402
from meshprop.activations import ACTIVATIONS  # noqa: E402

_COMMON = {
    "suppress_health_check": [HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    "deadline": timedelta(seconds=20),  # a hang fails the example
    "derandomize": False,
}
settings.register_profile("ci", max_examples=40, **_COMMON)
settings.register_profile("fuzz", max_examples=2000, **_COMMON)
settings.load_profile(os.environ.get("MESHPROP_HYPOTHESIS_PROFILE", "ci"))

#: the exceptions meshprop reports as one line (meshprop.cli)
CLEAR = (ValueError, TypeError, FileNotFoundError)
ACTS = sorted(ACTIVATIONS)


@st.composite
def topologies(draw, max_inputs: int = 4, max_hidden: int = 5, max_outputs: int = 3):
    inputs = draw(st.integers(0, max_inputs))
    hidden = draw(st.integers(0, max_hidden))
    outputs = draw(st.integers(1, max_outputs))
    bias = draw(st.booleans())
    assume(inputs + int(bias) >= 1)  # something must drive the network
    density = draw(st.floats(0.05, 1.0))
    return mp.Topology.random(
        inputs,
        hidden,
        outputs,
        density=density,
        bias=bias,
        seed=draw(st.integers(0, 2**31 - 1)),
        output_feedback=draw(st.booleans()),
    )


# ------------------------------------------------------------------ Topology builders
@given(
    inputs=st.integers(-2, 6),
    hidden=st.integers(-2, 6),
    outputs=st.integers(-1, 4),
    density=st.floats(allow_nan=True, allow_infinity=True),
    bias=st.booleans(),
    seed=st.integers(0, 2**31 - 1),
)
def test_random_topology_is_valid_or_refused(inputs, hidden, outputs, density, bias, seed):
    try:
        topo = mp.Topology.random(inputs, hidden, outputs, density=density, bias=bias, seed=seed)
    except CLEAR as error:
        assert str(error)
        return
    full = mp.Topology.mesh(inputs, hidden, outputs, bias=bias)
    assert topo.n_edges == max(1, round(density * full.n_edges)) if full.n_edges else True
    mask = topo.mask
    assert not mask[:, : topo.n_clamped].any()  # nothing enters a clamped neuron
    assert not (mask & ~full.mask).any()
    again = mp.Topology.from_dict(json.loads(json.dumps(topo.to_dict())))
    assert again == topo and hash(again) == hash(topo)


@given(
    inputs=st.integers(0, 4),
    hidden=st.integers(0, 4),
    outputs=st.integers(1, 3),
    bias=st.booleans(),
    edges=st.lists(st.tuples(st.integers(-2, 12), st.integers(-2, 12)), max_size=20),
)
def test_from_edges_and_with_edges(inputs, hidden, outputs, bias, edges):
    try:
        topo = mp.Topology.from_edges(inputs, hidden, outputs, edges, bias=bias)
    except CLEAR as error:
        assert str(error)
        return
    assert set(topo.edge_list()) == set(edges) and topo.n_edges == len(edges)
    assert topo.edge_list() == sorted(topo.edge_list())  # row-major
    if edges:
        removed = topo.with_edges(remove=edges[:1])
        assert set(removed.edge_list()) == set(edges) - {edges[0]}
        assert removed.with_edges(add=edges[:1]) == topo


# ------------------------------------------------------------------ MeshNet inputs
_DTYPES = [torch.float32, torch.float64, torch.int64, torch.int32, torch.bool, torch.float16]


@given(
    topo=topologies(),
    ticks=st.integers(1, 4),
    act=st.sampled_from(ACTS),
    shape=st.lists(st.integers(0, 5), min_size=0, max_size=4),
    dtype=st.sampled_from(_DTYPES),
    special=st.sampled_from([None, "nan", "inf"]),
    seed=st.integers(0, 1000),
)
def test_meshnet_input_gives_outputs_or_one_clear_error(
    topo, ticks, act, shape, dtype, special, seed
):
    net = mp.MeshNet(topo, ticks=ticks, activation=act, seed=seed)
    g = torch.Generator().manual_seed(seed)
    x = (torch.randn(shape, generator=g) * 3).to(dtype)
    if special is not None and x.numel() and dtype.is_floating_point:
        x.view(-1)[0] = float(special)
    try:
        y = net(x)
    except CLEAR as error:
        assert str(error)
        return
    assert x.dim() in (2, 3) and x.shape[-1] == topo.n_inputs
    assert y.shape == (x.shape[-2], topo.n_outputs) and y.dtype == net.A.dtype
    # a NaN/inf was injected only into a non-empty floating-point x, and must have been refused
    assert special is None or not dtype.is_floating_point or x.numel() == 0


# ------------------------------------------------------------------ engines vs autograd
@given(
    topo=topologies(),
    ticks=st.integers(1, 4),
    acts=st.lists(st.sampled_from(ACTS), min_size=1, max_size=3),
    batch=st.integers(1, 5),
    per_tick=st.booleans(),
    loss=st.sampled_from(["mse", "cross_entropy"]),
    dtype=st.sampled_from([torch.float64, torch.float32]),
    seed=st.integers(0, 10**6),
)
def test_every_engine_matches_autograd(topo, ticks, acts, batch, per_tick, loss, dtype, seed):
    g = torch.Generator().manual_seed(seed)
    names = [acts[int(k)] for k in torch.randint(0, len(acts), (topo.n_neurons,), generator=g)]
    net = mp.MeshNet(topo, ticks=ticks, activation=names, dtype=dtype, seed=seed)
    shape = (ticks, batch, topo.n_inputs) if per_tick else (batch, topo.n_inputs)
    x = torch.randn(shape, generator=g, dtype=dtype)
    if loss == "mse":
        target = torch.randn(batch, topo.n_outputs, generator=g, dtype=dtype)
    else:
        target = torch.randint(0, topo.n_outputs, (batch,), generator=g)
    ref_loss, ref = mp.gradient(net, x, target, loss=loss, method="autograd")
    tol = 1e-10 if dtype == torch.float64 else 1e-4
    for method in mp.GRADIENT_METHODS:
        value, dA = mp.gradient(net, x, target, loss=loss, method=method)
        assert abs(float(value) - float(ref_loss)) <= tol * max(1.0, abs(float(ref_loss)))
        scale = max(1.0, float(ref.abs().max()))
        assert float((dA - ref).abs().max()) <= tol * scale, method
        assert not (dA * ~topo.mask).any()


def test_fop_with_no_carried_edge():
    """Found by test_every_engine_matches_autograd: one tick and no edge that reaches an output
    (P = 0 carried edges) made fop's saved sensitivities an ambiguous reshape."""
    topo = mp.Topology.from_edges(1, 1, 1, [(0, 1)], bias=False)
    net = mp.MeshNet(topo, ticks=1, activation="identity", dtype=torch.float64)
    x, target = torch.randn(3, 1, dtype=torch.float64), torch.randn(3, 1, dtype=torch.float64)
    for method in mp.GRADIENT_METHODS:
        _, dA = mp.gradient(net, x, target, loss="mse", method=method)
        assert torch.equal(dA, torch.zeros_like(dA)), method  # y does not depend on A


# ------------------------------------------------------------------ the CSV reader
_CELLS = st.one_of(
    st.sampled_from(["", " ", "nan", "inf", "-1e999", "1", "0", "2.5", "a", '"', "x,y"]),
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
    st.text(max_size=4),
)


@pytest.mark.slow
@given(
    raw=st.one_of(
        st.binary(max_size=300),
        st.lists(st.lists(_CELLS, min_size=1, max_size=4), max_size=6).map(
            lambda rows: "\n".join(",".join(r) for r in rows).encode()
        ),
    ),
    target=st.sampled_from([None, "t", "a", "missing"]),
    task=st.sampled_from(["auto", "classification", "regression"]),
)
def test_csv_reader_reads_or_gives_one_clear_error(raw, target, task):
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "d.csv"
        path.write_bytes((b"a,b,t\n" if raw[:1] != b"\xff" else b"") + raw)
        try:
            ds = mp.data.load_csv(path, target, task=task)
        except CLEAR as error:  # UnicodeDecodeError is a ValueError
            assert str(error)
            return
        assert ds.X.ndim == 2 and ds.X.dtype.kind == "f"
        assert not (ds.X != ds.X).any()  # no NaN slipped through
