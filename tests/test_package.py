"""The project as users get it: a built wheel (LICENSE, py.typed, the `meshprop` entry point,
the version from pyproject.toml) installed non-editable and run from outside the source tree."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

import pytest

# every test builds or runs the wheel in other processes; one worker builds it once for all
pytestmark = pytest.mark.subprocess  # one worker builds the wheel: tests/conftest.py

ROOT = Path(__file__).resolve().parents[1]


def _project_version() -> str:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    """A wheel built from a copy of the project (no build folders left in the checkout), offline:
    the build backend of the running environment (setuptools) instead of an isolated one."""
    work = tmp_path_factory.mktemp("build")
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        shutil.copy(ROOT / name, work / name)
    shutil.copytree(
        ROOT / "src", work / "src", ignore=shutil.ignore_patterns("*.egg-info", "__pycache__")
    )
    dist = work / "dist"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "--quiet",
            "--wheel-dir",
            str(dist),
            str(work),
        ],
        check=True,
        capture_output=True,
        text=True,
        timeout=300,
    )
    (built,) = dist.glob("meshprop-*.whl")
    return built


def test_wheel_holds_the_package_license_and_typing_marker(wheel):
    names = zipfile.ZipFile(wheel).namelist()
    assert wheel.name.startswith(f"meshprop-{_project_version()}-")
    assert "meshprop/py.typed" in names
    assert "meshprop/commands/export.py" in names and "meshprop/sklearn.py" in names
    assert any(n.endswith(".dist-info/licenses/LICENSE") for n in names)
    assert not any(n.startswith("tests/") for n in names)
    metadata = (
        zipfile.ZipFile(wheel)
        .read(next(n for n in names if n.endswith(".dist-info/METADATA")))
        .decode()
    )
    for extra in ("onnx", "tensorboard", "dev"):
        assert f"Provides-Extra: {extra}" in metadata
    entry_points = (
        zipfile.ZipFile(wheel)
        .read(next(n for n in names if n.endswith(".dist-info/entry_points.txt")))
        .decode()
    )
    assert "meshprop = meshprop.cli:main" in entry_points


def test_non_editable_install_runs_outside_the_source_tree(wheel, tmp_path):
    """The wheel installed into a fresh folder (its dependencies from this environment), used from
    a directory that is not the checkout: the installed copy is imported, not src/."""
    target = tmp_path / "site"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--no-deps",
            "--no-index",
            "--quiet",
            "--target",
            str(target),
            str(wheel),
        ],
        check=True,
        capture_output=True,
        text=True,
        timeout=300,
    )
    env = {**os.environ, "PYTHONPATH": str(target)}
    code = (
        "import meshprop, pathlib; "
        "print(meshprop.__version__); print(pathlib.Path(meshprop.__file__).parent)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    ).stdout.split("\n")
    assert out[0] == _project_version()
    assert Path(out[1]) == target / "meshprop"
    assert (Path(out[1]) / "py.typed").is_file()
    version = subprocess.run(
        [sys.executable, "-m", "meshprop", "--version"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    )
    assert version.stdout.strip() == f"meshprop {_project_version()}"
    script = target / "bin" / "meshprop"
    assert script.is_file()
    help_text = subprocess.run(
        [sys.executable, str(script), "--help"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    ).stdout
    assert "export" in help_text and "train" in help_text
