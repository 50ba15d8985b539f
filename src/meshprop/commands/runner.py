"""The one way a command runs an experiment into its run folder.

A command declares its configuration as a dataclass (:mod:`meshprop.runs.settings`), its
options with :func:`~meshprop.commands.options.add_settings_options` and
:func:`~meshprop.commands.options.add_run_options`, and hands the work to :func:`run_command`:

1. the configuration is resolved (defaults < ``--config`` file < flags) and checked, the run
   folder is checked (:meth:`RunFolder.check`), and on ``--resume`` the saved configuration
   is taken (typed options must agree with it); the command's own ``prepare`` then checks its
   input files — all before anything is written into ``--out``;
2. the folder is started (``run.json`` unfinished, ``config.json``);
3. ``work(config, folder, stop)`` runs under :func:`~meshprop.commands.interrupts.
   stop_on_signals`: SIGINT/SIGTERM end it with one line saying how to resume and exit status
   130/143; an error before any state was saved leaves no run behind.
"""

from __future__ import annotations

import argparse
import dataclasses
import shlex
import sys
from collections.abc import Callable
from typing import Any, TypeVar

from ..runs.folder import RunFolder
from ..runs.logs import PROVENANCE_KEY, provenance
from ..runs.settings import load_settings_file
from ..threads import thread_policy
from ..training import TrainingInterruptedError
from .interrupts import RunInterrupted, StopRequest, stop_on_signals
from .options import resolve_settings, settings_flag, typed_settings_of

__all__ = ["resumed_settings", "run_command"]

C = TypeVar("C")


def resumed_settings(
    cls: type[C],
    args: argparse.Namespace,
    config: C | None,
    folder: RunFolder,
    error: ValueError | None = None,
    merge: Callable[[list[dict[str, Any]]], dict[str, Any]] | None = None,
) -> C:
    """The configuration of the run ``--resume`` continues (``config`` when the folder holds
    none yet); the settings typed (flags, ``--config`` file) must equal the saved ones.
    ``config`` is None when the settings typed make no configuration by themselves (``error``
    says why): they are then taken over the saved ones (a typed option that only applies with
    a saved one)."""
    document = folder.saved_config()
    if document is None:
        if config is None:
            assert error is not None
            raise error
        return config
    names = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    values = {k: v for k, v in document.items() if k in names}
    try:
        saved = cls(**values)
    except (ValueError, TypeError) as problem:
        reason = str(problem).splitlines()[0] if str(problem) else type(problem).__name__
        raise ValueError(
            f"--resume: {folder.path('config.json')} is not a readable configuration ({reason})"
        ) from None
    if config is None:
        try:
            config = resolve_settings(cls, args, merge, base=values)
        except ValueError:
            assert error is not None
            raise error from None
    given = set(typed_settings_of(cls, args))
    if getattr(args, "config_file", None) is not None:
        given |= set(load_settings_file(cls, args.config_file))
    fields = {f.name: f for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    free = {n for n in given if fields[n].metadata.get("free_on_resume")}
    if free:  # the new values of these are taken
        saved = cls(**{**values, **{n: getattr(config, n) for n in free}})
    differ = [n for n in sorted(given - free) if getattr(config, n) != getattr(saved, n)]
    if differ:
        shown = ", ".join(
            f"{settings_flag(cls, n)} {getattr(config, n)!r} (the run: {getattr(saved, n)!r})"
            for n in differ
        )
        raise ValueError(
            f"--resume: options differ from the run in {folder.out}: {shown}; give the same "
            "values, or leave them out to take the run's"
        )
    return saved


def run_command(
    args: argparse.Namespace,
    command: str,
    cls: type[C],
    work: Callable[[C, RunFolder, StopRequest], int],
    *,
    prepare: Callable[[C], Any] | None = None,
    state: str | None = None,
    at_once: bool = True,
    merge: Callable[[list[dict[str, Any]]], dict[str, Any]] | None = None,
) -> int:
    """Run ``work(config, folder, stop)`` for ``meshprop COMMAND`` (see the module docstring).

    ``prepare(config)``: the command's checks of its inputs (files, data), before the folder
    is touched; ``state``: the file of the saved state (a run that failed before writing it is
    discarded); ``at_once``: the first signal interrupts at once (the state is saved as the run
    goes) instead of being polled by ``work``."""
    typed: C | None = None
    error: ValueError | None = None
    try:
        typed = resolve_settings(cls, args, merge)
    except ValueError as problem:
        if not args.resume:
            raise
        error = problem  # the options typed may apply only with the run's saved ones
    folder = RunFolder.check(args.out, command, resume=args.resume, overwrite=args.overwrite)
    if folder.resuming:
        config = resumed_settings(cls, args, typed, folder, error, merge)
    else:
        assert typed is not None
        config = typed
    if prepare is not None:
        prepare(config)
    document = dataclasses.asdict(config)  # type: ignore[call-overload]
    seed = document.get("seed", 0)
    # a configuration that sets the thread count (a benchmark measures at it) is obeyed
    threads = getattr(config, "threads", None)
    if threads is None:
        threads = getattr(args, "threads", 1)
    with thread_policy(threads, "--threads"):
        folder.start({**document, PROVENANCE_KEY: provenance(seed)})
        with stop_on_signals(at_once=at_once) as stop:
            try:
                return work(config, folder, stop)
            except (RunInterrupted, TrainingInterruptedError):
                print(
                    f"{stop.name}: stopped; the state saved last is in {folder.out}; resume "
                    f"with: meshprop {command} --out {shlex.quote(str(folder.out))} --resume",
                    file=sys.stderr,
                )
                return stop.exit_code
            except Exception:
                folder.discard_unstarted(state)
                raise
