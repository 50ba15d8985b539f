"""Figures: training curves, the topology as a weighted graph, 2-D decision boundaries and
their animation during training (matplotlib, Agg backend; GIFs with ``PillowWriter``).

Every function returns a ``matplotlib.figure.Figure`` (or writes a file for animations); the
caller saves it, so output stays behind the commands' single ``Reporter``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import numpy as np
import torch
from matplotlib import animation
from matplotlib.colors import ListedColormap
from matplotlib.figure import Figure

from .mesh import MeshNet
from .training import History

__all__ = [
    "animate_decision_boundary",
    "plot_decision_boundaries",
    "plot_decision_boundary",
    "plot_density_sweep",
    "plot_history",
    "plot_structure",
    "plot_topology",
    "plot_weight_matrix",
    "saver",
    "weight_image",
]

_CLASS_COLOURS = ["#3b6fb6", "#d1495b", "#66a182", "#edae49", "#8d6cab", "#00798c"]


def plot_history(history: History, title: str = "") -> Figure:
    """Loss (left) and accuracy or R² (right) per epoch, training and validation."""
    records = history.records
    if not records:
        raise ValueError("the history is empty: nothing to plot")
    epochs = [r["epoch"] for r in records]
    second = "accuracy" if "train_accuracy" in records[0] else "r2"
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8), layout="constrained")
    for ax, metric in zip(axes, ("loss", second), strict=True):
        for part, style in (("train", "-"), ("val", "--")):
            key = f"{part}_{metric}"
            if key in records[0]:
                ax.plot(epochs, [r[key] for r in records], style, label=part)
        ax.set_xlabel("epoch")
        ax.set_ylabel({"loss": "loss", "accuracy": "accuracy", "r2": "R²"}[metric])
        ax.grid(alpha=0.3)
        ax.legend()
    axes[0].set_yscale("log")
    if history.best_epoch is not None:
        for ax in axes:
            ax.axvline(history.best_epoch, color="grey", lw=0.8, ls=":")
    if title:
        fig.suptitle(title)
    return fig


def _positions(net: MeshNet) -> dict[int, tuple[float, float]]:
    """Inputs and bias in a left column, outputs in a right column, hidden neurons on a circle
    in between (a mesh has no layers to line them up by)."""
    topo = net.topology
    pos: dict[int, tuple[float, float]] = {}

    def column(nodes: Sequence[int], x: float) -> None:
        for k, node in enumerate(nodes):
            pos[node] = (x, (len(nodes) - 1) / 2 - k)

    column(list(range(topo.n_clamped)), 0.0)
    hidden = list(range(topo.n_clamped, topo.n_clamped + topo.n_hidden))
    radius = max(1.0, 0.28 * len(hidden))
    for k, node in enumerate(hidden):
        angle = np.pi / 2 - 2 * np.pi * k / max(1, len(hidden))
        pos[node] = (2.0 + radius + radius * np.cos(angle), radius * np.sin(angle))
    column(list(range(topo.n_neurons - topo.n_outputs, topo.n_neurons)), 4.0 + 2 * radius)
    return pos


def plot_density_sweep(results: dict[str, dict], title: str = "") -> Figure:
    """Test accuracy (mean ± std over seeds) against density per structure rule, on a log
    density axis, with the dense mesh (``method`` "dense") as a horizontal ceiling."""
    fig, ax = plt.subplots(figsize=(6, 4), layout="constrained")
    methods = sorted({r["method"] for r in results.values()} - {"dense"})
    for k, method in enumerate(methods):
        rows = sorted(
            (r for r in results.values() if r["method"] == method), key=lambda r: r["density"]
        )
        ax.errorbar(
            [r["density"] for r in rows],
            [r["mean"] for r in rows],
            yerr=[r["std"] for r in rows],
            marker="o",
            capsize=3,
            color=_CLASS_COLOURS[k % len(_CLASS_COLOURS)],
            label=method,
        )
    for r in results.values():
        if r["method"] == "dense":
            ax.axhline(r["mean"], color="black", ls="--", lw=1, label="dense mesh")
            ax.axhspan(r["mean"] - r["std"], r["mean"] + r["std"], color="black", alpha=0.08)
    ax.set_xscale("log")
    densities = sorted({r["density"] for r in results.values()})
    ax.set_xticks(densities, [f"{d:g}" for d in densities])
    ax.minorticks_off()
    ax.set(xlabel="density (fraction of the allowed edges)", ylabel="test accuracy")
    ax.legend(frameon=False)
    ax.set_title(title, fontsize=10)
    return fig


def plot_structure(log: Sequence[dict], title: str = "") -> Figure:
    """The topology over time (``meshprop.structure``'s log): edge count (left) and edges
    added and removed per update (right), against the optimiser step."""
    steps = [r["step"] for r in log]
    fig, (left, right) = plt.subplots(1, 2, figsize=(9, 3.2), layout="constrained")
    left.plot(steps, [r["edges"] for r in log], marker=".", color="#3b6fb6")
    left.set(xlabel="optimiser step", ylabel="edges")
    right.plot(steps, [r["added"] for r in log], marker=".", color="#66a182", label="added")
    right.plot(
        steps, [r["removed"] for r in log], marker="x", ls="--", color="#d1495b", label="removed"
    )
    right.set(xlabel="optimiser step", ylabel="edges per update")
    right.legend(frameon=False)
    fig.suptitle(title, fontsize=10)
    return fig


#: above this many edges :func:`plot_topology` draws the weight matrix instead of the graph
GRAPH_EDGES = 2000


def plot_topology(net: MeshNet, title: str = "") -> Figure:
    """The network as a directed graph: edge colour = sign of the weight (red +, blue −),
    width and opacity = |weight|; self-loops drawn as rings.  Above :data:`GRAPH_EDGES` edges
    (a graph drawing would take minutes and gigabytes) the weight matrix, as an image."""
    import networkx as nx

    topo = net.topology
    if topo.n_edges > GRAPH_EDGES:
        return plot_weight_matrix(net, title)
    graph = topo.to_networkx()
    for (i, j), w in zip(topo.edge_list(), net.edge_weights().tolist(), strict=True):
        graph.edges[i, j]["weight"] = w
    pos = _positions(net)
    weights = np.array([abs(d["weight"]) for _, _, d in graph.edges(data=True)])
    scale = weights.max() if len(weights) and weights.max() > 0 else 1.0
    width = 0.3 + 2.7 * weights / scale
    colours = ["#c0392b" if d["weight"] > 0 else "#2e5fa3" for _, _, d in graph.edges(data=True)]
    alphas = (0.25 + 0.75 * weights / scale).tolist()
    size = 6 + 0.25 * topo.n_hidden
    fig, ax = plt.subplots(figsize=(size, 0.75 * size), layout="constrained")
    nx.draw_networkx_edges(
        graph,
        pos,
        ax=ax,
        width=width,
        edge_color=colours,
        alpha=alphas,
        arrows=True,
        arrowsize=8,
        connectionstyle="arc3,rad=0.12",
        node_size=380,
    )
    role_colour = {"input": "#f4d35e", "bias": "#cfcfcf", "hidden": "#9ad1d4", "output": "#f95738"}
    nx.draw_networkx_nodes(
        graph,
        pos,
        ax=ax,
        node_size=380,
        edgecolors="black",
        linewidths=0.8,
        node_color=[role_colour[graph.nodes[k]["role"]] for k in graph.nodes],
    )
    labels = {k: ("b" if graph.nodes[k]["role"] == "bias" else str(k)) for k in graph.nodes}
    nx.draw_networkx_labels(graph, pos, labels, ax=ax, font_size=8)
    handles = [
        plt.Line2D([], [], marker="o", ls="", mfc=c, mec="black", ms=9, label=r)
        for r, c in role_colour.items()
        if any(graph.nodes[k]["role"] == r for k in graph.nodes)
    ]
    handles += [
        plt.Line2D([], [], color="#c0392b", lw=2, label="weight > 0"),
        plt.Line2D([], [], color="#2e5fa3", lw=2, label="weight < 0"),
    ]
    ax.legend(
        handles=handles, loc="upper left", fontsize=8, frameon=False, bbox_to_anchor=(1.0, 1.0)
    )
    ax.set_title(title or f"{topo!r}, |w| max {scale:.2f}", fontsize=10)
    ax.set_axis_off()
    return fig


def weight_image(net: MeshNet, pixels: int = 600) -> tuple[np.ndarray, int]:
    """The weight matrix A (row = source neuron, column = target) as an image of at most
    ``pixels``² entries, and the block size: above ``pixels`` neurons each pixel shows the
    weight of largest magnitude among the edges of its block of ``ceil(N / pixels)`` neurons
    (0 where there is none).  Built from the edge vector in O(P + pixels²) memory, so a
    10⁵-neuron mesh is drawn without its N×N matrix."""
    topo = net.topology
    N = topo.n_neurons
    step = max(1, -(-N // pixels))
    M = -(-N // step)
    w = net.edge_weights().to("cpu", torch.float64)
    edges = topo.edges
    block = (edges[:, 0] // step) * M + edges[:, 1] // step
    flat = torch.zeros(M * M, dtype=torch.float64)
    # the largest positive and the most negative weight per block; keep the larger magnitude
    high = flat.scatter_reduce(0, block, w, "amax", include_self=True)
    low = flat.scatter_reduce(0, block, w, "amin", include_self=True)
    image = torch.where(high >= -low, high, low).reshape(M, M)
    return image.numpy(), step


def plot_weight_matrix(net: MeshNet, title: str = "", pixels: int = 600) -> Figure:
    """The weight matrix A (row = source neuron, column = target) as an image, red for
    positive and blue for negative weights; larger matrices are shown by the largest |weight|
    of each block of ``ceil(N / pixels)`` neurons (:func:`weight_image`), so the figure stays
    small and nothing of size N² is allocated."""
    image, step = weight_image(net, pixels)
    scale = float(np.abs(image).max()) or 1.0
    fig, ax = plt.subplots(figsize=(6.5, 5.5), layout="constrained")
    shown = ax.imshow(image, cmap="RdBu_r", vmin=-scale, vmax=scale, interpolation="nearest")
    fig.colorbar(shown, ax=ax, label="weight")
    ax.set(xlabel="target neuron", ylabel="source neuron")
    if step > 1:
        ax.set(
            xlabel=f"target neuron (blocks of {step})", ylabel=f"source neuron (blocks of {step})"
        )
    ax.set_title(title or f"{net.topology!r}", fontsize=10)
    return fig


#: multiply-adds one decision-boundary plot may spend on the grid's forward pass
GRID_BUDGET = 2 * 10**10


def grid_steps(net: MeshNet, steps: int) -> int:
    """``steps`` per axis, fewer (down to 40) when ``steps²`` forward passes of ``net`` (one
    N×N product per tick) would exceed :data:`GRID_BUDGET` multiply-adds."""
    N = net.topology.n_neurons
    fit = int(math.sqrt(GRID_BUDGET / max(1, N * N * net.ticks)))
    return max(min(steps, fit), min(steps, 40))


def _grid(X: np.ndarray, steps: int) -> tuple[np.ndarray, np.ndarray]:
    lo, hi = X.min(axis=0), X.max(axis=0)
    pad = 0.1 * (hi - lo) + 1e-9
    return np.meshgrid(
        np.linspace(lo[0] - pad[0], hi[0] + pad[0], steps),
        np.linspace(lo[1] - pad[1], hi[1] + pad[1], steps),
    )


@torch.no_grad()
def _predict_grid(net: MeshNet, xx: np.ndarray, yy: np.ndarray) -> np.ndarray:
    points = torch.as_tensor(np.c_[xx.ravel(), yy.ravel()], dtype=net.parameter.dtype)
    return net(points).argmax(dim=1).reshape(xx.shape).cpu().numpy()


def _check_2d(net: MeshNet, X: np.ndarray) -> None:
    if X.ndim != 2 or X.shape[1] != 2 or net.topology.n_inputs != 2:
        raise ValueError(
            f"decision boundaries need 2-D data and a 2-input network; got data of shape "
            f"{X.shape} and {net.topology.n_inputs} inputs"
        )


def _draw_boundary(ax, net, X, y, xx, yy, n_classes, light: bool = False) -> None:
    """Predicted classes as filled regions, samples on top.  ``light`` (for GIFs) draws at most
    300 samples without antialiasing or outlines, which keeps the palette and the file small."""
    cmap = ListedColormap(_CLASS_COLOURS[:n_classes])
    ax.contourf(
        xx,
        yy,
        _predict_grid(net, xx, yy),
        levels=np.arange(n_classes + 1) - 0.5,
        cmap=cmap,
        alpha=0.35,
        antialiased=not light,
    )
    if light and len(X) > 300:
        keep = np.random.default_rng(0).choice(len(X), 300, replace=False)
        X, y = X[keep], y[keep]
    ax.scatter(
        X[:, 0],
        X[:, 1],
        c=y,
        cmap=cmap,
        vmin=-0.5,
        vmax=n_classes - 0.5,
        s=6 if light else 9,
        edgecolors="none" if light else "black",
        linewidths=0.3,
        antialiased=not light,
    )
    ax.set_xticks([])
    ax.set_yticks([])


def plot_decision_boundary(
    net: MeshNet,
    X: torch.Tensor | np.ndarray,
    y: torch.Tensor | np.ndarray,
    title: str = "",
    steps: int = 200,
) -> Figure:
    """The class the network predicts over the (standardised) input plane, with the samples.
    For a large mesh the grid is coarser (:func:`grid_steps`), so the plot takes seconds."""
    X, y = np.asarray(X), np.asarray(y)
    _check_2d(net, X)
    xx, yy = _grid(X, grid_steps(net, steps))
    fig, ax = plt.subplots(figsize=(4.5, 4.5), layout="constrained")
    _draw_boundary(ax, net, X, y, xx, yy, net.topology.n_outputs)
    if title:
        ax.set_title(title, fontsize=10)
    return fig


def plot_decision_boundaries(
    panels: Sequence[tuple[MeshNet, np.ndarray, np.ndarray, str]], steps: int = 150
) -> Figure:
    """One row of decision boundaries, one panel per ``(net, X, y, title)``."""
    if not panels:
        raise ValueError("no panels to draw")
    fig, axes = plt.subplots(
        1, len(panels), figsize=(2.6 * len(panels), 2.9), layout="constrained", squeeze=False
    )
    for ax, (net, X, y, title) in zip(axes[0], panels, strict=True):
        X, y = np.asarray(X), np.asarray(y)
        _check_2d(net, X)
        xx, yy = _grid(X, steps)
        _draw_boundary(ax, net, X, y, xx, yy, net.topology.n_outputs, light=True)
        ax.set_title(title, fontsize=9)
    return fig


def saver(fig: Figure, dpi: int) -> Callable[[Path], None]:
    """A writer for :meth:`meshprop.reporting.Reporter.write_with`: ``fig`` as an image at
    ``dpi`` (the format from the path's suffix)."""

    def save(path: Path) -> None:
        fig.savefig(path, dpi=dpi)

    return save


def animate_decision_boundary(
    net: MeshNet,
    frames: Sequence[tuple[int, torch.Tensor, float]],
    X: torch.Tensor | np.ndarray,
    y: torch.Tensor | np.ndarray,
    path: str | Path,
    title: str = "",
    fps: int = 8,
    steps: int = 120,
    size: float = 3.2,
) -> Path:
    """Write a GIF of the decision boundary during training.

    ``frames`` are ``(epoch, weights, accuracy)`` snapshots, the weights as ``net`` stores them
    (``net.parameter``: A, or the edge vector of the sparse layout); ``net`` supplies topology
    and dynamics (its weights are restored afterwards).
    """
    X, y = np.asarray(X), np.asarray(y)
    _check_2d(net, X)
    if not frames:
        raise ValueError("no frames to animate")
    xx, yy = _grid(X, steps)
    saved = net.parameter.detach().clone()
    fig, ax = plt.subplots(figsize=(size, size), dpi=80, layout="constrained")

    def draw(k: int) -> None:
        epoch, weights, accuracy = frames[k]
        with torch.no_grad():
            net.parameter.copy_(weights)
        ax.clear()
        _draw_boundary(ax, net, X, y, xx, yy, net.topology.n_outputs, light=True)
        ax.set_title(f"{title} epoch {epoch}  acc {accuracy:.3f}".strip(), fontsize=9)

    path = Path(path)
    try:
        movie = animation.FuncAnimation(fig, draw, frames=len(frames), interval=1000 // fps)
        movie.save(str(path), writer=animation.PillowWriter(fps=fps))
    finally:
        with torch.no_grad():
            net.parameter.copy_(saved)
        plt.close(fig)
    return path
