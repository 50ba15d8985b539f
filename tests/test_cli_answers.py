"""The ``meshprop`` command answers fast and says how to fix what the user typed.

``--version`` and ``--help`` import no torch (checked in a fresh interpreter through
``sys.modules``, not by timing); ``dir(meshprop)`` shows public names only; a run folder given
where a checkpoint is expected gets "did you mean RUN/checkpoint?"; ``save_checkpoint`` refuses
an existing file or non-empty folder in words and leaves nothing behind when it fails;
``meshprop train`` reports the whole command's wall time.
"""

from __future__ import annotations

import contextlib
import io
import json
import subprocess
import sys
from pathlib import Path

import pytest

import meshprop as mp
from meshprop.cli import COMMAND_HELP, build_parser, main


def _modules_after(code: str) -> set[str]:
    result = subprocess.run(
        [sys.executable, "-c", code + "\nimport sys; print(' '.join(sorted(sys.modules)))"],
        capture_output=True,
        text=True,
        check=True,
    )
    return set(result.stdout.split())


@pytest.mark.subprocess
@pytest.mark.parametrize("argument", ["--version", "--help"])
def test_version_and_help_import_no_torch(argument):
    code = (
        "import contextlib, io\nfrom meshprop.cli import main\n"
        "with contextlib.redirect_stdout(io.StringIO()), contextlib.suppress(SystemExit):\n"
        f"    main([{argument!r}])"
    )
    modules = _modules_after(code)
    assert "meshprop.cli" in modules and "torch" not in modules


def test_dir_shows_public_names_only():
    names = dir(mp)
    for private in ("importlib", "annotations", "ModuleType", "TYPE_CHECKING", "Any"):
        assert private not in names
    assert {"MeshNet", "Topology", "fit", "gradient", "data", "__version__"} <= set(names)
    assert all(not name.startswith("_") or name == "__version__" for name in names)
    assert set(mp.__all__) <= set(names)


def test_top_level_help_lists_every_command_and_reproduce_correctly(capsys):
    with pytest.raises(SystemExit):
        main(["--help"])
    out = capsys.readouterr().out
    assert "toys, iris, structure," in out and "fashion-mnist, mnist1d" in out
    full = build_parser()
    commands = next(a for a in full._actions if a.dest == "command")
    shown = {action.dest: action.help for action in commands._choices_actions}
    assert shown == COMMAND_HELP  # the light help says what the commands themselves say
    reproduce = commands.choices["reproduce"]
    experiments = next(a for a in reproduce._actions if a.dest == "experiment").choices
    assert set(experiments) == {"toys", "iris", "structure", "online", "fashion-mnist", "mnist1d"}


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> tuple[Path, str]:
    """One run for the module's tests: its folder and what ``meshprop train`` printed."""
    out = tmp_path_factory.mktemp("cli") / "run"
    with contextlib.redirect_stdout(io.StringIO()) as printed:
        code = main(["train", "--epochs", "2", "--no-progress", "--out", str(out)])
    assert code == 0
    return out, printed.getvalue()


@pytest.fixture
def trained_run(trained) -> Path:
    return trained[0]


@pytest.mark.parametrize(
    "argv",
    [["predict", "{run}", "--data", "x.csv"], ["evaluate", "{run}"], ["export", "{run}"]],
)
def test_a_run_folder_for_a_checkpoint_is_answered_with_a_hint(capsys, tmp_path, trained_run, argv):
    argv = [a.format(run=trained_run) for a in argv]
    if argv[0] == "export":
        argv += ["--out", str(tmp_path / "m.onnx")]
    if argv[0] == "predict":
        (tmp_path / "x.csv").write_text("a\n1\n")
        argv[3] = str(tmp_path / "x.csv")
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert f"did you mean {trained_run / 'checkpoint'}?" in err and "Traceback" not in err


def test_train_reports_the_command_wall_time(trained):
    out = trained[1]
    assert "training loop" in out
    assert "wall time" in out and "(the whole command, plots included)" in out


def _net():
    return mp.MeshNet(mp.Topology.mesh(2, 1, 2), ticks=1)


def test_save_checkpoint_refuses_a_file_and_a_full_folder(tmp_path):
    (tmp_path / "file").write_text("x")
    with pytest.raises(FileExistsError, match="it is a file, and a checkpoint is a folder"):
        mp.save_checkpoint(tmp_path / "file", _net())
    mp.save_checkpoint(tmp_path / "ck", _net())
    with pytest.raises(FileExistsError, match="the folder is not empty"):
        mp.save_checkpoint(tmp_path / "ck", _net())
    mp.save_checkpoint(tmp_path / "ck", _net(), {"note": 1}, overwrite=True)
    assert json.loads((tmp_path / "ck" / "model.json").read_text())["note"] == 1
    (tmp_path / "empty").mkdir()
    mp.save_checkpoint(tmp_path / "empty", _net())  # an empty folder is fine


def test_a_failed_save_leaves_no_folder_behind(tmp_path):
    with pytest.raises(ValueError, match="not JSON-serialisable"):
        mp.save_checkpoint(tmp_path / "a" / "b", _net(), {"bad": object()})
    with pytest.raises(ValueError, match="clashes"):
        mp.save_checkpoint(tmp_path / "c", _net(), {"model": 1})
    assert list(tmp_path.iterdir()) == []
