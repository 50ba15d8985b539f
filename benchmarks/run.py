"""Run the benchmark suite from plain Python: ``python benchmarks/run.py [workload ...]``.

Same workloads and measurements as ``meshprop bench`` (see ``meshprop.bench``); writes the JSON
rows to ``bench.json`` (or ``--output``) and prints the table.
"""

from __future__ import annotations

import sys

from meshprop.cli import main

if __name__ == "__main__":
    args = sys.argv[1:]
    workloads = [a for a in args if not a.startswith("-")]
    options = [a for a in args if a.startswith("-")]
    command = ["bench", *options]
    if workloads:
        command += ["--workload", *workloads]
    if not any(o.startswith("--output") for o in options):
        command += ["--output", "bench.json"]
    sys.exit(main(command))
