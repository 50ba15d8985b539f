"""The benchmark suite runs (tiny workload) and its memory probe sees real allocations."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch

from meshprop import cli
from meshprop.bench import Point, measure_peak_bytes, summary, table, time_engines

KEYS = {
    "engine",
    "workload",
    "ticks",
    "neurons",
    "batch",
    "median_s",
    "min_s",
    "max_s",
    "peak_bytes",
}


@pytest.mark.slow
def test_bench_json_rows(capsys, tmp_path):
    out = tmp_path / "rows.json"
    before = torch.get_num_threads()
    code = cli.main(
        [
            "bench",
            "--workload",
            "tiny",
            "--memory",
            "none",
            "--budget",
            "0.01",
            "--threads",
            "1",
            "--json",
            "--output",
            str(out),
        ]
    )
    assert code == 0
    assert torch.get_num_threads() == before  # the thread policy restores the caller's count
    rows = json.loads(capsys.readouterr().out)
    assert rows == json.loads(out.read_text())
    machine, *engines = rows
    assert machine["engine"] == "matmul" and machine["gflop_s"] > 0 and machine["threads"] == 1
    assert machine["median_s"] == pytest.approx(2 * 1024**3 / (machine["gflop_s"] * 1e9))
    assert {r["engine"] for r in engines} == {"fop", "fop_factored", "auto", "bptt", "autograd"}
    assert {r["ticks"] for r in engines} == {1, 3}
    for r in engines:
        assert r.keys() >= KEYS
        assert r["workload"] == "tiny" and r["neurons"] == 10 and r["batch"] == 2
        assert 0 < r["min_s"] <= r["median_s"] <= r["max_s"]
        assert r["repeats"] >= 3 and r["peak_bytes"] is None


def test_bench_table_and_summary():
    point = Point(
        "paper", inputs=3, hidden=4, outputs=2, density=0.8, ticks=2, batch=2, output_feedback=True
    )
    rows = time_engines(point, ["reference", "fop", "fop_factored", "autograd"], budget_s=0.01)
    lines = table(rows).splitlines()
    assert len(lines) == 4 + len(rows) and set(lines[0]) == set(lines[2]) == {"-"}
    header = [cell.strip() for cell in lines[1].split(" | ")]
    assert header[:3] == ["workload", "engine", "ticks"] and header[-1] == "note"
    for line, row in zip(lines[3:-1], rows, strict=True):
        cells = [cell.strip() for cell in line.split(" | ")]
        assert cells[:6] == ["paper", row.engine, "2", "10", str(row.edges), "2"]
        assert cells[6:9] == [f"{t * 1e3:.3f}" for t in (row.median_s, row.min_s, row.max_s)]
    lines = summary(rows, machine_flops=None)
    ratio = rows[0].median_s / rows[1].median_s
    assert lines[0].startswith(f"paper: reference / fop = {ratio:.1f}x median")
    assert any("best forward-only / autograd" in line for line in lines)


def test_bench_rejects_unknown_names(capsys):
    assert cli.main(["bench", "--workload", "huge"]) == 2
    assert "unknown workload 'huge'" in capsys.readouterr().err
    assert cli.main(["bench", "--workload", "tiny", "--engines", "magic"]) == 2
    assert "unknown engine 'magic'" in capsys.readouterr().err


@pytest.mark.subprocess
def test_memory_probe_sees_the_reference_tensor():
    """The subprocess probe must see at least the (B, N, N, N) tensor the reference keeps."""
    point = Point(
        "probe",
        inputs=8,
        hidden=28,
        outputs=3,
        density=1.0,
        ticks=1,
        batch=4,
        output_feedback=True,
        mesh=True,
    )
    n = point.neurons
    needed = point.batch * n**3 * 4  # float32 ∂S/∂A of Eq. 14
    peak = measure_peak_bytes(point, "reference", threads=1)
    assert peak >= needed
    small = measure_peak_bytes(point, "bptt", threads=1)
    assert small < needed


@pytest.mark.parametrize("bad", [["--threads", "-1"], ["--budget", "0"]])
def test_bench_rejects_bad_numbers(bad, capsys):
    assert cli.main(["bench", "--workload", "tiny", *bad]) == 2
    assert "must be" in capsys.readouterr().err


def test_update_rate_is_the_marginal_rate_of_ticks_3_to_10():
    from meshprop.bench import Row, update_rate

    def row(ticks, seconds, gflop):  # gflop = the step's modelled work
        return Row(
            "fop", "rate", ticks, 128, 8, seconds, seconds, seconds, None, gflop_s=gflop / seconds
        )

    step, update = update_rate([row(2, 0.01, 0.5), row(10, 0.11, 10.5)])
    assert step == pytest.approx(10.5e9 / 0.11)
    assert update == pytest.approx(10e9 / 0.10)
    assert update_rate([row(10, 0.11, 10.5)]) is None


@pytest.mark.subprocess
def test_probe_is_a_module_run_with_python_m():
    point = Point("probe", inputs=2, hidden=3, outputs=2, density=1.0, ticks=2, batch=2)
    done = subprocess.run(
        [sys.executable, "-m", "meshprop.bench.probe", json.dumps(point.to_dict()), "fop"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""
    (line,) = done.stdout.splitlines()
    peak = json.loads(line)["peak_bytes"]
    assert isinstance(peak, int)
    assert Point.from_dict(json.loads(json.dumps(point.to_dict()))) == point


@pytest.mark.slow
def test_peak_tensor_bytes_keeps_stderr_but_for_the_profiler_log_lines(capfd):
    """kineto prints "USDT:... profiler_start/stop" at every profile; those go, anything else
    written to stderr inside the step (here straight to file descriptor 2, as C++ code would)
    still reaches it, and the figure is the tensor's size."""
    import os

    from meshprop.bench.scale import peak_tensor_bytes

    def step() -> None:
        os.write(2, b"a line from inside the step\n")
        torch.ones(1000, dtype=torch.float64).sum()

    peak = peak_tensor_bytes(step)
    err = capfd.readouterr().err
    assert "a line from inside the step" in err
    assert "USDT:" not in err and "profiler_start" not in err
    assert peak >= 8000
