"""The resume guarantee, end to end: real ``meshprop train`` processes killed with SIGKILL at random
moments inside training (three kills for the two configurations, each a random part of an epoch
after a random epoch of ten: one kill may land after training now and then, three rarely all
do; seeded delays; the first run is killed twice in a row, its second process resuming what
the first left), each run resumed with ``--resume`` until it finishes (the last resume and the
uninterrupted runs in this process: only the killed runs need processes), and every resumed run
ends bit-identical to the uninterrupted one (weights by ``torch.equal``,
metrics.csv bytes, metrics.json, a verified run.json).  The experiment is
``benchmarks/kill_resume.py`` (more kills: see docs/runs.md)."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "kill_resume.py"


def load_script():
    spec = importlib.util.spec_from_file_location("kill_resume", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["kill_resume"] = module
    spec.loader.exec_module(module)
    return module


@pytest.mark.subprocess
@pytest.mark.slow
def test_runs_killed_at_random_moments_resume_bit_identical(tmp_path, seed):
    kill_resume = load_script()
    outcomes, _, problems = kill_resume.experiment(
        tmp_path, kills=3, runs=2, epochs=10, seed=seed, workers=1, in_process=True
    )
    assert problems == []
    assert sum(len(o.delays) for o in outcomes) == 3
    assert {o.name for o in outcomes} == {"early-stopping", "set"}
    # kills landed during training (a saved state, not the last one), not only around it
    final = {
        o.name: json.loads((tmp_path / f"reference-{o.name}" / "metrics.json").read_text())
        for o in outcomes
    }
    assert any(
        0 <= epoch < len(final[o.name]["history"]["epochs"])
        for o in outcomes
        for epoch in o.epochs_saved
    )
