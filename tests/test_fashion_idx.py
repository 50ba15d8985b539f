"""meshprop.data.idx: IDX files (plain and gzip) written here, their errors, the directory
search and its message."""

from __future__ import annotations

import gzip
import struct

import numpy as np
import pytest

from meshprop.data import idx


def idx_bytes(array: np.ndarray) -> bytes:
    """An IDX file of unsigned bytes, written independently of the reader."""
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(struct.pack(">I", s) for s in array.shape)
    return header + array.astype(np.uint8).tobytes()


def write_split(directory, split, images, labels, compress=False):
    names = idx.IDX_FILES[split]
    for name, array in zip(names, (images, labels), strict=True):
        data = idx_bytes(array)
        if compress:
            (directory / f"{name}.gz").write_bytes(gzip.compress(data))
        else:
            (directory / name).write_bytes(data)


def test_plain_and_gzip_files_read_back_exactly(tmp_path):
    images = np.random.default_rng(1).integers(0, 256, size=(5, 4, 4), dtype=np.uint8)
    labels = np.array([3, 0, 9, 1, 1], dtype=np.uint8)
    (tmp_path / "plain").mkdir()
    (tmp_path / "gz").mkdir()
    write_split(tmp_path / "plain", "train", images, labels)
    write_split(tmp_path / "gz", "train", images, labels, compress=True)
    for sub in ("plain", "gz"):
        got_images, got_labels = idx.load_idx_split(tmp_path / sub, "train")
        np.testing.assert_array_equal(got_images, images)
        np.testing.assert_array_equal(got_labels, labels.astype(np.int64))
        assert got_labels.dtype == np.int64


def test_header_shape_is_read_big_endian(tmp_path):
    data = np.arange(300, dtype=np.int64).astype(np.uint8)  # 300 > 255: needs two bytes
    path = tmp_path / "a"
    path.write_bytes(bytes([0, 0, 8, 2]) + struct.pack(">II", 1, 300) + data.tobytes())
    got = idx.read_idx(path)
    assert got.shape == (1, 300)
    np.testing.assert_array_equal(got[0], data)


def test_truncated_file_is_a_clear_error(tmp_path):
    data = idx_bytes(np.zeros((3, 4, 4), dtype=np.uint8))
    path = tmp_path / "train-images-idx3-ubyte"
    path.write_bytes(data[:-5])
    with pytest.raises(idx.IdxError, match=r"truncated: 43 data bytes for shape \(3, 4, 4\)"):
        idx.read_idx(path)
    path.write_bytes(data[:10])
    with pytest.raises(idx.IdxError, match="truncated header"):
        idx.read_idx(path)


def test_truncated_gzip_is_a_clear_error(tmp_path):
    data = gzip.compress(idx_bytes(np.zeros((30, 8, 8), dtype=np.uint8)))
    path = tmp_path / "x.gz"
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(idx.IdxError, match="cannot be read"):
        idx.read_idx(path)


def test_wrong_magic_and_type_are_clear_errors(tmp_path):
    path = tmp_path / "f"
    path.write_bytes(b"\x1f\x8b\x08\x03" + bytes(20))
    with pytest.raises(idx.IdxError, match="wrong magic number 1f8b0803"):
        idx.read_idx(path)
    path.write_bytes(bytes([0, 0, 0x0D, 1]) + struct.pack(">I", 1) + bytes(4))
    with pytest.raises(idx.IdxError, match="element type 0x0d; expected 0x08"):
        idx.read_idx(path)
    path.write_bytes(b"\x00\x00")
    with pytest.raises(idx.IdxError, match="too short"):
        idx.read_idx(path)


def test_too_long_file_is_an_error(tmp_path):
    path = tmp_path / "f"
    path.write_bytes(idx_bytes(np.zeros(4, dtype=np.uint8)) + b"\x00")
    with pytest.raises(idx.IdxError, match="longer than its header says"):
        idx.read_idx(path)


def test_images_and_labels_must_agree(tmp_path):
    write_split(tmp_path, "test", np.zeros((3, 4, 4)), np.zeros(2))
    with pytest.raises(idx.IdxError, match="3 test images but 2 labels"):
        idx.load_idx_split(tmp_path, "test")


def test_missing_files_name_both_places_and_the_four_names(tmp_path, monkeypatch):
    monkeypatch.setattr(idx, "DEBIAN_DIR", tmp_path / "nowhere")
    with pytest.raises(FileNotFoundError) as err:
        idx.find_idx_dir(tmp_path)
    message = str(err.value)
    assert str(tmp_path) in message and "nowhere" in message
    for name in (
        "train-images-idx3-ubyte",
        "train-labels-idx1-ubyte",
        "t10k-images-idx3-ubyte",
        "t10k-labels-idx1-ubyte",
    ):
        assert name in message
    with pytest.raises(FileNotFoundError, match="no --data-dir was given"):
        idx.find_idx_dir(None)


def test_directory_search_prefers_the_given_directory(tmp_path, monkeypatch):
    monkeypatch.setattr(idx, "DEBIAN_DIR", tmp_path / "debian")
    (tmp_path / "debian").mkdir()
    (tmp_path / "mine").mkdir()
    for place in ("debian", "mine"):
        write_split(tmp_path / place, "train", np.zeros((1, 4, 4)), np.zeros(1))
        write_split(tmp_path / place, "test", np.zeros((1, 4, 4)), np.zeros(1), compress=True)
    assert idx.find_idx_dir(tmp_path / "mine") == tmp_path / "mine"
    assert idx.find_idx_dir(None) == tmp_path / "debian"
