"""Structural learning from the command line and in runs: ``meshprop train --structure``,
the topology recorded over time, ``meshprop reproduce structure``."""

from __future__ import annotations

import dataclasses
import json

import pytest
import torch

import meshprop as mp
from meshprop.cli import main
from meshprop.runs import RunConfig, run
from meshprop.runs.run import structural_learning
from meshprop.structure.edges import allowed_count, edge_count


@pytest.fixture(autouse=True)
def in_tmp(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    return tmp_path


def run_cli(capsys, *argv):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def _config(**changes) -> RunConfig:
    base = RunConfig(
        dataset="iris", hidden=6, ticks=2, density=0.2, epochs=4, batch_size=16, seed=3
    )
    return dataclasses.replace(base, **changes)


@pytest.mark.slow
@pytest.mark.parametrize("rule", ["set", "rigl"])
def test_train_records_the_topology_over_time(capsys, in_tmp, rule: str) -> None:
    argv = ["train", "--dataset", "iris", "--hidden", "6", "--ticks", "2", "--density", "0.2"]
    argv += ["--structure", rule, "--update-every", "4", "--drop-fraction", "0.5"]
    argv += ["--epochs", "4", "--batch-size", "16", "--no-progress", "--out", "run"]
    code, out, err = run_cli(capsys, *argv)
    assert code == 0, err
    metrics = json.loads((in_tmp / "run" / "metrics.json").read_text())
    config = json.loads((in_tmp / "run" / "config.json").read_text())
    assert (config["structure"], config["update_every"], config["drop_fraction"]) == (
        rule,
        4,
        0.5,
    )
    log = metrics["structure"]
    allowed = (4 + 1 + 6 + 3) * (6 + 3)
    target = round(0.2 * allowed)
    # 105 training samples, batch 16: 7 steps per epoch, 28 in all, updates until step 21
    assert [r["step"] for r in log] == [4, 8, 12, 16, 20]
    assert all(r["edges"] == target and r["added"] == r["removed"] for r in log)
    assert log[0]["added"] == round(
        0.5 * 0.5 * (1 + torch.cos(torch.tensor(torch.pi * 4 / 21)).item()) * target
    )
    assert metrics["model"]["edges"] == target
    assert (in_tmp / "run" / "structure.png").stat().st_size > 0
    assert (in_tmp / "run" / "topology.png").stat().st_size > 0
    # the checkpoint holds the final topology: evaluate reproduces the recorded accuracy
    code, out, err = run_cli(capsys, "evaluate", "run/checkpoint", "--json")
    assert code == 0, err
    assert json.loads(out) == {k: metrics[k] for k in ("test_loss", "test_accuracy")}


def test_magnitude_prunes_the_mesh_down_to_the_density() -> None:
    result = run(_config(structure="magnitude", update_every=3))
    log = result.structure
    allowed = (4 + 1 + 6 + 3) * (6 + 3)
    edges = [r["edges"] for r in log]
    assert edges == sorted(edges, reverse=True) and edges[0] < allowed
    assert edges[-1] == round(0.2 * allowed) == result.net.topology.n_edges
    assert all(r["added"] == 0 for r in log)
    assert float((result.net.A.detach() * ~result.net.topology.mask).abs().max()) == 0.0


def test_static_has_no_callback_and_a_seeded_run_repeats() -> None:
    assert structural_learning(_config(), 1000, "cross_entropy") is None
    a = run(_config(structure="rigl", update_every=5))
    b = run(_config(structure="rigl", update_every=5))
    assert a.structure == b.structure and len(a.structure) > 0
    assert a.net.topology == b.net.topology
    assert torch.equal(a.net.A.detach(), b.net.A.detach())
    assert a.test == b.test
    assert edge_count(0.2, a.net.topology) == a.net.topology.n_edges
    assert allowed_count(a.net.topology) == (4 + 1 + 6 + 3) * (6 + 3)


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--structure", "rigl"], "--structure rigl needs a sparse target: give --density below 1"),
        (["--arch", "mlp", "--layers", "4", "--structure", "set"], "--structure applies to"),
        (["--structure", "grow"], "--structure must be one of static, magnitude, set, rigl"),
        (["--density", "0.5", "--drop-fraction", "1.5"], "--drop-fraction must be in (0, 1)"),
        (["--density", "0.5", "--update-every", "0"], "--update-every must be >= 1"),
        (
            ["--density", "0.5", "--structure", "set", "--val-size", "0.2", "--patience", "3"],
            "early stopping (--patience) restores the weights of an earlier topology",
        ),
    ],
)
def test_structure_errors_name_the_flags(capsys, argv, message) -> None:
    code, _, err = run_cli(capsys, "train", *argv, "--epochs", "1", "--no-progress")
    assert code == 2 and message in err and "Traceback" not in err, err


@pytest.mark.slow
def test_reproduce_structure_writes_table_json_and_plot(capsys, in_tmp) -> None:
    argv = ["reproduce", "structure", "--densities", "1.0", "0.2", "--seeds", "2"]
    argv += ["--methods", "static", "rigl", "--hidden", "4", "--epochs", "1", "--out", "rep"]
    code, out, err = run_cli(capsys, *argv)
    assert code == 0, err
    document = json.loads((in_tmp / "rep" / "structure.json").read_text())
    results = document["datasets"]["digits"]
    assert set(results) == {"dense@1", "static@0.2", "rigl@0.2"}
    for r in results.values():
        assert len(r["accuracies"]) == 2 and all(0 <= a <= 1 for a in r["accuracies"])
        assert r["mean"] == pytest.approx(sum(r["accuracies"]) / 2, abs=1e-15)
    table = (in_tmp / "rep" / "structure.md").read_text()
    rigl = results["rigl@0.2"]
    assert f"{rigl['mean']:.4f} ± {rigl['std']:.4f}" in table and table in out
    assert results["dense@1"]["edges"] == [(64 + 1 + 4 + 10) * 14] * 2
    assert (in_tmp / "rep" / "structure-digits.png").stat().st_size > 0


def test_reproduce_structure_on_large_sparse_meshes_thins_the_degree_mesh(capsys, in_tmp) -> None:
    argv = ["reproduce", "structure", "--densities", "1", "0.2", "--seeds", "1", "--degree", "4"]
    argv += ["--datasets", "iris", "--methods", "static", "rigl", "--hidden", "30"]
    argv += ["--epochs", "1", "--ticks", "2"]
    argv += ["--update-every", "5", "--lr", "0.003", "--out", "rep"]
    code, _, err = run_cli(capsys, *argv)
    assert code == 0, err
    document = json.loads((in_tmp / "rep" / "structure.json").read_text())
    assert document["settings"]["layout"] == "sparse" and document["settings"]["degree"] == 4
    results = document["datasets"]["iris"]
    full = results["dense@1"]["edges"][0]
    assert full == mp.Topology.sparse_random(4, 30, 3, degree=4, seed=0).n_edges
    assert results["static@0.2"]["edges"] == results["rigl@0.2"]["edges"] == [round(0.2 * full)]
    code, _, err = run_cli(capsys, *argv[:-2], "--methods", "magnitude", "--out", "rep2")
    assert code != 0 and "magnitude pruning starts from the full mesh" in err
