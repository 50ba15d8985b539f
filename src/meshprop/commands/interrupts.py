"""SIGINT and SIGTERM as requests to stop cleanly: ``meshprop train`` finishes the optimiser
step in progress, saves its training state and exits with 128 + the signal's number (130 for
SIGINT, 143 for SIGTERM) after one line saying how to resume.  A second signal stops at once
(every file is written atomically, so the folder stays consistent; the state saved last is
what ``--resume`` continues from).

A command whose state is saved as it goes (a sweep saves the results of every unit it
finishes) asks for ``at_once=True``: the first signal then raises :class:`RunInterrupted` where
the program is, the unit in progress is dropped and ``--resume`` runs it again."""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import threading
from collections.abc import Iterator
from types import FrameType

__all__ = ["RunInterrupted", "StopRequest", "stop_on_signals"]

SIGNALS = tuple(s for s in (signal.SIGINT, getattr(signal, "SIGTERM", None)) if s is not None)


class RunInterrupted(BaseException):
    """Raised by the first signal under ``stop_on_signals(at_once=True)`` (a BaseException,
    as KeyboardInterrupt, so that no ``except Exception`` swallows it)."""


class StopRequest:
    """Set by the first SIGINT/SIGTERM; ``bool(request)`` tells whether one came."""

    def __init__(self, at_once: bool = False) -> None:
        self.signum: int | None = None
        self.at_once = at_once

    def __bool__(self) -> bool:
        return self.signum is not None

    def __call__(self) -> bool:
        return self.signum is not None

    @property
    def exit_code(self) -> int:
        return 128 + int(self.signum or signal.SIGINT)

    @property
    def name(self) -> str:
        return signal.Signals(self.signum or signal.SIGINT).name

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if self.signum is not None:  # the second one: stop now
            print(f"{signal.Signals(signum).name} again: stopping at once", file=sys.stderr)
            sys.stderr.flush()
            os._exit(128 + signum)
        self.signum = signum
        if self.at_once:
            raise RunInterrupted(signum)


@contextlib.contextmanager
def stop_on_signals(enabled: bool = True, at_once: bool = False) -> Iterator[StopRequest]:
    """Within the block, SIGINT and SIGTERM set the returned :class:`StopRequest` instead of
    raising KeyboardInterrupt or terminating (only in the main thread, and when ``enabled``);
    with ``at_once`` the first one also raises :class:`RunInterrupted`.  The previous handlers
    are put back afterwards."""
    request = StopRequest(at_once)
    if not enabled or threading.current_thread() is not threading.main_thread():
        yield request
        return
    previous = {s: signal.signal(s, request._handle) for s in SIGNALS}
    try:
        yield request
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
