"""``meshprop train``: train a mesh neural network on a built-in dataset or a CSV file.

Its options are generated from :class:`~meshprop.runs.RunConfig` (see
:mod:`meshprop.commands.options`); ``--config FILE`` supplies defaults that typed flags
override, and the resolved configuration is saved as ``config.json`` in the run folder.

The run folder is consistent at every instant (:mod:`meshprop.runs.folder`); the training
state is saved every ``--checkpoint-every`` epochs and ``--resume`` continues from it,
bit-identical to a run never interrupted; SIGINT/SIGTERM save and exit 130/143
(:mod:`.interrupts`).  A folder holding another run is refused unless ``--resume`` or
``--overwrite`` is given.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import shlex
import sys
import time
from pathlib import Path
from typing import Any

from .. import distributed
from ..devices import resumed_device
from ..reporting import Reporter, format_table
from ..runs import RunConfig, describe_model, run, summary_rows, write_run
from ..runs.config import load_config_file
from ..runs.folder import (
    MANIFEST,
    STATE_FILE,
    RunFolder,
    clear_run_folder,
    new_run_id,
    read_manifest,
    write_manifest,
)
from ..runs.logs import PROVENANCE_KEY, EpochLog, describe_provenance, provenance
from ..runs.preflight import check_run
from ..threads import DEFAULT_THREADS, thread_policy
from ..training import TrainingCheckpoint, TrainingInterruptedError
from .checks import declare_outputs, declare_ranges
from .interrupts import stop_on_signals
from .options import (
    SHARED_OPTIONS,
    add_config_options,
    add_threads_option,
    flag,
    resolve_config,
    typed_settings,
)


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "train",
        help="train a mesh neural network and write metrics, checkpoint and plots",
        description="Train a mesh neural network. Without options: the moons dataset, a full "
        "mesh of 5 hidden neurons, 60 epochs (a few seconds). Writes config.json, metrics.json, "
        "checkpoint/ (safetensors + JSON) and PNG plots into --out.",
    )
    p.add_argument(
        "--config",
        dest="config_file",
        default=None,
        metavar="FILE",
        help=SHARED_OPTIONS["--config"],
    )
    add_config_options(p)
    out = p.add_argument_group("output")
    out.add_argument(
        "--out",
        default="runs/train",
        metavar="DIR",
        help=SHARED_OPTIONS["--out"] + " (default: runs/train)",
    )
    out.add_argument("--no-progress", action="store_true", help=SHARED_OPTIONS["--no-progress"])
    out.add_argument(
        "--tensorboard",
        action="store_true",
        help="also log the per-epoch metrics to TensorBoard in DIR/tensorboard (needs the "
        "tensorboard package: pip install 'meshprop[tensorboard]'); DIR/metrics.csv is always "
        "written",
    )
    add_threads_option(out, DEFAULT_THREADS)
    resume = p.add_argument_group("checkpoints and resuming")
    resume.add_argument("--resume", action="store_true", help=SHARED_OPTIONS["--resume"])
    resume.add_argument("--overwrite", action="store_true", help=SHARED_OPTIONS["--overwrite"])
    resume.add_argument(
        "--checkpoint-every",
        type=int,
        default=1,
        metavar="N",
        help="save the whole training state to DIR/training-state.pt every N epochs (0: only "
        "at the end and when interrupted) (default: 1)",
    )
    p.set_defaults(handler=handle)
    declare_outputs(p, out="dir")
    declare_ranges(p, checkpoint_every=">= 0")


def resumed_config(args: argparse.Namespace, config: RunConfig, out: Path) -> tuple[RunConfig, Any]:
    """The configuration and provenance of the run in ``out`` that ``--resume`` continues
    (``config`` and None when it holds none yet); the settings typed (flags, ``--config``
    file) must equal the saved ones."""
    path = out / "config.json"
    if not path.is_file():
        return config, None
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
        saved = RunConfig.from_dict(document)
    except (json.JSONDecodeError, ValueError, TypeError) as error:
        reason = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise ValueError(
            f"--resume: {path} is not a readable run configuration ({reason})"
        ) from None
    given = set(typed_settings(args))
    if getattr(args, "config_file", None) is not None:
        given |= set(load_config_file(args.config_file))
    differ = [n for n in sorted(given) if n in document and getattr(config, n) != getattr(saved, n)]
    if differ:
        shown = ", ".join(
            f"{flag(n)} {getattr(config, n)!r} (the run: {getattr(saved, n)!r})" for n in differ
        )
        raise ValueError(
            f"--resume: options differ from the run in {out}: {shown}; give the same values, "
            "or leave them out to take the run's"
        )
    return saved, document.get(PROVENANCE_KEY)


def start_run_folder(out: Path, mode: str, config: RunConfig, info: dict[str, Any]) -> str:
    """Mark the run in ``out`` as in progress (``run.json``, incomplete) and write its
    ``config.json``; ``--overwrite`` first removes the previous run.  Returns the run's id
    (kept by a resumed run)."""
    run_id = None
    if mode == "resume" and (out / MANIFEST).is_file():
        try:
            run_id = read_manifest(out)["run_id"]
        except (OSError, ValueError):
            run_id = None
    if mode == "overwrite":
        clear_run_folder(out)
    out.mkdir(parents=True, exist_ok=True)
    run_id = run_id or new_run_id()
    write_manifest(out, run_id, complete=False)
    Reporter().write_json(out / "config.json", {**config.to_dict(), PROVENANCE_KEY: info})
    return run_id


def discard_unstarted(out: Path, existed: bool) -> None:
    """After an error before the run saved any training state (bad data, a diverged first
    epoch...), remove what :func:`start_run_folder` wrote, so the same command can be
    repeated; a folder this run created goes too when empty."""
    if (out / STATE_FILE).exists():
        return
    clear_run_folder(out)
    if not existed and out.is_dir() and not any(out.iterdir()):
        out.rmdir()


def resumed(history: Any, log: EpochLog, reporter: Reporter, config: RunConfig) -> None:
    """On resume: the per-epoch log continues from the saved epochs; one line says where."""
    log.restore(history)
    reporter.print(f"resuming after epoch {len(history)} of {config.epochs}")


def handle(args: argparse.Namespace) -> int:
    started = time.perf_counter()  # the command's wall time, reported in its summary
    config = resolve_config(args)
    out = Path(args.out)
    # before any work: a folder of another run (or of another command) is refused
    mode = RunFolder.check(out, "train", resume=args.resume, overwrite=args.overwrite).mode
    data_parallel = int(os.environ.get("WORLD_SIZE", "1")) > 1
    if data_parallel and args.resume:
        raise ValueError(
            "--resume: data-parallel runs (torchrun) save no training state; resume in one "
            "process or start again"
        )
    existed = out.exists()
    saved_info = None
    if mode == "resume":
        config, saved_info = resumed_config(args, config, out)
        device, note = resumed_device(config.device, "device" in typed_settings(args))
        if note is not None:
            config = dataclasses.replace(config, device=device)
            print(f"meshprop train: {note}", file=sys.stderr)
    check_run(config, args.out)  # memory of the network, disk of the run folder: before work
    with thread_policy(args.threads, "--threads"), stop_on_signals(not data_parallel) as stop:
        # under torchrun (WORLD_SIZE > 1): join the process group; only rank 0 prints and writes
        parallel = distributed.from_environment()
        try:
            main = parallel is None or parallel.is_main
            reporter = Reporter(enabled=main, progress=not args.no_progress)
            if parallel is not None:
                reporter.print(
                    f"data-parallel: {parallel.world_size} processes ({parallel.backend}), "
                    f"each on its shard of every batch of {config.batch_size}; no training "
                    "state is saved (--resume needs one process)"
                )
            info = saved_info if saved_info is not None else provenance(config.seed)
            reporter.print(describe_provenance(info))
            run_id = start_run_folder(out, mode, config, info) if main else None
            log = EpochLog(args.out, tensorboard=args.tensorboard, reporter=reporter)
            checkpoint = None
            if parallel is None:
                checkpoint = TrainingCheckpoint(
                    out / STATE_FILE,
                    every=args.checkpoint_every,
                    resume=mode == "resume",
                    stop_requested=stop,
                    restored=lambda history: resumed(history, log, reporter, config),
                )
            try:
                result = run(
                    config, reporter, callback=log, parallel=parallel, checkpoint=checkpoint
                )
            except Exception as error:
                if not isinstance(error, TrainingInterruptedError):
                    if main:  # failed before its first saved state: leave no run behind
                        discard_unstarted(out, existed)
                    raise
                interrupted = error
                print(
                    f"interrupted at epoch {interrupted.epoch} step {interrupted.step}; "
                    f"resume with: meshprop train --out {shlex.quote(args.out)} --resume",
                    file=sys.stderr,
                )
                return stop.exit_code
            finally:
                log.close()
        finally:
            if parallel is not None:
                distributed.shutdown()
        reporter.print(describe_model(config, result.net))
        paths = write_run(result, args.out, reporter, info, run_id)
    reporter.print(format_table(summary_rows(result, time.perf_counter() - started)))
    reporter.print(
        f"wrote {len(paths)} files to {args.out}: "
        + ", ".join(p.name if p.name != "model.json" else "checkpoint/" for p in paths)
    )
    if stop:
        print(f"{stop.name} received after training: the run finished", file=sys.stderr)
        return stop.exit_code
    return 0
