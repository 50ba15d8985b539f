"""Fuzzing the public checkpoint loader (``mp.load_checkpoint``) with hypothesis: random bytes,
truncated files, missing keys, wrong types and shapes must end in one exception a user can read
(ValueError, TypeError, FileNotFoundError: what ``meshprop`` prints as one line), never another
exception type or a hang.  Profiles as tests/test_fuzz.py (``make fuzz``: the ``fuzz`` one).
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import pytest
import torch

pytest.importorskip("hypothesis", reason="hypothesis: pip install -e '.[dev]'")
from hypothesis import given
from hypothesis import strategies as st

import meshprop as mp
from test_fuzz import CLEAR, topologies

_CORRUPTIONS = [
    "random_json",
    "random_weights",
    "truncate_json",
    "truncate_weights",
    "drop_key",
    "wrong_shape",
    "wrong_type",
    "empty_dir",
    "bad_dtype",
    "bad_topology_tensor",
]


def _corrupt(directory: Path, kind: str, data: st.DataObject) -> None:
    config, weights = directory / "model.json", directory / "model.safetensors"
    if kind == "random_json":
        config.write_bytes(data.draw(st.binary(max_size=200)))
    elif kind == "random_weights":
        weights.write_bytes(data.draw(st.binary(max_size=200)))
    elif kind == "truncate_json":
        raw = config.read_bytes()
        config.write_bytes(raw[: data.draw(st.integers(0, len(raw) - 1))])
    elif kind == "truncate_weights":
        raw = weights.read_bytes()
        weights.write_bytes(raw[: data.draw(st.integers(0, len(raw) - 1))])
    elif kind == "bad_topology_tensor":  # the edges (or mask) stored beside A
        from safetensors.torch import load_file, save_file

        tensors = load_file(str(weights))
        name = "edges" if "edges" in tensors else "mask"
        rows, cols = data.draw(st.integers(0, 5)), data.draw(st.integers(0, 3))
        dtype = data.draw(st.sampled_from([torch.int32, torch.int64, torch.bool, torch.float32]))
        values = torch.tensor(
            data.draw(st.lists(st.integers(-3, 40), min_size=rows * cols, max_size=rows * cols))
        )
        tensors[name] = values.reshape(rows, cols).to(dtype)
        save_file(tensors, str(weights))
    elif kind == "empty_dir":
        config.unlink()
        weights.unlink()
    else:
        document = json.loads(config.read_text())
        paths = [("format",), ("version",), ("topology",), ("model",)]
        paths += [("topology", k) for k in document["topology"]]
        paths += [("model", k) for k in document["model"]]
        path = data.draw(st.sampled_from(paths))
        parent = document
        for key in path[:-1]:
            parent = parent[key]
        if kind == "drop_key":
            del parent[path[-1]]
        elif kind == "wrong_type":
            parent[path[-1]] = data.draw(
                st.one_of(
                    st.none(),
                    st.integers(-5, 5),
                    st.text(max_size=5),
                    st.lists(st.integers(-1, 3), max_size=3),
                    st.booleans(),
                )
            )
        elif kind == "bad_dtype":
            document["model"]["dtype"] = data.draw(st.text(max_size=8))
        elif kind == "wrong_shape":
            from safetensors.torch import save_file

            n = data.draw(st.integers(0, 6))
            save_file({"A": torch.zeros(n, n + data.draw(st.integers(0, 1)))}, str(weights))
        config.write_text(json.dumps(document))


@given(topo=topologies(), kind=st.sampled_from(_CORRUPTIONS), data=st.data())
def test_corrupted_checkpoint_is_one_clear_error(topo, kind, data):
    net = mp.MeshNet(topo, ticks=2, activation="tanh", seed=0)
    with tempfile.TemporaryDirectory() as folder:
        directory = mp.save_checkpoint(Path(folder) / "ckpt", net)
        _corrupt(directory, kind, data)
        try:
            loaded, _ = mp.load_checkpoint(directory)
        except CLEAR as error:
            assert str(error)
            return
        # what still loads must be a working network (e.g. a type change that changed nothing)
        x = torch.zeros(1, loaded.topology.n_inputs)
        assert loaded(x).shape == (1, loaded.topology.n_outputs)
