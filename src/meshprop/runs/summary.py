"""What ``meshprop train`` prints about a run: the model line and the final summary table."""

from __future__ import annotations

from ..layered import MLP
from ..mesh import MeshNet
from .config import RunConfig
from .run import RunResult

__all__ = ["describe_model", "summary_rows"]


def describe_model(config: RunConfig, net: MeshNet | MLP) -> str:
    """One line naming the architecture and its trainable-parameter count."""
    if isinstance(net, MLP) or config.arch == "mlp":
        sizes = net.sizes if isinstance(net, MLP) else (net.topology.layer_sizes or ())
        shape = "MLP A[" + ", ".join(str(n) for n in sizes) + "]"
    else:
        topo = net.topology
        shape = (
            f"mesh of {topo.n_inputs} inputs, {topo.n_hidden} hidden, "
            f"{topo.n_outputs} outputs, {net.ticks} ticks"
        )
    return f"model: {shape}, {net.n_parameters} trainable parameters, gradient {config.grad}"


def summary_rows(result: RunResult, wall_time_s: float | None = None) -> list[tuple[str, str]]:
    """The final summary table of ``meshprop train`` as (name, value) rows; ``wall_time_s``:
    the whole command's time (data, training, plots, files), shown beside the training loop's."""
    ds, net, history = result.split.dataset, result.net, result.history
    # the weights in use: those of the best epoch when early stopping restored them
    last = history.records[history.best_epoch - 1] if history.best_epoch else history.last
    rows = [
        ("dataset", f"{ds.name} ({ds.task}, {len(ds.y)} samples, {ds.n_features} features)"),
        (
            "split",
            "train {train} / val {val} / test {test}".format(
                **{k: len(v) for k, v in result.split.indices.items()}
            ),
        ),
        (
            "network",
            f"{net.topology.n_neurons} neurons, {net.topology.n_edges} edges, "
            f"{net.ticks} ticks, {net.activation}",
        ),
        ("parameters", f"{net.n_parameters} trainable ({result.config.arch})"),
        ("gradient", result.config.grad),
        (
            "optimizer",
            f"{result.config.optimizer} lr={result.config.lr:g}, batch {result.config.batch_size}",
        ),
        (
            "epochs",
            f"{len(history)}"
            + (f" (stopped early, best {history.best_epoch})" if history.stopped_early else ""),
        ),
        ("train loss", f"{last['train_loss']:.4f}"),
    ]
    if "val_loss" in last:
        rows.append(("val loss", f"{last['val_loss']:.4f}"))
    for key, value in result.test.items():
        rows.append((key.replace("_", " "), f"{value:.4f}"))
    rows.append(("training loop", f"{history.wall_time_s:.1f} s"))
    if wall_time_s is not None:
        rows.append(("wall time", f"{wall_time_s:.1f} s (the whole command, plots included)"))
    return rows
