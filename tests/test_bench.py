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
    assert "--workload must be one of paper, published" in capsys.readouterr().err
    assert cli.main(["bench", "--workload", "tiny", "--engines", "magic"]) == 2
    assert "--engines must be one of fop, bptt" in capsys.readouterr().err
    assert cli.main(["bench", "--workload", "tiny", "--device", "cuda"]) == 2
    assert "--device cuda: only --workload scale runs on a GPU" in capsys.readouterr().err


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


# ------------------------------------------------------------------ the run folder (--out DIR)
def _fake_row(name: str, ticks: int) -> dict:
    times = {"median_s": 1e-3 * ticks, "min_s": 1e-3, "max_s": 2e-3 * ticks}
    return {"engine": "fop", "workload": name, "ticks": ticks, "neurons": 10, "batch": 2,
            **times, "peak_bytes": None}  # fmt: skip


@pytest.fixture
def fake_measurements(monkeypatch):
    """Workloads measured instantly (rows from the name); the calls are recorded, and the
    workload ``paper`` stops the sweep as Ctrl-C would (SIGINT to this process)."""
    import os
    import signal

    from meshprop.bench import Row, sweep

    calls: list[str] = []
    stopped = []

    def run_workload(name, engines=None, **options):
        calls.append(name)
        if name == "paper" and not stopped:
            stopped.append(name)
            os.kill(os.getpid(), signal.SIGINT)
        return [Row(**_fake_row(name, t)) for t in (1, 3)]

    monkeypatch.setattr(sweep, "run_workload", run_workload)
    monkeypatch.setattr(sweep, "matmul_rate", lambda: calls.append("matmul") or 1e10)
    return calls


def test_bench_run_folder_resumes_the_workloads_not_measured(tmp_path, capsys, fake_measurements):
    """SIGINT during the second workload: one line, status 130, the first workload saved;
    --resume measures only the rest; the folder lists its files; another run is refused."""
    out = tmp_path / "bench"
    argv = ["bench", "--workload", "tiny", "paper", "ticks", "--memory", "none", "--no-progress"]
    assert cli.main([*argv, "--out", str(out)]) == 130
    err = capsys.readouterr().err.strip()
    assert err == (
        f"SIGINT: stopped; the state saved last is in {out}; resume with: meshprop bench --out "
        f"{out} --resume"
    )
    units = json.loads((out / "units.json").read_text())["units"]
    assert list(units) == ["matmul-rate", "workload/tiny"]
    assert not json.loads((out / "run.json").read_text())["complete"]
    assert fake_measurements == ["matmul", "tiny", "paper"]
    fake_measurements.clear()
    assert cli.main(["bench", "--out", str(out), "--resume", "--json"]) == 0
    assert fake_measurements == ["paper", "ticks", "matmul"]  # tiny and the first rate kept
    rows = json.loads(capsys.readouterr().out)
    assert rows == json.loads((out / "bench.json").read_text())
    assert [(r["workload"], r["ticks"]) for r in rows[1:]] == [
        (name, t) for name in ("tiny", "paper", "ticks") for t in (1, 3)
    ]
    assert {key: rows[1][key] for key in _fake_row("tiny", 1)} == _fake_row("tiny", 1)
    manifest = json.loads((out / "run.json").read_text())
    assert manifest["complete"] and manifest["command"] == "bench"
    assert set(manifest["files"]) == {"config.json", "units.json", "bench.json"}
    assert json.loads((out / "config.json").read_text())["workload"] == ["tiny", "paper", "ticks"]
    fake_measurements.clear()
    assert cli.main([*argv, "--out", str(out)]) == 2
    assert "already holds a finished run" in capsys.readouterr().err
    assert cli.main(["bench", "--out", str(out), "--resume", "--workload", "tiny"]) == 2
    assert "--workload ['tiny'] (the run: ['tiny', 'paper', 'ticks'])" in capsys.readouterr().err
    assert fake_measurements == []  # both refused before any measurement


def test_bench_output_file_is_written_without_a_run_folder(tmp_path, capsys, fake_measurements):
    path = tmp_path / "rows.json"
    argv = ["bench", "--workload", "tiny", "--no-progress", "--output", str(path)]
    assert cli.main(argv) == 0
    assert "tiny" in capsys.readouterr().out  # the table, as without --output
    rows = json.loads(path.read_text())
    assert rows[0]["engine"] == "matmul" and [r["ticks"] for r in rows[1:]] == [1, 3]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["rows.json"]  # no temporaries left
    assert cli.main(["bench", "--workload", "tiny", "--resume"]) == 2
    assert "--resume and --overwrite need --out DIR" in capsys.readouterr().err


def test_scale_and_grid_units_saved_are_not_measured_again(monkeypatch):
    """--workload scale saves the bandwidth and each size, the online grid each cell: a unit
    the saved units hold is taken as it is."""
    import subprocess as process

    from meshprop.bench import online_grid, scale

    measured = []

    def size_rows(n, *args):
        measured.append(n)
        return [scale.ScaleRow("sparse", "fop", n, 10 * n, 2, 32, 1e-3, 100, 1000, 1e-4)]

    monkeypatch.setattr(scale, "_size_rows", size_rows)
    saved = {"scale/bandwidth": {"bytes_s": 1e10}}
    saved["scale/N=100"] = {"rows": scale.as_dicts(size_rows(100))}
    measured.clear()

    def memo(key, compute):
        if key not in saved:
            saved[key] = compute()
        return saved[key]

    rows, rate = scale.run_scale(sizes=(100, 200), memo=memo)
    assert measured == [200] and rate == 1e10 and [r.neurons for r in rows] == [100, 200]
    assert list(saved) == ["scale/bandwidth", "scale/N=100", "scale/N=200"]

    def no_process(*args, **kwargs):
        raise AssertionError("a saved cell was measured again")

    monkeypatch.setattr(process, "run", no_process)
    key = "online-grid/self-loops/H=4/dense/fop"
    saved[key] = {"workload": "online-grid", "method": "fop", "ticks_per_second": 5.0}
    (row,) = online_grid.grid(
        hidden=[4], topologies=["self-loops"], layouts=["dense"], methods=["fop"], memo=memo
    )
    assert row is saved[key]


def test_scale_run_folder_lists_its_plot(tmp_path, capsys, monkeypatch):
    from meshprop.bench import scale

    def size_rows(n, *args):
        return [scale.ScaleRow("sparse", "fop", n, 10 * n, 2, 32, 1e-3 * n, 100, 1000, 1e-4)]

    monkeypatch.setattr(scale, "_size_rows", size_rows)
    monkeypatch.setattr(scale, "bandwidth", lambda device: 1e10)
    out = tmp_path / "scale"
    argv = ["bench", "--workload", "scale", "--sizes", "100", "200", "--no-progress"]
    assert cli.main([*argv, "--out", str(out), "--output", str(tmp_path / "rows.json")]) == 0
    assert "slope of log(time) vs log(edges), sparse/fop T=2: 1.00" in capsys.readouterr().out
    manifest = json.loads((out / "run.json").read_text())
    assert set(manifest["files"]) == {"config.json", "units.json", "bench.json", "scale.png"}
    assert (out / "bench.json").read_text() != "" and (tmp_path / "rows.png").stat().st_size > 0
    assert json.loads((out / "bench.json").read_text()) == json.loads(
        (tmp_path / "rows.json").read_text()
    )
    units = json.loads((out / "units.json").read_text())["units"]
    assert list(units) == ["scale/bandwidth", "scale/N=100", "scale/N=200"]
