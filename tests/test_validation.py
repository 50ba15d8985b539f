"""Bad input gets one line and status 2 before any work: output paths, ranges, the
memory and disk estimates of a run, changed training data, corrupted checkpoints of every kind,
and help texts that state each default once.  Every refusal is checked to come before the work:
the command's training function is replaced by one that fails the test, and no output appears.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import re
import shutil
from pathlib import Path

import pytest
import torch

import meshprop as mp
from meshprop.cli import build_parser, main
from meshprop.runs import RunConfig
from meshprop.runs.preflight import check_run, network_size


def run_cli(capsys, *argv):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def one_line(err: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert "Traceback" not in err
    return lines[0]


@pytest.fixture(autouse=True)
def in_tmp(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    return tmp_path


@pytest.fixture
def no_training(monkeypatch):
    """Any training started fails the test (the refusal must come first)."""

    def forbidden(*args, **kwargs):
        raise AssertionError("training started")

    monkeypatch.setattr("meshprop.commands.train.run", forbidden)
    monkeypatch.setattr("meshprop.commands.timeseries.train_diagram", forbidden)
    monkeypatch.setattr("meshprop.commands.bench._run", forbidden)


def write_csv(path: Path, rows: int = 40) -> None:
    lines = ["a,b,t"] + [f"{k % 7},{(k * 3) % 5},{k % 2}" for k in range(rows)]
    path.write_text("\n".join(lines) + "\n")


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Path:
    """One tiny run on a CSV file (trained once for the module)."""
    root = tmp_path_factory.mktemp("run")
    write_csv(root / "d.csv")
    argv = ["train", "--data", root / "d.csv", "--target", "t", "--hidden", "2", "--epochs", "1"]
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        assert main([str(a) for a in [*argv, "--no-progress", "--out", root / "r"]]) == 0
    return root


# ---------------------------------------------------------------- output paths, before work
def bad_outputs(tmp: Path) -> dict[str, tuple[str, str]]:
    (tmp / "afile").write_text("x")
    return {
        "existing file": (str(tmp / "afile"), "is an existing file"),
        "under a file": (str(tmp / "afile" / "sub" / "x"), "is a file, so no"),
        "unwritable": ("/proc/meshprop-out", "cannot write in /proc"),
    }


COMMANDS = {
    "train": ["train", "--epochs", "1", "--no-progress", "--out"],
    "timeseries": ["timeseries", "--dataset", "mackey-glass", "--out"],
    "online": ["online", "--train-ticks", "10", "--out"],
    "reproduce toys": ["reproduce", "toys", "--out"],
}


@pytest.mark.parametrize("command", list(COMMANDS))
@pytest.mark.parametrize("kind", ["existing file", "under a file", "unwritable"])
def test_bad_output_folder_is_one_line_before_any_work(capsys, in_tmp, no_training, command, kind):
    path, message = bad_outputs(in_tmp)[kind]
    code, _, err = run_cli(capsys, *COMMANDS[command], path)
    assert code == 2
    line = one_line(err)
    assert "--out" in line and message in line, line
    assert sorted(p.name for p in in_tmp.iterdir()) == ["afile"]  # nothing was created


def file_commands(checkpoint: Path) -> dict[str, list[str]]:
    return {
        "predict": ["predict", checkpoint, "--data", "d.csv", "--out"],
        "export": ["export", checkpoint, "--out"],
        "bench": ["bench", "--workload", "tiny", "--output"],
    }


@pytest.mark.parametrize("command", ["predict", "export", "bench"])
@pytest.mark.parametrize("kind", ["folder", "under a file", "unwritable"])
def test_bad_output_file_is_one_line_before_any_work(capsys, in_tmp, no_training, command, kind):
    (in_tmp / "afile").write_text("x")
    (in_tmp / "folder").mkdir()
    path, message = {
        "folder": ("folder", "is an existing folder"),
        "under a file": ("afile/x.out", "is a file, so nothing"),
        "unwritable": ("/proc/x.out", "cannot write in /proc"),
    }[kind]
    argv = file_commands(in_tmp / "missing-checkpoint")[command]
    code, _, err = run_cli(capsys, *argv, path)
    line = one_line(err)
    assert code == 2 and message in line and ("--out" in line or "--output" in line), line
    assert sorted(p.name for p in in_tmp.iterdir()) == ["afile", "folder"]


def test_output_check_leaves_good_paths_alone(in_tmp):
    from meshprop.commands.checks import check_output_dir, check_output_file

    assert check_output_dir(in_tmp / "new" / "deeper") == in_tmp / "new" / "deeper"
    assert check_output_file(in_tmp / "new" / "p.csv") == in_tmp / "new" / "p.csv"
    assert check_output_file("-") is None
    assert list(in_tmp.iterdir()) == []  # the probe leaves nothing behind


# ---------------------------------------------------------------- ranges name the flag typed
@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["train", "--density", "1.5"], "--density must be in (0, 1], got 1.5"),
        (["train", "--density", "0"], "--density must be in (0, 1], got 0.0"),
        (["train", "--batch-size", "0"], "--batch-size must be >= 1, got 0"),
        (["train", "--samples", "2"], "--samples must be >= 4, got 2"),
        (["train", "--test-size", "1"], "--test-size must be in (0, 1), got 1.0"),
        (["train", "--drop-fraction", "2"], "--drop-fraction must be in (0, 1), got 2.0"),
        (["train", "--update-every", "0"], "--update-every must be >= 1, got 0"),
        (["train", "--momentum", "-1"], "--momentum must be >= 0, got -1.0"),
        (["train", "--lr", "inf"], "--lr must be a finite number, got inf"),
        (["train", "--weight-decay", "nan"], "--weight-decay must be a finite number, got nan"),
        (["reproduce", "mnist1d", "--runs", "0"], "--runs must be >= 1, got 0"),
        (["reproduce", "structure", "--densities", "0.5", "1.5"], "--densities must be all in"),
        (["reproduce", "online", "--seeds", "0"], "--seeds must be >= 1, got 0"),
        (["reproduce", "toys", "--epochs", "-1"], "--epochs must be >= 1, got -1"),
        (["reproduce", "fashion-mnist", "--cae-subset", "0"], "--cae-subset must be >= 1, got 0"),
        (["timeseries", "--dataset", "mackey-glass", "--window", "0"], "--window must be >= 1"),
        (["timeseries", "--dataset", "mackey-glass", "--lr", "0"], "--lr must be > 0"),
        (["timeseries", "--dataset", "mackey-glass", "--sample-every", "0"], "--sample-every"),
        (["bench", "--budget", "0"], "--budget must be > 0"),
        (["bench", "--max-predicted", "-1"], "--max-predicted must be > 0"),
        (["bench", "--workload", "scale", "--sizes", "0"], "--sizes must be >= 1"),
        (["online", "--hidden", "0"], "--hidden must be >= 1"),
        (["online", "--delay", "-2"], "--delay must be >= 1"),
        (["online", "--lr", "-1"], "--lr must be a positive number"),
    ],
)
def test_ranges_name_the_flag_typed_before_any_work(capsys, in_tmp, no_training, argv, message):
    out = [] if argv[0] == "bench" else ["--out", in_tmp / "o"]
    code, _, err = run_cli(capsys, *argv, *out)
    line = one_line(err)
    assert code == 2 and message in line, line
    assert not (in_tmp / "o").exists()


# ---------------------------------------------------------------- memory and disk, before work
def test_huge_network_is_refused_by_the_memory_guard_before_allocating(capsys, in_tmp, no_training):
    code, _, err = run_cli(capsys, "train", "--hidden", "200000", "--out", in_tmp / "o")
    line = one_line(err)
    assert code == 2 and "--hidden 200000" in line and "memory limit" in line, line
    assert not (in_tmp / "o").exists()


def test_network_estimate_matches_the_built_network():
    for settings in (
        {"hidden": 7},
        {"hidden": 30, "density": 0.3},
        {"arch": "mlp", "layers": [4, 3], "grad": "two_step"},
    ):
        config = RunConfig(**settings)
        N, P = network_size(config)
        net = mp.runs.build_net(config, 1, 1)  # the bound: one input, one output
        net = net.to_mesh() if isinstance(net, mp.layered.MLP) else net
        assert (net.topology.n_neurons, net.topology.n_edges) == (N, P), settings


def test_a_run_folder_that_does_not_fit_on_disk_is_refused(in_tmp, monkeypatch):
    usage = shutil.disk_usage(in_tmp)
    monkeypatch.setattr(
        "meshprop.runs.preflight.shutil.disk_usage",
        lambda path: usage._replace(free=1000),
    )
    with pytest.raises(ValueError, match=r"--out .*run folder .* need about .* only 1000 B"):
        check_run(RunConfig(hidden=5), in_tmp / "o")


# ---------------------------------------------------------------- compact checkpoints
def test_checkpoint_stores_the_topology_compactly_and_fast(in_tmp):
    net = mp.MeshNet(mp.Topology.mesh(2, 600, 2), ticks=2, seed=0, dtype=torch.float32)
    mp.save_checkpoint(in_tmp / "ck", net)
    assert (in_tmp / "ck" / "model.json").stat().st_size < 2000  # no JSON edge list
    N = net.topology.n_neurons
    assert (in_tmp / "ck" / "model.safetensors").stat().st_size < N * N * 5 + 4096
    loaded, _ = mp.load_checkpoint(in_tmp / "ck")
    assert loaded.topology == net.topology and torch.equal(loaded.A, net.A)
    sparse = mp.MeshNet(mp.Topology.random(3, 40, 2, density=0.05, seed=1), ticks=2, seed=0)
    mp.save_checkpoint(in_tmp / "sparse", sparse)
    again, _ = mp.load_checkpoint(in_tmp / "sparse")
    assert again.topology == sparse.topology and torch.equal(again.A, sparse.A)


def test_version_1_checkpoints_still_load(in_tmp):
    from safetensors.torch import save_file

    net = mp.MeshNet(mp.Topology.random(2, 4, 2, density=0.5, seed=3), ticks=2, seed=0)
    (in_tmp / "v1").mkdir()
    save_file({"A": net.A.detach().contiguous()}, str(in_tmp / "v1" / "model.safetensors"))
    document = {
        "format": "meshprop-checkpoint",
        "version": 1,
        "topology": net.topology.to_dict(),
        "model": mp.checkpoint.model_config(net),
    }
    (in_tmp / "v1" / "model.json").write_text(json.dumps(document))
    loaded, _ = mp.load_checkpoint(in_tmp / "v1")
    assert loaded.topology == net.topology and torch.equal(loaded.A, net.A)


def test_large_topology_plot_draws_the_weight_matrix_quickly():
    from meshprop import plots

    net = mp.MeshNet(mp.Topology.mesh(2, 400, 2), ticks=2, seed=0)
    fig = plots.plot_topology(net, "big")
    assert fig.axes[0].images  # an image of A, not a graph of 160 000 edges
    plots.plt.close(fig)


# ---------------------------------------------------------------- data fingerprint
def copy_run(trained: Path, into: Path) -> Path:
    shutil.copytree(trained / "r", into / "r")
    shutil.copy(trained / "d.csv", into / "d.csv")
    config = json.loads((into / "r" / "config.json").read_text())
    assert config["provenance"]["data_fingerprint"]["size"] == (into / "d.csv").stat().st_size
    document = json.loads((into / "r" / "checkpoint" / "model.json").read_text())
    document["config"]["data"] = str(into / "d.csv")
    document["data_fingerprint"]["path"] = str(into / "d.csv")
    (into / "r" / "checkpoint" / "model.json").write_text(json.dumps(document))
    # model.json was edited (new paths), so the run's manifest would refuse the folder as a mix
    # of runs (tests/test_run_folder.py); without it, the checks of the files themselves apply
    (into / "r" / "run.json").unlink()
    return into / "r" / "checkpoint"


@pytest.mark.slow
def test_evaluate_and_predict_refuse_a_changed_training_file(capsys, trained, in_tmp):
    checkpoint = copy_run(trained, in_tmp)
    code, _, _ = run_cli(capsys, "evaluate", checkpoint, "--json")
    assert code == 0
    code, _, _ = run_cli(capsys, "predict", checkpoint, "--data", "d.csv")
    assert code == 0
    with open(in_tmp / "d.csv", "a") as handle:
        handle.write("6,4,1\n")
    for argv in (["evaluate", checkpoint], ["predict", checkpoint, "--data", "d.csv"]):
        code, out, err = run_cli(capsys, *argv)
        line = one_line(err)
        assert code == 2 and out == ""
        assert str(in_tmp / "d.csv") in line and "--allow-changed-data" in line, line
        code, out, err = run_cli(capsys, *argv, "--allow-changed-data")
        assert code == 0 and out
        assert one_line(err).startswith("warning: ") and "d.csv changed" in err
    # other data than the training file is not compared
    write_csv(in_tmp / "other.csv", rows=20)
    code, _, err = run_cli(capsys, "predict", checkpoint, "--data", "other.csv")
    assert code == 0 and err == ""


@pytest.mark.slow
def test_a_changed_built_in_dataset_is_refused(capsys, in_tmp):
    code, _, _ = run_cli(capsys, "train", "--epochs", "1", "--no-progress", "--out", "m")
    assert code == 0
    path = in_tmp / "m" / "checkpoint" / "model.json"
    document = json.loads(path.read_text())
    assert document["data_fingerprint"]["arrays"] == "moons"
    document["data_fingerprint"]["sha256"] = "0" * 64
    path.write_text(json.dumps(document))
    code, _, err = run_cli(capsys, "evaluate", "m/checkpoint")
    assert code == 2 and "model.json is not the file run" in one_line(err)  # the manifest
    (in_tmp / "m" / "run.json").unlink()
    code, _, err = run_cli(capsys, "evaluate", "m/checkpoint")
    assert code == 2 and "the built-in dataset 'moons' changed" in one_line(err)


# ---------------------------------------------------------------- corrupted checkpoints
def _truncate(path: Path) -> None:
    raw = path.read_bytes()
    path.write_bytes(raw[: len(raw) // 2])


def _edit_json(drop: str):
    def edit(path: Path) -> None:
        document = json.loads(path.read_text())
        del document[drop]
        path.write_text(json.dumps(document))

    return edit


def _set_json(key: str, value):
    def edit(path: Path) -> None:
        document = json.loads(path.read_text())
        document[key] = value
        path.write_text(json.dumps(document))

    return edit


CORRUPTIONS = {
    "truncated weights": ("model.safetensors", _truncate, "model.safetensors: not a readable"),
    "empty weights": (
        "model.safetensors",
        lambda p: p.write_bytes(b""),
        "model.safetensors: empty",
    ),
    "random weights": (
        "model.safetensors",
        lambda p: p.write_bytes(bytes(range(256)) * 3),
        "model.safetensors: not a readable",
    ),
    "missing weights": ("model.safetensors", Path.unlink, "lacks model.safetensors"),
    "truncated json": ("model.json", _truncate, "model.json: not valid JSON"),
    "empty json": ("model.json", lambda p: p.write_text(""), "model.json: not valid JSON"),
    "bad json": ("model.json", lambda p: p.write_text("{'model': 1,"), "model.json: not valid"),
    "missing json": ("model.json", Path.unlink, "lacks model.json"),
    "no model": ("model.json", _edit_json("model"), "model.json: the 'model' section"),
    "no topology": ("model.json", _edit_json("topology"), "model.json: the 'topology' section"),
    "no standardizer": ("model.json", _edit_json("standardizer"), "without standardizer"),
    "bad standardizer": ("model.json", _set_json("standardizer", {"mean": [0]}), "standardizer"),
    "bad task": ("model.json", _set_json("task", 3), "model.json: 'task' must be"),
    "bad classes": ("model.json", _set_json("class_names", "ab"), "model.json: 'class_names'"),
}


#: what only evaluate and predict read (export needs the model alone)
RUN_KEYS = ("no standardizer", "bad standardizer", "bad task", "bad classes")
CASES = [
    (command, case)
    for command in ("evaluate", "predict", "export")
    for case in CORRUPTIONS
    if command != "export" or case not in RUN_KEYS
]


@pytest.mark.parametrize(("command", "case"), CASES)
def test_corrupted_checkpoint_is_one_line_naming_the_file(capsys, trained, in_tmp, command, case):
    name, corrupt, message = CORRUPTIONS[case]
    checkpoint = copy_run(trained, in_tmp)
    corrupt(checkpoint / name)
    argv = {
        "evaluate": ["evaluate", checkpoint],
        "predict": ["predict", checkpoint, "--data", "d.csv"],
        "export": ["export", checkpoint, "--out", "m.onnx"],
    }[command]
    code, out, err = run_cli(capsys, *argv)
    line = one_line(err)
    assert code == 2 and out == "", line
    assert message in line and str(checkpoint) in line, line
    assert not (in_tmp / "m.onnx").exists()


def test_missing_checkpoint_folder(capsys, in_tmp):
    for argv in (["evaluate", "nope"], ["predict", "nope", "--data", "x.csv"]):
        code, _, err = run_cli(capsys, *argv)
        assert code == 2 and "no checkpoint at 'nope'" in one_line(err)


# ---------------------------------------------------------------- help texts
def parsers():
    """Every parser of the command tree, with its command path."""

    def walk(parser: argparse.ArgumentParser, path: tuple[str, ...]):
        yield path, parser
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                for name, sub in action.choices.items():
                    yield from walk(sub, (*path, name))

    return list(walk(build_parser(), ()))


@pytest.mark.parametrize(
    ("path", "parser"), [pytest.param(*pp, id=" ".join(pp[0]) or "meshprop") for pp in parsers()]
)
def test_every_help_states_each_default_once(path, parser):
    text = parser.format_help()
    assert "%%" not in text and "default: None" not in text
    formatter = parser._get_formatter()
    for action in parser._actions:
        if action.help == argparse.SUPPRESS or not action.option_strings:
            continue
        help_text = formatter._expand_help(action) if action.help else ""
        flag = action.option_strings[-1]
        stated = len(re.findall(r"\bdefault[: ]", help_text))
        assert stated <= 1, (path, flag, help_text)
        has_default = not (
            action.default is None
            or action.default is argparse.SUPPRESS
            or isinstance(action.default, bool)
            or action.nargs == 0
        )
        assert stated == 1 or not has_default, (path, flag, help_text)


def test_decision_boundary_grid_is_coarser_for_a_large_mesh():
    from types import SimpleNamespace

    from meshprop import plots

    small = mp.MeshNet(mp.Topology.mesh(2, 5, 2), ticks=3, seed=0)
    large = SimpleNamespace(topology=SimpleNamespace(n_neurons=3005), ticks=3)
    assert plots.grid_steps(small, 200) == 200
    steps = plots.grid_steps(large, 200)
    assert steps == 40 and steps**2 * 3005**2 * 3 < 5 * plots.GRID_BUDGET


# ---------------------------------------------------------------- docs match the commands
def _labels(lines):
    """The shape of a train summary: the table's row labels and each other line's first word."""
    shape = []
    for line in lines:
        if not line.strip() or line.startswith(("$", ".venv")):
            continue
        shape.append(line.split(" | ")[0].strip() if " | " in line else line.split()[0])
    return shape


@pytest.mark.slow
def test_the_train_summary_in_the_docs_is_what_the_command_prints(capsys, in_tmp):
    docs = Path(__file__).resolve().parents[1] / "docs" / "experiments.md"
    text = docs.read_text()
    start = text.index("$ make run")
    block = text[start : text.index("```", start)].splitlines()
    code, out, _ = run_cli(capsys, "train", "--epochs", "1", "--no-progress", "--out", "r")
    assert code == 0
    assert _labels(block) == _labels(out.splitlines())


ROOT = Path(__file__).resolve().parents[1]


def test_docs_name_every_registered_engine():
    from meshprop.engines import ENGINES

    for page in ("layered.md", "model.md"):
        text = (ROOT / "docs" / page).read_text()
        missing = [name for name in ENGINES if f"{name}" not in text]
        assert not missing, (page, missing)
    assert "four mesh engines" not in (ROOT / "docs" / "layered.md").read_text()


def test_doc_links_stay_inside_the_repository():
    pages = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
    for page in pages:
        for target in re.findall(r"\]\(([^)#\s]+)", page.read_text()):
            if re.match(r"[a-z]+:", target):  # https:, mailto:
                continue
            path = (page.parent / target).resolve()
            assert path.is_relative_to(ROOT) and path.exists(), (page.name, target)


# ---------------------------------------------------------------- shared options, one source
#: the commands on the run-folder mechanism: every shared option, each with its one help text
RUN_COMMANDS = [
    ("timeseries",),
    ("reproduce", "structure"),
    ("reproduce", "fashion-mnist"),
    ("reproduce", "mnist1d"),
    ("reproduce", "iris"),
]


def test_the_shared_options_mean_the_same_in_every_parser():
    from meshprop.commands.options import SHARED_OPTIONS

    found = {}
    for path, parser in parsers():
        if not any("--resume" in a.option_strings for a in parser._actions):
            continue  # not a run folder: predict's and export's --out name one file
        if path == ("reproduce", "online"):
            continue  # its own cell-by-cell resume, without the run folder's refusal
        for action in parser._actions:
            for option in action.option_strings:
                if option in SHARED_OPTIONS:
                    assert (action.help or "").startswith(SHARED_OPTIONS[option]), (path, option)
                    found.setdefault(path, set()).add(option)
    for path in RUN_COMMANDS:
        assert found.get(path) == set(SHARED_OPTIONS), path
    assert {"--out", "--resume", "--overwrite", "--config"} <= found[("train",)]
