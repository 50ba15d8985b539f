"""The public API: ``import meshprop`` imports no torch; the core comes with its first name used
(``mp.MeshNet``), the subpackages only when used."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

import meshprop as mp

HEAVY = ("matplotlib", "sklearn", "mnist1d", "meshprop.diagram", "meshprop.data", "meshprop.bench")


def imported_after(code: str) -> set[str]:
    program = f"import json, sys\n{code}\nprint(json.dumps(sorted(sys.modules)))"
    done = subprocess.run(
        [sys.executable, "-c", program], capture_output=True, text=True, check=True
    )
    return set(json.loads(done.stdout.splitlines()[-1]))


@pytest.mark.subprocess
def test_import_meshprop_imports_nothing_heavy():
    assert "torch" not in imported_after("import meshprop")
    modules = imported_after("import meshprop\nmeshprop.MeshNet")
    assert "meshprop.mesh" in modules and "meshprop.engines.fop" in modules
    assert not {m for m in modules if m.split(".")[0] in HEAVY or m.startswith(HEAVY)}


@pytest.mark.subprocess
def test_subpackages_load_on_first_use():
    code = "import meshprop as mp\nmp.data.load_dataset('iris')\nmp.diagram.Diagram"
    modules = imported_after(code)
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
