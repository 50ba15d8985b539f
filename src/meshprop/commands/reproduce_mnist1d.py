"""``meshprop reproduce mnist1d``: sparse meshes and MLPs trained by FOP on MNIST-1D, beside
the baselines its authors publish (see :mod:`meshprop.experiment.mnist1d`).

Writes DIR/results.json (the reproductions' schema, the baselines included as configurations),
DIR/details.json, DIR/results.md and DIR/accuracies.png.  Every run (of a mesh, an MLP or a
baseline) is a unit of work saved in DIR/units.json as soon as it is done: ``--resume`` after
an interruption (even SIGKILL) trains only the runs not done and writes the same results.
"""

from __future__ import annotations

import argparse
import dataclasses
import time
from dataclasses import dataclass

from ..data.builtin import MNIST1D_SAMPLES
from ..experiment.mnist1d import BASELINES, PROTOCOL
from ..reporting import Reporter
from ..runs.config import setting
from ..runs.folder import UNITS_FILE, RunFolder
from ..runs.settings import at_least_one, check_fields
from .checks import declare_outputs
from .interrupts import StopRequest
from .options import add_run_options, add_settings_options
from .runner import run_command

__all__ = ["Mnist1dConfig", "add_parser", "run_mnist1d"]


@dataclass
class Mnist1dConfig:
    """The settings of ``meshprop reproduce mnist1d`` (saved as its ``config.json``)."""

    runs: int = setting(
        10, "runs per configuration", group="experiment", check=(">= 1", at_least_one)
    )
    epochs: int = setting(
        PROTOCOL.epochs, "MNN/MLP epochs", group="experiment", check=(">= 1", at_least_one)
    )
    grad: str = setting(PROTOCOL.grad, "engine (auto: exact FOP)", group="experiment")
    compare: str = setting(
        "autograd", "engine that trains run 0 again ('none' to skip)", group="experiment"
    )
    samples: int = setting(
        MNIST1D_SAMPLES,
        "MNIST-1D sequences generated, 80 % for training and 20 % for the test (5000: the "
        "published set; fewer make a quick check, not comparable with the published "
        "accuracies)",
        group="experiment",
        check=(">= 10", lambda v: v >= 10),
    )
    baselines: list[str] = setting(  # noqa: RUF009 (setting is dataclasses.field)
        list(BASELINES),
        "baselines to run (none with an empty list)",
        group="experiment",
        metavar="NAME",
        choices=lambda: tuple(BASELINES),
        nargs="*",
    )

    def __post_init__(self) -> None:
        check_fields(self)


def add_parser(sub: argparse._SubParsersAction) -> None:
    """Add ``mnist1d`` to ``meshprop reproduce``'s experiments."""
    p = sub.add_parser(
        "mnist1d",
        help="MNIST-1D: MNN and MLP by FOP against logistic regression, MLP, CNN, GRU",
        description="MNIST-1D (the mnist1d package's local generator): mnn-80, mnn-50 (50 "
        "hidden, 2 ticks, 80 % / 50 % of the allowed edges removed) and mlp-16, mlp-32 "
        f"trained {PROTOCOL.epochs} epochs with Adam by --grad, one seed per run, and the "
        "published baselines (scikit-learn logistic regression and MLP, torch CNN and GRU) "
        "measured side by side. --resume continues an interrupted run from the runs it had "
        "finished.",
    )
    add_settings_options(p, Mnist1dConfig)
    add_run_options(p, out="runs/reproduce-mnist1d")
    p.set_defaults(handler=handle)
    declare_outputs(p, out="dir")


def run_mnist1d(
    config: Mnist1dConfig, folder: RunFolder, reporter: Reporter, threads: int | None
) -> None:
    """The experiment into ``folder`` (see the module docstring)."""
    from ..experiment import mnist1d
    from ..experiment.compare import compare, results_table, write_outputs
    from ..experiment.fashion import plot_accuracies, protocol_dict, verdicts

    start = time.perf_counter()
    data = mnist1d.load(config.samples)
    protocol = dataclasses.replace(
        mnist1d.PROTOCOL,
        epochs=config.epochs,
        grad=config.grad,
        compare_grad=None if config.compare == "none" else config.compare,
    )
    results = compare(
        mnist1d.SPECS, data, config.runs, protocol, reporter, threads, memo=folder.unit
    )
    baselines = mnist1d.run_baselines(
        data, config.runs, reporter, tuple(config.baselines), memo=folder.unit
    )
    everything = results + baselines
    wall = time.perf_counter() - start
    lines = verdicts(results, mnist1d.PAIRS)
    table = results_table(results, protocol.compare_grad)
    base = ["| baseline | params | test accuracy (mean ± std) | runs | time / run | published |"]
    base.append("| --- | --- | --- | --- | --- | --- |")
    for r in baselines:
        base.append(
            f"| {r.name} | {r.params} | {r.mean:.4f} ± {r.std:.4f} | {len(r.accuracies)} | "
            f"{sum(r.seconds) / len(r.seconds):.1f} s | {mnist1d.PUBLISHED[r.name]:.2f} |"
        )
    write_outputs(
        folder.out,
        reporter,
        everything,
        {
            "protocol": protocol_dict(protocol),
            "torch_baselines": dataclasses.asdict(mnist1d.TORCH_BUDGET),
            "published": mnist1d.PUBLISHED,
            "verdicts": lines,
            "wall_time_s": wall,
        },
        table + "\n\n" + "\n".join(base),
        lambda: plot_accuracies(everything, f"MNIST-1D, {config.runs} runs each"),
        lines,
        wall,
    )
    out = folder.out
    names = ("results.json", "details.json", "results.md", "accuracies.png", UNITS_FILE)
    folder.finish(*(out / name for name in names))
    reporter.print(f"wrote {out / 'results.json'} ({wall:.0f} s)")


def handle(args: argparse.Namespace) -> int:
    reporter = Reporter(progress=not args.no_progress)

    def work(config: Mnist1dConfig, folder: RunFolder, stop: StopRequest) -> int:
        run_mnist1d(config, folder, reporter, args.threads)
        return 0

    return run_command(args, "reproduce mnist1d", Mnist1dConfig, work, state=UNITS_FILE)
