"""One thread policy for everything meshprop runs: ``fit``, the CLI and the benchmarks.

Mesh networks are small matrices stepped many times; torch's default of one intra-op thread per
core spends more time waking and spinning threads than computing, and on a loaded machine its
OpenMP spin-waiting makes steps 10–80× slower (docs/performance.md).  So meshprop trains on
``DEFAULT_THREADS`` = 1 thread unless told otherwise; ``0`` means torch's own default.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch

__all__ = ["DEFAULT_THREADS", "check_threads", "thread_policy"]

#: intra-op threads used when the caller does not choose (0 would mean torch's default).
DEFAULT_THREADS = 1


def check_threads(threads: int | None, option: str = "threads") -> int:
    """Validate a thread count (``None`` → :data:`DEFAULT_THREADS`); ``option`` names the
    argument in the error (e.g. ``--threads``)."""
    if threads is None:
        return DEFAULT_THREADS
    if isinstance(threads, bool) or not isinstance(threads, int) or threads < 0:
        raise ValueError(f"{option} must be an integer >= 0 (0 = torch's default), got {threads!r}")
    return threads


@contextmanager
def thread_policy(threads: int | None = None, option: str = "threads") -> Iterator[int]:
    """Run the block with ``threads`` torch intra-op threads (``None``: the default policy,
    ``0``: leave torch's setting alone) and restore the previous count afterwards."""
    count = check_threads(threads, option)
    previous = torch.get_num_threads()
    if count:
        torch.set_num_threads(count)
    try:
        yield torch.get_num_threads()
    finally:
        torch.set_num_threads(previous)
