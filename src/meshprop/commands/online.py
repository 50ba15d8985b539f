"""``meshprop online``: learn from a stream one element at a time (``mp.OnlineLearner``).

Tasks (``meshprop.data.tasks``; each scored on held-out data beside simple baselines):

- ``delayed-recall`` (``--delay D``): input a random ±1 bit per element, target the bit of D
  elements earlier.  Accuracy (sign(y) = target) on a fresh ``--test-ticks`` stream with frozen
  weights; baselines chance and majority class.
- ``copy`` (``--length K``, ``--delay D``): a pattern of K bits, D blanks, then K recall
  elements (a cue input) whose targets are the pattern.  Accuracy on the recall elements.
- ``adding`` (``--length L``): episodes of L (value, marker) pairs; target the sum of the two
  marked values at the last element.  MSE; baseline the training targets' mean.
- ``mackey-glass`` and a CSV series (``--data FILE.csv --column NAME``): predict the value
  ``--horizon H`` steps ahead from the last ``--window W`` values.  The series is split in
  time: the first (1 − ``--test-fraction``) of it (default 70 %) is the training part, streamed
  in order and cycled for as many elements as training takes; the rest is the test part,
  scored (NMSE) by one frozen run over the whole series.  Baselines: persistence (the last
  value) and a ridge AR(5) fitted on the training part.  A blank, NaN or non-number cell is
  refused with its row.

An option that does not apply to the task is refused before anything is written.  With
nothing but ``--task`` (and its length), a network and settings able to learn it are picked
and printed at the start with the task's description: for delayed recall, copy and adding a
learned delay line (``--topology chain``: ReLU features, then a line of identity neurons 1.5 ×
the task's span long whose links start at gain 1, every tap read by the output); for
prediction a full mesh whose input → output edges start at the ridge fit of the window
(``--start linear``) and learn on with a decaying rate (``--lr-decay``).  Methods: ``fop``
(RTRL: exact gradient through the whole past, memory flat), ``snap`` (SnAp-k, ``--order K``:
the sensitivities within K ticks of each edge, the outputs' in full), ``uoro`` (an unbiased
rank-one estimate, its signs seeded by ``--seed``), ``tbptt`` (truncated BPTT through the last
``--truncation`` elements, one optimizer step per element) and ``bptt`` (offline full BPTT on
independent sequences of ``--sequence-length`` elements from a zero state, one step per
sequence).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from ..data.tasks import TaskStream
from ..devices import require_device
from ..runs.folder import RunFolder
from ..runs.online import run_online
from ..runs.online_config import OnlineConfig
from ..runs.online_networks import DEFAULT_INIT_SCALE, build_net
from ..runs.online_outputs import summary_line, write_online_run
from ..runs.online_state import STATE_FILE
from ..runs.online_tasks import default_train_ticks, describe_network, make_task
from ..sequence import flush_denormals
from ..threads import DEFAULT_THREADS
from .checks import declare_outputs
from .interrupts import StopRequest
from .options import add_run_options, add_settings_options
from .runner import run_command

__all__ = [
    "DEFAULT_INIT_SCALE",
    "build_net",
    "check_data",
    "default_train_ticks",
    "flush_denormals",
    "register",
    "run_online",
]


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "online",
        help="online learning on a stream (RTRL by FOP, SnAp, UORO, truncated or full BPTT)",
        description=__doc__,
    )
    add_settings_options(p, OnlineConfig)
    add_run_options(p, out=None, threads=DEFAULT_THREADS)
    p.set_defaults(handler=handle)
    declare_outputs(p, out="dir")


def check_data(config: OnlineConfig) -> TaskStream:
    """The device and the task's streams, checked before anything is written (a missing or
    bad CSV file, a series too short for the split); returns the streams."""
    require_device(config.device)
    if config.data is not None and not Path(config.data).is_file():
        raise FileNotFoundError(f"no such file: {config.data}")
    assert config.train_ticks is not None
    return make_task(config, config.train_ticks)


def handle(args: argparse.Namespace) -> int:
    made: dict[str, Any] = {}

    def prepare(config: OnlineConfig) -> None:
        made["task"] = check_data(config)

    def work(config: OnlineConfig, folder: RunFolder, stop: StopRequest) -> int:
        def describe(task: TaskStream, train_ticks: int) -> None:
            print(task.description, flush=True)
            print(describe_network(config, task, train_ticks), flush=True)

        with flush_denormals():
            result, net = run_online(
                config,
                progress=not args.no_progress,
                folder=folder,
                stop_requested=stop,
                describe=describe,
                task=made.get("task"),
            )
        write_online_run(folder, config, result, net)
        shown = {
            k: v
            for k, v in result.metrics.items()
            if k.startswith("test_")
            or k in ("baselines", "ticks_per_second", "peak_memory_mib", "train_seconds")
        }
        print(summary_line(result.metrics))
        print(json.dumps(shown, indent=None))
        if stop:
            print(f"{stop.name} received after training: the run finished", file=sys.stderr)
            return stop.exit_code
        return 0

    return run_command(
        args, "online", OnlineConfig, work, prepare=prepare, state=STATE_FILE, at_once=False
    )
