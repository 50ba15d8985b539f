"""``--device cpu|cuda``: the device check made before any work, and the test device."""

from __future__ import annotations

import pytest
import torch

import conftest
from meshprop.cli import main
from meshprop.devices import require_device
from meshprop.runs.config import RunConfig

NO_CUDA = "--device cuda: no CUDA device is available (torch.cuda.is_available() is False)"


@pytest.fixture
def no_cuda(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)


def test_require_device_names_the_flag(no_cuda):
    assert require_device("cpu") == torch.device("cpu")
    with pytest.raises(ValueError, match="use --device cpu") as error:
        require_device("cuda")
    assert str(error.value).startswith(NO_CUDA)
    with pytest.raises(ValueError, match="unknown device 'tpu'"):
        require_device("tpu")


@pytest.mark.parametrize(
    "argv",
    [
        ["train", "--device", "cuda", "--epochs", "1"],
        ["bench", "--workload", "scale", "--device", "cuda", "--sizes", "100"],
    ],
)
def test_cuda_without_cuda_is_one_line_before_any_work(argv, no_cuda, capsys, tmp_path):
    out = tmp_path / "run"
    code = main([*argv, "--out", str(out)] if argv[0] == "train" else argv)
    err = capsys.readouterr().err
    assert code == 2 and NO_CUDA in err and "Traceback" not in err, err
    assert len(err.strip().splitlines()) == 1
    assert not out.exists()  # nothing started


def test_bench_runs_only_the_scale_workload_on_a_gpu(monkeypatch, capsys):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    code = main(["bench", "--workload", "paper", "--device", "cuda"])
    err = capsys.readouterr().err
    assert code == 2 and "only --workload scale runs on a GPU" in err, err


def test_the_device_is_part_of_a_run_configuration():
    assert RunConfig().device == "cpu"
    assert RunConfig.from_dict({"device": "cuda"}).device == "cuda"  # read anywhere
    assert RunConfig.from_dict({}).device == "cpu"  # runs saved before the option
    with pytest.raises(ValueError, match="device"):
        RunConfig(device="tpu")


def test_the_suite_stops_at_once_when_its_device_is_missing(monkeypatch, no_cuda):
    monkeypatch.setenv(conftest.TEST_DEVICE_ENV, "cuda")
    with pytest.raises(pytest.UsageError, match="no CUDA device is available"):
        conftest.pytest_configure(None)  # type: ignore[arg-type]
    monkeypatch.setenv(conftest.TEST_DEVICE_ENV, "cpu")
    conftest.pytest_configure(None)  # type: ignore[arg-type]
