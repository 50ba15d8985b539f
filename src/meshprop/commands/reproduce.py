"""``meshprop reproduce``: the experiments of paper 000's reference implementation.

- ``toys``: moons, circles, blobs, blobs2 (5 hidden neurons) and spirals (15), each trained with
  the reference's protocol (3 ticks, batch 10, Adam lr 1e-3, 1000 epochs, 70/30 split), with a
  GIF of the decision boundary during training, a final still and a summary table.
- ``iris``: 4 inputs + bias, 10 hidden, 3 outputs, 3 ticks, batch 10, Adam lr 1e-3, 1000 epochs,
  70/30 split, over several seeds, with FOP and a second engine (autograd) on the same seeds.
  The mesh is a random sparse mesh keeping half of the allowed edges (drawn from the seed),
  ReLU hidden neurons, identity (logit) outputs: see docs/experiments.md for the choice.
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import statistics
from dataclasses import dataclass

import torch

from ..data import TOY_DATASETS, bayes_correct
from ..mesh import MeshNet
from ..reporting import Reporter, format_table
from ..runs import RunConfig, run
from ..runs.config import setting
from ..runs.folder import UNITS_FILE, RunFolder
from ..runs.settings import at_least_one, check_fields
from . import online_study, reproduce_structure
from .checks import declare_outputs
from .interrupts import StopRequest
from .options import add_run_options, add_settings_options
from .reproduce_fashion import add_parser as add_fashion_parser
from .reproduce_mnist1d import add_parser as add_mnist1d_parser
from .runner import run_command

#: hidden neurons per toy set (the reference: 5 each, spirals 15).
TOY_HIDDEN = {"moons": 5, "circles": 5, "blobs": 5, "blobs2": 5, "spirals": 15}


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "reproduce",
        help="reproduce the papers' experiments: toys, iris, structure, online, fashion-mnist, "
        "mnist1d",
        description="Reproduce the papers' experiments: the toy sets and Iris of paper 000's "
        "reference implementation, structural learning, online delayed recall, Fashion-MNIST "
        "(paper 001) and MNIST-1D.",
    )
    sub = p.add_subparsers(dest="experiment", metavar="EXPERIMENT", required=True)
    toys = sub.add_parser(
        "toys",
        help="2-D toy sets with animated decision boundaries",
        description="Train moons, circles, blobs, blobs2 (5 hidden) and spirals (15 hidden) "
        "with 3 ticks, batch 10, Adam lr 1e-3, 70/30 split; write a GIF of the decision "
        "boundary during training, a PNG still and summary.md/summary.json per run. --resume "
        "continues an interrupted run from the sets it had finished.",
    )
    add_settings_options(toys, ToysConfig)
    add_run_options(toys, out="runs/reproduce-toys")
    toys.set_defaults(handler=handle_toys)
    declare_outputs(toys, out="dir")
    iris = sub.add_parser(
        "iris",
        help="the Iris protocol over several seeds, FOP against a second engine",
        description="Iris: 4 inputs + bias, 10 hidden, 3 outputs, random mesh keeping half of "
        "the allowed edges, ReLU hidden, identity outputs, 3 ticks, batch 10, "
        "Adam lr 1e-3, 1000 epochs, 70/30 split. Each seed fixes split, weights and batches; "
        "every seed is trained with --grad and again with --compare. --resume continues an "
        "interrupted run from the seeds it had finished.",
    )
    add_settings_options(iris, IrisConfig)
    add_run_options(iris, out="runs/reproduce-iris")
    iris.set_defaults(handler=handle_iris)
    declare_outputs(iris, out="dir")
    reproduce_structure.register(sub)
    add_fashion_parser(sub)
    add_mnist1d_parser(sub)
    online_study.add_parser(sub)


@dataclass
class ToysConfig:
    """The settings of ``meshprop reproduce toys`` (saved as its ``config.json``)."""

    sets: list[str] = setting(  # noqa: RUF009 (setting is dataclasses.field)
        list(TOY_DATASETS),
        "the sets to train",
        group="experiment",
        metavar="SET",
        choices=lambda: TOY_DATASETS,
        nargs="+",
    )
    epochs: int = setting(1000, "epochs per set", group="experiment", check=(">= 1", at_least_one))
    frames: int = setting(
        40, "GIF frames per set", group="experiment", check=(">= 1", at_least_one)
    )
    grad: str = setting("fop", "gradient engine", group="experiment")
    seed: int = setting(
        0, "seed of every set", group="experiment", check=(">= 0", lambda v: v >= 0)
    )

    def __post_init__(self) -> None:
        check_fields(self)


@dataclass
class IrisConfig:
    """The settings of ``meshprop reproduce iris`` (saved as its ``config.json``)."""

    seeds: int = setting(5, "seeds 0..SEEDS-1", group="experiment", check=(">= 1", at_least_one))
    epochs: int = setting(1000, "epochs per run", group="experiment", check=(">= 1", at_least_one))
    grad: str = setting("fop", "gradient engine", group="experiment")
    compare: str = setting(
        "autograd", "second engine run on the same seeds ('none' to skip)", group="experiment"
    )

    def __post_init__(self) -> None:
        check_fields(self)


def iris_config(seed: int, grad: str, epochs: int = 1000) -> RunConfig:
    """The Iris protocol of the reference implementation (see the module docstring)."""
    return RunConfig(
        dataset="iris",
        hidden=10,
        ticks=3,
        density=0.5,
        activation="relu",
        output_activation="identity",
        grad=grad,
        optimizer="adam",
        lr=1e-3,
        epochs=epochs,
        batch_size=10,
        seed=seed,
        test_size=0.3,
        dtype="float64",
    )


def toy_config(name: str, seed: int, grad: str, epochs: int = 1000) -> RunConfig:
    """The 2-D toy protocol: Iris's optimiser, batch and split on a full mesh of 1000 samples."""
    return dataclasses.replace(
        iris_config(seed, grad, epochs),
        dataset=name,
        n_samples=1000,
        hidden=TOY_HIDDEN[name],
        density=1.0,
    )


def _mean_std(values: list[float]) -> str:
    std = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{statistics.mean(values):.4f} ± {std:.4f}"


def handle_iris(args: argparse.Namespace) -> int:
    reporter = Reporter(progress=not args.no_progress)

    def work(config: IrisConfig, folder: RunFolder, stop: StopRequest) -> int:
        run_iris(config, folder, reporter)
        return 0

    return run_command(args, "reproduce iris", IrisConfig, work, state=UNITS_FILE)


def run_iris(config: IrisConfig, folder: RunFolder, reporter: Reporter) -> dict:
    """Every seed trained by each engine (one unit of work per seed: both engines, so the
    weight difference is measured within it); writes iris.json and iris.md."""
    engines = [config.grad] + ([] if config.compare == "none" else [config.compare])
    runs: dict[str, list[dict]] = {g: [] for g in engines}
    differences = []
    for seed in range(config.seeds):

        def unit(seed: int = seed) -> dict:
            records, weights = {}, []
            for grad in engines:
                result = run(iris_config(seed, grad, config.epochs), reporter)
                records[grad] = {
                    "seed": seed,
                    "test_accuracy": result.test["test_accuracy"],
                    "train_accuracy": result.history.last["train_accuracy"],
                    "final_train_loss": result.history.last["train_loss"],
                    "wall_time_s": result.history.wall_time_s,
                }
                weights.append(result.net.parameter.detach().clone())
            diff = float((weights[0] - weights[-1]).abs().max())
            return {"runs": records, "max_weight_difference": diff}

        record = folder.unit(f"seed-{seed}", unit)
        differences.append(record["max_weight_difference"])
        for grad in engines:
            r = record["runs"][grad]
            runs[grad].append(r)
            reporter.print(
                f"seed {seed} {grad:>9}: test accuracy {r['test_accuracy']:.4f} "
                f"({r['wall_time_s']:.1f} s)"
            )
    summary: dict = {"config": iris_config(0, config.grad, config.epochs).to_dict(), "runs": runs}
    rows = [("seed", " | ".join(f"{g:>9}" for g in engines))]
    for k in range(config.seeds):
        rows.append((str(k), " | ".join(f"{runs[g][k]['test_accuracy']:9.4f}" for g in engines)))
    rows.append(
        (
            "mean ± std",
            " | ".join(_mean_std([r["test_accuracy"] for r in runs[g]]) for g in engines),
        )
    )
    rows.append(
        (
            "wall time / run",
            " | ".join(
                f"{statistics.mean(r['wall_time_s'] for r in runs[g]):7.1f} s" for g in engines
            ),
        )
    )
    for g in engines:
        summary[g] = {
            "mean_test_accuracy": statistics.mean(r["test_accuracy"] for r in runs[g]),
            "std_test_accuracy": statistics.stdev([r["test_accuracy"] for r in runs[g]])
            if config.seeds > 1
            else 0.0,
            "mean_wall_time_s": statistics.mean(r["wall_time_s"] for r in runs[g]),
        }
    if len(engines) == 2:
        a, b = engines
        same = all(
            x["test_accuracy"] == y["test_accuracy"] for x, y in zip(runs[a], runs[b], strict=True)
        )
        diff = max(differences)
        summary["same_accuracy"] = same
        summary["max_final_weight_difference"] = diff
        rows.append(
            (f"{a} = {b}", f"accuracies identical: {same}; max |ΔA| after training {diff:.2e}")
        )
    folder.write_json("iris.json", summary)
    table = format_table(rows)
    folder.write_text("iris.md", table + "\n")
    folder.finish(folder.path(UNITS_FILE))
    reporter.print(table)
    return summary


def handle_toys(args: argparse.Namespace) -> int:
    reporter = Reporter(progress=not args.no_progress)

    def work(config: ToysConfig, folder: RunFolder, stop: StopRequest) -> int:
        run_toys(config, folder, reporter)
        return 0

    return run_command(args, "reproduce toys", ToysConfig, work, state=UNITS_FILE)


def _toy_unit(name: str, config: ToysConfig, folder: RunFolder, reporter: Reporter) -> dict:
    """Train one toy set, write its GIF and still; the record keeps the trained weights (the
    combined figure of a resumed run is drawn from them)."""
    from .. import plots

    settings = toy_config(name, config.seed, config.grad, config.epochs)
    every = max(1, config.epochs // config.frames)
    frames: list[tuple[int, torch.Tensor, float]] = []

    def snapshot(epoch: int, net, record: dict) -> None:
        if epoch == 1 or epoch % every == 0:
            frames.append((epoch, net.parameter.detach().clone(), record["train_accuracy"]))

    result = run(settings, reporter, callback=snapshot)
    split = result.split
    X = torch.cat([split.train[0], split.test[0]]).numpy()
    y = torch.cat([split.train[1], split.test[1]]).numpy()
    acc = result.test["test_accuracy"]
    folder.write_with(
        f"{name}.gif",
        functools.partial(plots.animate_decision_boundary, result.net, frames, X, y, title=name),
    )
    fig = plots.plot_decision_boundary(
        result.net, X, y, f"{name}: {settings.hidden} hidden, test acc {acc:.3f}"
    )
    folder.write_with(f"{name}.png", plots.saver(fig, dpi=80))
    plots.plt.close(fig)
    # the best accuracy possible on this draw's test split, where it is known
    bayes = None
    if name in ("blobs", "blobs2"):
        correct = bayes_correct(name, settings.n_samples, settings.seed)
        bayes = float(correct[split.indices["test"]].mean())
    return {
        "summary": {
            "config": settings.to_dict(),
            **result.test,
            "bayes_test_accuracy": bayes,
            "train_accuracy": result.history.last["train_accuracy"],
            "wall_time_s": result.history.wall_time_s,
        },
        "weights": result.net.parameter.detach().tolist(),
    }


def run_toys(config: ToysConfig, folder: RunFolder, reporter: Reporter) -> dict:
    """Every set of ``config`` (one unit of work each); writes summary.json, summary.md,
    toys.png and each set's GIF and still."""
    from .. import plots
    from ..data import split_dataset
    from ..runs import build_net, load_data

    rows = [("dataset", "hidden | test acc | Bayes acc | train acc | wall time")]
    summary = {}
    panels = []
    for name in config.sets:
        record = folder.unit(name, functools.partial(_toy_unit, name, config, folder, reporter))
        entry = summary[name] = record["summary"]
        settings = RunConfig.from_dict(entry["config"])
        dataset = load_data(settings)
        split = split_dataset(dataset, settings.test_size, settings.val_size, settings.seed)
        net = build_net(settings, dataset.n_features, dataset.n_outputs)
        assert isinstance(net, MeshNet)  # a toy is a mesh
        with torch.no_grad():
            net.parameter.copy_(torch.tensor(record["weights"], dtype=net.parameter.dtype))
        X = torch.cat([split.train[0], split.test[0]]).numpy()
        y = torch.cat([split.train[1], split.test[1]]).numpy()
        acc, bayes = entry["test_accuracy"], entry["bayes_test_accuracy"]
        panels.append((net, X, y, f"{name} ({settings.hidden} hidden): {acc:.3f}"))
        rows.append(
            (
                name,
                f"{settings.hidden:6d} | {acc:8.4f} | "
                + (f"{bayes:9.4f}" if bayes is not None else f"{'-':>9}")
                + " | "
                f"{entry['train_accuracy']:9.4f} | "
                f"{entry['wall_time_s']:7.1f} s",
            )
        )
        reporter.print(f"{name}: test accuracy {acc:.4f} ({entry['wall_time_s']:.1f} s)")
    fig = plots.plot_decision_boundaries(panels)
    folder.write_with("toys.png", plots.saver(fig, dpi=72))
    plots.plt.close(fig)
    folder.write_json("summary.json", summary)
    table = format_table(rows)
    folder.write_text("summary.md", table + "\n")
    out = folder.out
    sets = [out / f"{name}.{kind}" for name in config.sets for kind in ("gif", "png")]
    folder.finish(*sets, folder.path(UNITS_FILE))
    reporter.print(table)
    return summary
