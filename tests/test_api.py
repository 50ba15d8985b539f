"""The public API: ``import meshprop`` imports no torch; the core comes with its first name used
(``mp.MeshNet``), the subpackages only when used."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

import meshprop as mp

HEAVY = ("matplotlib", "sklearn", "mnist1d", "meshprop.diagram", "meshprop.data", "meshprop.bench")

#: one fresh interpreter for the import tests, one stage after another: the modules loaded
#: after ``import meshprop``, after its first core name, after a forward, a backward and a
#: gradient, after two subpackages' first use
STAGES = {
    "import": "import meshprop as mp",
    "core": "mp.MeshNet",
    "step": "import torch\nnet = mp.MeshNet(mp.Topology.mesh(2, 3, 1), ticks=2)\n"
    "net(torch.ones(4, 2)).sum().backward()\n"
    "mp.gradient(net, torch.ones(4, 2), torch.zeros(4, 1), loss='mse', method='bptt')",
    "subpackages": "mp.data.load_dataset('iris')\nmp.diagram.Diagram",
}


@pytest.fixture(scope="module")
def imported() -> dict[str, set[str]]:
    """``sys.modules`` after each of :data:`STAGES`, run in order in one new process."""
    program = "import json, sys\n" + "".join(
        f"{code}\nprint(json.dumps([{stage!r}, sorted(sys.modules)]))\n"
        for stage, code in STAGES.items()
    )
    done = subprocess.run(
        [sys.executable, "-c", program], capture_output=True, text=True, check=True
    )
    lines = [json.loads(line) for line in done.stdout.splitlines() if line.startswith('["')]
    assert [stage for stage, _ in lines] == list(STAGES)
    return {stage: set(modules) for stage, modules in lines}


@pytest.mark.subprocess
def test_import_meshprop_imports_nothing_heavy(imported):
    assert "torch" not in imported["import"]
    modules = imported["core"]
    assert "meshprop.mesh" in modules and "meshprop.engines.fop" in modules
    assert not {m for m in modules if m.split(".")[0] in HEAVY or m.startswith(HEAVY)}


@pytest.mark.subprocess
def test_a_step_without_torch_compile_does_not_load_its_compiler(imported):
    """torch.compile's hooks (meshprop.compiling) load with torch._dynamo, about 1.3 s, only
    when a model is compiled."""
    assert "meshprop.engines.guard" in imported["step"]
    assert not {"torch._dynamo", "meshprop.compiling"} & imported["step"]


@pytest.mark.subprocess
def test_subpackages_load_on_first_use(imported):
    modules = imported["subpackages"]
    assert {"meshprop.data", "sklearn", "meshprop.diagram"} <= modules
    assert "meshprop.bench" not in modules
    assert mp.bench.WORKLOADS["tiny"]()[0].workload == "tiny"


def test_the_core_names_are_exported():
    for name in (
        "Topology",
        "MeshNet",
        "gradient",
        "GRADIENT_METHODS",
        "fit",
        "evaluate",
        "EarlyStopping",
        "History",
        "MemoryLimitError",
        "memory_limit",
        "set_memory_limit",
        "get_memory_limit",
        "save_checkpoint",
        "load_checkpoint",
        "get_engine",
        "register_engine",
        "GradientEngine",
        "ACTIVATIONS",
        "LOSSES",
    ):
        assert name in mp.__all__ and getattr(mp, name) is not None, name
    for name in ("data", "diagram", "layered", "bench"):
        assert name in mp.__all__ and name in dir(mp)
        assert getattr(mp, name).__name__ == f"meshprop.{name}"
    assert issubclass(mp.MemoryLimitError, MemoryError)


def test_unknown_attributes_raise_attribute_error():
    with pytest.raises(AttributeError, match="has no attribute 'no_such_thing'"):
        mp.no_such_thing  # noqa: B018
