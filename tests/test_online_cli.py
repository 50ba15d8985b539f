"""``meshprop online``, ``meshprop reproduce online`` and the ``online`` bench workload, on tiny
settings (the figures themselves are taken by the commands, not here)."""

from __future__ import annotations

import json

import pytest

from meshprop.bench import online as bench_online
from meshprop.cli import main


def test_online_delayed_recall_writes_metrics_and_curve(tmp_path, capsys) -> None:
    out = tmp_path / "run"
    code = main(
        ["online", "--task", "delayed-recall", "--delay", "2", "--train-ticks", "600",
         "--test-ticks", "200", "--log-every", "100", "--no-progress", "--out", str(out)]
    )  # fmt: skip
    assert code == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert 0.0 <= metrics["test_accuracy"] <= 1.0
    assert metrics["ticks_per_second"] > 0 and metrics["peak_memory_mib"] > 0
    assert metrics["train_ticks"] == 600 and metrics["method"] == "fop"
    assert (out / "learning_curve.png").stat().st_size > 0
    curve = json.loads((out / "curve.json").read_text())
    assert [p["tick"] for p in curve] == [100, 200, 300, 400, 500, 600]
    # what exact fop will cost, said before it starts (the full mesh: the dense representation)
    assert "exact fop: dense sensitivities" in capsys.readouterr().out


@pytest.mark.parametrize("method", ["tbptt", "bptt"])
def test_online_other_methods(tmp_path, method: str) -> None:
    out = tmp_path / method
    assert main(
        ["online", "--method", method, "--delay", "2", "--train-ticks", "200",
         "--test-ticks", "50", "--no-progress", "--out", str(out)]
    ) == 0  # fmt: skip
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["method"] == method
    if method == "tbptt":
        assert metrics["truncation"] == 1  # D/2


def test_online_prediction_from_csv(tmp_path) -> None:
    data = tmp_path / "series.csv"
    data.write_text("t,value\n" + "".join(f"{k},{(k % 7) / 7:.4f}\n" for k in range(120)))
    out = tmp_path / "csv"
    assert main(
        ["online", "--data", str(data), "--column", "value", "--train-ticks", "150",
         "--no-progress", "--out", str(out)]
    ) == 0  # fmt: skip
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["test_nmse"] >= 0 and "test_accuracy" not in metrics


def test_online_takes_a_config_file_and_flags_override_it(tmp_path) -> None:
    """``--config``: the settings of a file (as a run's config.json holds them), a flag typed
    overriding one; config.json saves the resolved values (tbptt's window from the delay)."""
    settings = tmp_path / "online.toml"
    settings.write_text('delay = 2\ntrain_ticks = 200\ntest_ticks = 50\nhidden = 4\n'
                        'method = "tbptt"\n')  # fmt: skip
    out = tmp_path / "run"
    argv = ["online", "--config", str(settings), "--hidden", "3", "--no-progress"]
    assert main([*argv, "--out", str(out)]) == 0
    saved = json.loads((out / "config.json").read_text())
    assert (saved["delay"], saved["train_ticks"], saved["test_ticks"]) == (2, 200, 50)
    assert (saved["hidden"], saved["method"], saved["truncation"]) == (3, "tbptt", 1)
    assert json.loads((out / "metrics.json").read_text())["train_ticks"] == 200


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--truncation", "3"], "--truncation applies to --method tbptt only"),
        (["--method", "tbptt", "--truncation", "0"], "--truncation must be >= 1"),
        (["--delay", "0"], "--delay must be >= 1"),
        (["--lr", "-1"], "--lr must be a positive number"),
        (["--data", "nowhere.csv", "--column", "x"], "no such file"),
        (["--column", "x"], "--column applies with --data"),
        (["--method", "bptt", "--sequence-length", "5", "--delay", "10"], "must exceed --delay"),
        (["--checkpoint-every", "-1"], "--checkpoint-every must be >= 0, got -1"),
    ],
)
def test_online_validates_before_work(tmp_path, capsys, argv, message) -> None:
    out = tmp_path / "never"
    assert main(["online", *argv, "--out", str(out)]) == 2
    assert message in capsys.readouterr().err
    assert not out.exists()


def test_bench_online_throughput_rows() -> None:
    rows = bench_online.throughput(hidden=(3,), ticks=20, rounds=2)
    assert [r["method"] for r in rows] == ["fop", "prototype"]
    assert rows[0]["hidden"] == 3 and rows[0]["neurons"] == 6 and rows[0]["ticks_per_second"] > 0


@pytest.mark.subprocess
def test_bench_online_fop_peak_does_not_grow_and_bptt_does() -> None:
    """Two fresh processes: FOP at 10,000 then 2,000 elements (each from its own reset
    high-water mark; the longer first, so the process's first run does not favour it), full
    BPTT at 2,000.  Online FOP keeps nothing per element: 8,000 more elements add less than
    256 KiB to the resident high-water mark (a leak of ≥ 32 bytes per element would exceed
    it).  Full BPTT keeps its trajectory: on 2,000 elements ≥ 1 MB more than either FOP
    peak."""
    rows = bench_online.stream_peak(lengths=(2000, 10000), hidden=4, bptt_max=2000, per_method=True)
    peak = {(r["method"], r["length"]): r["peak_bytes"] for r in rows}
    assert set(peak) == {("fop", 2000), ("bptt", 2000), ("fop", 10000)}
    assert peak["fop", 10000] <= peak["fop", 2000] + 256 * 1024, peak
    # (against FOP's higher peak: the first run of its process, which bears the warm-up)
    assert peak["bptt", 2000] > max(peak["fop", 2000], peak["fop", 10000]) + 1_000_000, peak
