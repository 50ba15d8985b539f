"""The peak-memory probe: one benchmark step in a fresh process (run by
:func:`meshprop.bench.peak.measure_peak_bytes`).

    python -m meshprop.bench.probe POINT_JSON ENGINE [--threads N]

prints ``{"peak_bytes": ...}``: the extra resident memory of one step.  The probe runs a
warm-up step on the same network and batch with at most 3 ticks (loads the kernels, starts the
thread pool, fills lazy caches while allocating next to nothing the measured step could reuse),
frees the engines' cached work buffers, resets the kernel's resident-set high-water mark
(``echo 5 > /proc/self/clear_refs``), runs one step and reports ``VmHWM − VmRSS(before)``,
torch's allocations included (``tracemalloc`` cannot see them).  Linux only.
"""

from __future__ import annotations

import argparse
import dataclasses
import gc
import json
import sys
from collections.abc import Sequence

from ..engines import ENGINES
from ..threads import thread_policy
from .workloads import Point, step

__all__ = ["main", "peak_bytes"]


def _status(key: str) -> int:
    """A ``/proc/self/status`` field in bytes (``VmRSS``, ``VmHWM``)."""
    with open("/proc/self/status") as handle:
        for line in handle:
            if line.startswith(key + ":"):
                return int(line.split()[1]) * 1024
    raise OSError(f"/proc/self/status has no {key}")


def peak_bytes(point: Point, engine: str) -> int:
    """Extra resident memory of one step of ``engine`` on ``point``, measured in this process
    (which should be fresh: see the module docstring)."""
    small = dataclasses.replace(point, ticks=min(point.ticks, 3))
    step(engine, *small.build())
    net, x, labels = point.build()
    for each in ENGINES.values():
        release = getattr(each, "release", None)
        if release is not None:
            release()  # cached work buffers must count
    gc.collect()
    with open("/proc/self/clear_refs", "w") as handle:
        handle.write("5")
    before = _status("VmRSS")
    step(engine, net, x, labels)
    return max(0, _status("VmHWM") - before)  # the high-water mark may lag by a page


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m meshprop.bench.probe")
    parser.add_argument("point", help="the workload point as JSON (Point.to_dict)")
    parser.add_argument("engine", help="the gradient engine")
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads")
    args = parser.parse_args(argv)
    point = Point.from_dict(json.loads(args.point))
    with thread_policy(args.threads, "--threads"):
        peak = peak_bytes(point, args.engine)
    print(json.dumps({"peak_bytes": peak}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
