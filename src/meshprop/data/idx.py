"""The IDX files of MNIST and Fashion-MNIST (plain or gzip), read from a directory.

An IDX file is a 4-byte magic number ``00 00 TT DD`` (TT the element type, 0x08 = unsigned byte;
DD the number of dimensions), DD big-endian uint32 sizes, then the elements in row-major order.
Images are ``idx3`` (n, 28, 28), labels ``idx1`` (n,).  Both the plain files and the ``.gz``
files the datasets are distributed as are accepted.

Where the files are looked for (:func:`find_idx_dir`): the directory given (``--data-dir``), else
:data:`DEBIAN_DIR`, where Debian's ``dataset-fashion-mnist`` package installs them (``make
data``).  Nothing is ever downloaded.
"""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np

__all__ = [
    "DEBIAN_DIR",
    "IDX_FILES",
    "IdxError",
    "find_idx_dir",
    "load_idx_split",
    "read_idx",
]

#: where Debian's ``dataset-fashion-mnist`` package puts the four files.
DEBIAN_DIR = Path("/usr/share/datasets/fashion-mnist")
#: the four standard file names (each may also carry a ``.gz`` suffix).
IDX_FILES: dict[str, tuple[str, str]] = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
_UBYTE = 0x08


class IdxError(ValueError):
    """An IDX file is missing, truncated or not an IDX file of unsigned bytes."""


def _read_bytes(path: Path) -> bytes:
    try:
        if path.suffix == ".gz":
            with gzip.open(path, "rb") as f:
                return f.read()
        return path.read_bytes()
    except (OSError, EOFError) as exc:  # gzip raises BadGzipFile (OSError) or EOFError
        raise IdxError(f"{path}: cannot be read ({exc})") from exc


def read_idx(path: str | Path) -> np.ndarray:
    """The array stored in one IDX file of unsigned bytes (``.gz`` decompressed).

    Raises :class:`IdxError` naming the file when the magic number is wrong, the element type
    is not unsigned byte, or the file holds fewer (or more) bytes than its header announces.
    """
    path = Path(path)
    data = _read_bytes(path)
    if len(data) < 4:
        raise IdxError(f"{path}: {len(data)} bytes, too short for an IDX header (4-byte magic)")
    if data[0] != 0 or data[1] != 0:
        raise IdxError(
            f"{path}: wrong magic number {data[:4].hex()}; an IDX file starts with 00 00 "
            "followed by the type and the number of dimensions (e.g. 00000803 for images)"
        )
    if data[2] != _UBYTE:
        raise IdxError(f"{path}: element type 0x{data[2]:02x}; expected 0x08 (unsigned byte)")
    ndim = data[3]
    if ndim < 1:
        raise IdxError(f"{path}: 0 dimensions in the magic number {data[:4].hex()}")
    header = 4 + 4 * ndim
    if len(data) < header:
        raise IdxError(f"{path}: truncated header ({len(data)} bytes, expected {header})")
    shape = tuple(int(s) for s in np.frombuffer(data, dtype=">u4", count=ndim, offset=4))
    expected = int(np.prod(shape, dtype=np.int64))
    if len(data) - header != expected:
        state = "truncated" if len(data) - header < expected else "longer than its header says"
        raise IdxError(
            f"{path}: {state}: {len(data) - header} data bytes for shape {shape} "
            f"(expected {expected})"
        )
    return np.frombuffer(data, dtype=np.uint8, offset=header).reshape(shape).copy()


def _locate(directory: Path, name: str) -> Path | None:
    for candidate in (directory / name, directory / f"{name}.gz"):
        if candidate.is_file():
            return candidate
    return None


def _expected_names() -> str:
    return ", ".join(n for pair in IDX_FILES.values() for n in pair)


def find_idx_dir(data_dir: str | Path | None = None) -> Path:
    """The directory holding the four IDX files: ``data_dir`` when given, else
    :data:`DEBIAN_DIR`.  A clear :class:`FileNotFoundError` otherwise, naming both places and
    the four file names."""
    places = [Path(data_dir)] if data_dir is not None else [DEBIAN_DIR]
    for place in places:
        names = [n for pair in IDX_FILES.values() for n in pair]
        if all(_locate(place, n) is not None for n in names):
            return place
    where = f"--data-dir {data_dir}" if data_dir is not None else "no --data-dir was given"
    raise FileNotFoundError(
        f"the Fashion-MNIST/MNIST IDX files were not found ({where}; the Debian package's "
        f"location {DEBIAN_DIR} does not hold them either). Expected the four files "
        f"{_expected_names()} (plain or .gz) in one directory: pass --data-dir DIR, or run "
        "`make data` (installs Debian's dataset-fashion-mnist where apt is available)"
    )


def load_idx_split(directory: str | Path, split: str) -> tuple[np.ndarray, np.ndarray]:
    """Images (n, rows, cols) uint8 and labels (n,) int64 of ``split`` ("train" or "test")."""
    if split not in IDX_FILES:
        raise ValueError(f"split must be one of {sorted(IDX_FILES)}, got {split!r}")
    directory = Path(directory)
    paths = []
    for name in IDX_FILES[split]:
        path = _locate(directory, name)
        if path is None:
            raise FileNotFoundError(f"{directory}: no {name} (or {name}.gz)")
        paths.append(path)
    images, labels = read_idx(paths[0]), read_idx(paths[1])
    if images.ndim != 3:
        raise IdxError(f"{paths[0]}: expected images of 3 dimensions, got shape {images.shape}")
    if labels.ndim != 1:
        raise IdxError(f"{paths[1]}: expected labels of 1 dimension, got shape {labels.shape}")
    if len(images) != len(labels):
        raise IdxError(f"{directory}: {len(images)} {split} images but {len(labels)} labels")
    return images, labels.astype(np.int64)
