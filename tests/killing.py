"""Kill a real ``meshprop`` process once it has saved some state (SIGKILL: no handler runs),
for the tests that resume it.  stdout and stderr go to files, never to an unread pipe.

The process is this test process forked (``os.fork``: the command runs in a copy of a warm
interpreter, so each test saves the 4–5 s of CPU a new interpreter spends importing torch,
torch._dynamo and scikit-learn), or with ``fresh=True`` a new ``python -m meshprop``.  Either
is a separate process that the kernel kills with SIGKILL, mid-write if it happens to be
writing; a fresh interpreter is also what tests/test_kill_resume.py (``meshprop train``) and
tests/test_online_resume.py start.

A forked child must run one thread only: it inherits this process's OpenMP state without its
threads, and its first parallel region with more than one thread waits for them forever
(measured: ``reproduce iris --threads 2`` forked after a two-thread torch product never saved a
unit; with one thread, six runs out of six were killed as planned).  The commands run one
torch thread unless told otherwise (``--threads`` defaults to 1; the xdist workers run one
torch and one BLAS thread, tests/conftest.py), :func:`kill_when` refuses to fork a command
given a thread option other than 1, and a command that starts threads of its own (``reproduce
fashion-mnist``'s autoencoder, ``--cae-threads 2``) is given ``fresh=True``.  The child never
returns into pytest: it ends by ``os._exit``.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

SOURCE = str(Path(__file__).resolve().parents[1] / "src")


def environment() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = SOURCE + os.pathsep + env.get("PYTHONPATH", "")
    env["OMP_NUM_THREADS"] = "1"
    return env


def _run_in_child(arguments: list[str], log: Path) -> None:
    """The forked child: ``meshprop ARGUMENTS`` with stdout and stderr in ``log``; never
    returns (``os._exit`` with the command's exit status)."""
    code = 1
    try:
        sink = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        os.dup2(sink, 1)
        os.dup2(sink, 2)
        sys.stdout = open(1, "w", buffering=1, closefd=False)  # noqa: SIM115
        sys.stderr = open(2, "w", buffering=1, closefd=False)  # noqa: SIM115
        signal.signal(signal.SIGINT, signal.default_int_handler)
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        from meshprop.cli import main

        code = int(main(arguments) or 0)
    except SystemExit as stop:
        code = stop.code if isinstance(stop.code, int) else 1
    except BaseException:
        traceback.print_exc()
    finally:
        try:
            sys.stdout.flush()
            sys.stderr.flush()
        finally:
            os._exit(code)


@dataclass
class Child:
    """A started process: its pid, and its poll (None while it runs, else its exit status, −N
    when signal N ended it)."""

    pid: int
    poll: Callable[[], int | None]


def _start(arguments: list[str], log: Path, fresh: bool) -> Child:
    if fresh:
        with open(log, "wb") as sink:
            process = subprocess.Popen(
                [sys.executable, "-m", "meshprop", *arguments],
                env=environment(),
                stdout=sink,
                stderr=subprocess.STDOUT,
            )
        return Child(process.pid, process.poll)
    sys.stdout.flush()
    sys.stderr.flush()
    pid = os.fork()
    if pid == 0:
        _run_in_child(arguments, log)
    status: list[int] = []

    def poll() -> int | None:
        if not status:
            done, code = os.waitpid(pid, os.WNOHANG)
            if done == 0:
                return None
            status.append(os.waitstatus_to_exitcode(code))
        return status[0]

    return Child(pid, poll)


def kill_when(
    arguments: list[str],
    ready: Callable[[], bool],
    log: Path,
    timeout: float = 120.0,
    fresh: bool = False,
) -> int:
    """Start ``meshprop ARGUMENTS`` (forked, or a new interpreter with ``fresh``), SIGKILL it
    as soon as ``ready()`` holds (polled every 10 ms); returns its exit status (−9 when
    killed; its own status if it ended first)."""
    if not fresh:
        for i, word in enumerate(arguments[:-1]):
            if word.endswith("threads") and arguments[i + 1] != "1":
                raise ValueError(f"{word} {arguments[i + 1]}: a forked command runs one thread")
    child = _start(arguments, log, fresh)
    pid, poll = child.pid, child.poll
    deadline = time.monotonic() + timeout
    try:
        while poll() is None and time.monotonic() < deadline:
            if ready():
                os.kill(pid, signal.SIGKILL)
                break
            time.sleep(0.01)
        while poll() is None and time.monotonic() < deadline + timeout:
            time.sleep(0.01)
        status = poll()
        assert status is not None, f"meshprop {' '.join(arguments)} did not end"
        return status
    finally:
        if poll() is None:
            os.kill(pid, signal.SIGKILL)
            while poll() is None:
                time.sleep(0.01)


def signal_this_process_when(
    ready: Callable[[], bool], signum: int, timeout: float = 120.0
) -> threading.Thread:
    """Send ``signum`` to this process as soon as ``ready()`` holds (a watcher thread polling
    every 5 ms), for the tests that interrupt a command running in the test process; no signal
    when ``ready()`` does not hold within ``timeout`` seconds (the command then ends unstopped
    and the test's exit-status check fails).  Returns the started thread."""

    def watch() -> None:
        deadline = time.monotonic() + timeout
        while not ready():
            if time.monotonic() > deadline:
                return
            time.sleep(0.005)
        os.kill(os.getpid(), signum)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    return watcher
