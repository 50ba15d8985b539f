"""Figures: they render, show what they claim, and refuse data they cannot draw."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

import meshprop as mp
from meshprop import plots
from meshprop.training import History


def net2d(outputs=2, seed=0):
    return mp.MeshNet(
        mp.Topology.mesh(2, 3, outputs),
        ticks=2,
        output_activation="identity",
        dtype=torch.float64,
        seed=seed,
    )


def history(val=True):
    records = []
    for e in range(1, 6):
        r = {"epoch": e, "train_loss": 1.0 / e, "train_accuracy": 0.5 + e / 20}
        if val:
            r.update(val_loss=1.2 / e, val_accuracy=0.5 + e / 25)
        records.append(r)
    return History(records=records, best_epoch=4)


@pytest.mark.slow
def test_history_plot_has_loss_and_accuracy_panels(tmp_path):
    fig = plots.plot_history(history(), "t")
    loss_ax, acc_ax = fig.axes
    assert loss_ax.get_yscale() == "log" and acc_ax.get_ylabel() == "accuracy"
    assert [line.get_label() for line in loss_ax.get_lines()[:2]] == ["train", "val"]
    np.testing.assert_allclose(loss_ax.get_lines()[0].get_ydata(), [1, 1 / 2, 1 / 3, 1 / 4, 1 / 5])
    fig.savefig(tmp_path / "h.png")
    assert Image.open(tmp_path / "h.png").size[0] > 500
    with pytest.raises(ValueError, match="empty"):
        plots.plot_history(History())


def test_topology_plot_draws_every_edge_coloured_by_sign(tmp_path):
    net = net2d()
    fig = plots.plot_topology(net)
    ax = fig.axes[0]
    # one arrow patch per edge (networkx draws directed edges as FancyArrowPatch)
    arrows = [p for p in ax.patches if type(p).__name__ == "FancyArrowPatch"]
    assert len(arrows) == net.topology.n_edges
    fig.savefig(tmp_path / "t.png")


def test_decision_boundary_matches_the_network(tmp_path):
    net = net2d(outputs=3)
    X = np.random.default_rng(0).normal(size=(50, 2))
    y = np.arange(50) % 3
    fig = plots.plot_decision_boundary(net, X, y, steps=30)
    xx, yy = plots._grid(X, 30)
    with torch.no_grad():
        expected = net(torch.as_tensor(np.c_[xx.ravel(), yy.ravel()])).argmax(1).numpy()
    np.testing.assert_array_equal(plots._predict_grid(net, xx, yy).ravel(), expected)
    fig.savefig(tmp_path / "b.png")
    with pytest.raises(ValueError, match="2-D data and a 2-input network"):
        plots.plot_decision_boundary(net, np.zeros((5, 3)), np.zeros(5))


@pytest.mark.slow
def test_animation_writes_one_frame_per_snapshot_and_restores_weights(tmp_path):
    net = net2d()
    original = net.A.detach().clone()
    frames = [(e, net.A.detach() * (1 + 0.5 * e), 0.5) for e in range(3)]
    X = np.random.default_rng(1).normal(size=(20, 2))
    path = plots.animate_decision_boundary(
        net, frames, X, np.arange(20) % 2, tmp_path / "a.gif", steps=20
    )
    with Image.open(path) as gif:
        assert gif.n_frames == 3
    assert torch.equal(net.A.detach(), original)


def test_boundary_panels_one_axis_per_run():
    X = np.random.default_rng(2).normal(size=(30, 2))
    panels = [(net2d(seed=s), X, np.arange(30) % 2, f"run {s}") for s in range(3)]
    fig = plots.plot_decision_boundaries(panels, steps=20)
    assert [ax.get_title() for ax in fig.axes] == ["run 0", "run 1", "run 2"]
    with pytest.raises(ValueError, match="no panels"):
        plots.plot_decision_boundaries([])


@pytest.mark.slow
def test_saver_writes_the_figure_at_its_dpi(tmp_path):
    fig = plots.plot_history(history(), "t")
    width, height = fig.get_size_inches()
    path = tmp_path / "s.png"
    plots.saver(fig, dpi=50)(path)
    with Image.open(path) as image:
        assert image.size == (round(width * 50), round(height * 50))
