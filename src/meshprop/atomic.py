"""Atomic file writes: a file is either its old content or its new content, never a mix.

Every writer puts the new content in a temporary file in the target's own directory (same file
system), flushes and ``fsync``s it, then ``os.replace``s it onto the target (atomic on POSIX
and Windows) and ``fsync``s the directory, so a process killed at any instant (SIGKILL, power
loss after the fsync) leaves either the previous file or the complete new one, plus at most a
stray ``.NAME.tmp-*`` file that the next write into the folder may remove
(:func:`remove_stale_temporaries`).

Used by everything a training run writes (:mod:`meshprop.reporting`, :mod:`meshprop.runs`,
:mod:`meshprop.training.resume`).
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Any

__all__ = [
    "TEMP_MARK",
    "atomic_path",
    "atomic_write_bytes",
    "atomic_write_stream",
    "atomic_write_text",
    "atomic_write_with",
    "file_sha256",
    "fsync_directory",
    "remove_stale_temporaries",
]

#: what the name of every temporary file written here contains
TEMP_MARK = ".tmp-"


def _file_mode() -> int:
    """The mode a plain ``open(path, "w")`` would give a new file (0o666 less the umask)."""
    umask = os.umask(0o022)
    os.umask(umask)
    return 0o666 & ~umask


_MODE = _file_mode()


def fsync_directory(directory: str | Path) -> None:
    """Make a rename inside ``directory`` durable (a no-op where directories cannot be opened)."""
    try:
        fd = os.open(str(directory), os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _fsync_file(path: Path) -> None:
    with open(path, "rb+") as handle:
        os.fsync(handle.fileno())


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """A temporary path beside ``path`` (keeping its suffix, so writers that pick a format from
    it, such as matplotlib's ``savefig``, still do); whatever the block writes there replaces
    ``path`` atomically when the block ends without an exception, and is deleted otherwise."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(
        prefix=f".{path.stem}{TEMP_MARK}", suffix=path.suffix, dir=str(path.parent)
    )
    os.close(fd)
    temporary = Path(name)
    try:
        yield temporary
        _fsync_file(temporary)
        os.chmod(temporary, _MODE)  # mkstemp's 0o600 would make the result private
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
    fsync_directory(path.parent)


def atomic_write_with(path: str | Path, writer: Callable[[Path], Any]) -> Path:
    """``writer(temporary_path)`` (a figure's savefig, a checkpoint saver), then the atomic
    replace of ``path``; returns ``path``."""
    with atomic_path(path) as temporary:
        writer(temporary)
    return Path(path)


def atomic_write_bytes(path: str | Path, data: bytes) -> Path:
    """Replace ``path`` by ``data`` atomically; returns ``path``."""
    with atomic_path(path) as temporary:
        temporary.write_bytes(data)
    return Path(path)


def atomic_write_text(path: str | Path, text: str) -> Path:
    """Replace ``path`` by ``text`` (UTF-8) atomically; returns ``path``."""
    return atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_stream(path: str | Path, writer: Callable[[IO[bytes]], Any]) -> Path:
    """``writer(binary_file)`` (e.g. ``torch.save(obj, f)``), then the atomic replace."""
    with atomic_path(path) as temporary, open(temporary, "wb") as handle:
        writer(handle)
    return Path(path)


def file_sha256(path: str | Path) -> str:
    """The SHA-256 of a file's bytes, as hex."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def remove_stale_temporaries(directory: str | Path) -> list[Path]:
    """Delete the temporary files an interrupted atomic write left in ``directory`` and its
    sub-folders (names ``.*.tmp-*``); returns them."""
    directory = Path(directory)
    if not directory.is_dir():
        return []
    stale = [p for p in directory.rglob(f".*{TEMP_MARK}*") if p.is_file()]
    for p in stale:
        p.unlink(missing_ok=True)
    return stale
