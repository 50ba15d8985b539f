"""Kill a real ``meshprop`` process once it has saved some state (SIGKILL: no handler runs),
for the tests that resume it.  stdout and stderr go to files, never to an unread pipe."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

SOURCE = str(Path(__file__).resolve().parents[1] / "src")


def environment() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = SOURCE + os.pathsep + env.get("PYTHONPATH", "")
    env["OMP_NUM_THREADS"] = "1"
    return env


def kill_when(
    arguments: list[str], ready: Callable[[], bool], log: Path, timeout: float = 120.0
) -> int:
    """Start ``meshprop ARGUMENTS``, SIGKILL it as soon as ``ready()`` holds (polled every
    10 ms); returns its exit status (−9 when killed; its own status if it ended first)."""
    with open(log, "wb") as sink:
        process = subprocess.Popen(
            [sys.executable, "-m", "meshprop", *arguments],
            env=environment(),
            stdout=sink,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + timeout
        try:
            while process.poll() is None and time.monotonic() < deadline:
                if ready():
                    process.send_signal(signal.SIGKILL)
                    break
                time.sleep(0.01)
            return process.wait(timeout=timeout)
        finally:
            if process.poll() is None:
                process.kill()
                process.wait()
