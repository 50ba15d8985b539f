"""Evaluation in chunks without gradients: the same metrics as the whole split in one batch."""

from __future__ import annotations

import pytest
import torch

import meshprop as mp
from meshprop.training import evaluate, fit, inference
from meshprop.training.inference import chunk_size, outputs


class _Recorder(torch.nn.Module):
    """Wraps a model and records, for each forward call, its batch size and grad mode."""

    def __init__(self, net: torch.nn.Module) -> None:
        super().__init__()
        self.net = net
        self.topology = getattr(net, "topology", None)
        self.calls: list[tuple[int, bool]] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.calls.append((x.shape[0], torch.is_grad_enabled()))
        return self.net(x)


@pytest.mark.parametrize("layout", ["sparse", "dense"])
def test_chunked_metrics_equal_the_whole_split_and_build_no_graph(layout, rng, monkeypatch):
    topo = mp.Topology.sparse_random(5, 30, 3, degree=4, seed=1)
    net = mp.MeshNet(topo, ticks=3, layout=layout, dtype=torch.float64, seed=0)
    X = torch.randn(70, 5, generator=rng, dtype=torch.float64)
    y = torch.randint(0, 3, (70,), generator=rng)
    with torch.no_grad():
        whole = net(X)
    recorder = _Recorder(net)
    monkeypatch.setattr(inference, "CHUNK_SAMPLES", 16)
    assert chunk_size(recorder) == 16
    chunked = outputs(recorder, X)
    assert not chunked.requires_grad and chunked.grad_fn is None
    assert [n for n, _ in recorder.calls] == [16, 16, 16, 16, 6]
    assert not any(grad for _, grad in recorder.calls)
    torch.testing.assert_close(chunked, whole, rtol=0, atol=1e-12)
    with torch.no_grad():
        expected = mp.training.metrics(whole, y, "cross_entropy")
    got = evaluate(recorder, X, y)
    assert got == pytest.approx(expected, rel=0, abs=1e-12)


def test_chunk_size_bounds_the_state_of_a_large_mesh(monkeypatch):
    class Big(torch.nn.Module):
        topology = mp.Topology.sparse_random(4, 100, 2, degree=3, seed=0)

    monkeypatch.setattr(inference, "CHUNK_NUMBERS", 1000)
    assert chunk_size(Big()) == 1000 // Big.topology.n_neurons
    assert chunk_size(torch.nn.Linear(2, 2)) == inference.CHUNK_SAMPLES
    with pytest.raises(ValueError, match="chunk"):
        outputs(torch.nn.Linear(2, 2), torch.zeros(3, 2), chunk=0)


def test_fit_evaluates_its_splits_in_chunks_without_gradients(rng, monkeypatch):
    topo = mp.Topology.sparse_random(3, 10, 2, degree=3, seed=0)
    net = _Recorder(mp.MeshNet(topo, ticks=2, layout="sparse", dtype=torch.float64, seed=0))
    X = torch.randn(40, 3, generator=rng, dtype=torch.float64)
    y = torch.randint(0, 2, (40,), generator=rng)
    monkeypatch.setattr(inference, "CHUNK_SAMPLES", 16)
    fit(net, (X, y), (X[:20], y[:20]), epochs=1, batch_size=40, progress=False)
    at = net.calls.index((40, True))  # the one training step (after fit's input checks)
    evaluation = net.calls[at + 1 :]
    assert [n for n, _ in evaluation] == [16, 16, 8, 16, 4]
    assert not any(grad for _, grad in evaluation)


def test_a_diagram_is_evaluated_in_chunks_along_its_samples_axis(rng):
    from meshprop.diagram.examples import feedforward

    diagram = feedforward((2, 4, 3)).double()
    X = torch.randn(5, 23, 2, generator=rng, dtype=torch.float64)  # (T, B, width): samples on 1
    with torch.no_grad():
        whole = diagram(X)
    chunked = outputs(diagram, X, dim=1, chunk=7)
    assert chunked.shape == whole.shape and not chunked.requires_grad
    torch.testing.assert_close(chunked, whole, rtol=0, atol=1e-12)
