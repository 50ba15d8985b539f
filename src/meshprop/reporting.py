"""One place for everything training writes to the console or to files.

``fit`` and the commands never print or write directly: they go through a :class:`Reporter`.
``Reporter(enabled=False)`` silences all of it (e.g. every rank but 0 of a data-parallel run);
``progress=False`` keeps messages and files but drops the progress bar.  Files are written
atomically (:mod:`meshprop.atomic`): a reader never sees half a file.  :func:`format_table`
lays out every table the commands print.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TextIO

from tqdm import tqdm

from .atomic import atomic_write_text, atomic_write_with

__all__ = ["NullBar", "Reporter", "format_table"]


class NullBar:
    """A progress bar that shows nothing (same methods as the tqdm ones used here)."""

    def update(self, n: int = 1) -> None:
        pass

    def set_postfix(self, **kwargs: Any) -> None:
        pass

    def close(self) -> None:
        pass


class Reporter:
    """Console messages, progress bars and output files, all silenced when ``enabled=False``.

    The bar is tqdm's, shown only when its stream is a terminal (``disable=None``) and
    ``progress`` is True.
    """

    def __init__(
        self, enabled: bool = True, progress: bool = True, stream: TextIO | None = None
    ) -> None:
        self.enabled = enabled
        self.progress = progress
        self._stream = stream

    @property
    def stream(self) -> TextIO:
        return sys.stdout if self._stream is None else self._stream

    def print(self, *parts: Any) -> None:
        if self.enabled:
            print(*parts, file=self.stream, flush=True)

    def bar(self, total: int, desc: str) -> tqdm | NullBar:
        if not (self.enabled and self.progress):
            return NullBar()
        return tqdm(total=total, desc=desc, disable=None, file=sys.stderr, leave=False)

    def write_text(self, path: str | Path, text: str) -> Path | None:
        if not self.enabled:
            return None
        return atomic_write_text(path, text)

    def write_json(self, path: str | Path, data: Any) -> Path | None:
        return self.write_text(path, json.dumps(data, indent=2) + "\n")

    def write_with(self, path: str | Path, writer: Callable[[Path], Any]) -> Path | None:
        """Call ``writer(temporary)`` (a figure's savefig, ...) when enabled; ``temporary``
        (beside ``path``, same suffix) then replaces ``path`` atomically
        (:mod:`meshprop.atomic`)."""
        if not self.enabled:
            return None
        return atomic_write_with(path, writer)


def format_table(rows: Sequence[Sequence[str]], header: Sequence[str] | None = None) -> str:
    """Rows of text cells as an aligned table: cells padded to their column's widest and joined
    by ``" | "``, a rule of dashes above and below (and under the header, when given)."""
    lines = ([list(header)] if header is not None else []) + [list(row) for row in rows]
    if not lines:
        raise ValueError("a table needs at least one row")
    columns = len(lines[0])
    if any(len(line) != columns for line in lines):
        raise ValueError(f"every row of a table needs {columns} cells")
    widths = [max(len(line[k]) for line in lines) for k in range(columns)]

    def render(cells: list[str]) -> str:
        padded = [cell.ljust(width) for cell, width in zip(cells[:-1], widths, strict=False)]
        return " | ".join([*padded, cells[-1]])

    text = [render(line) for line in lines]
    rule = "-" * max(len(line) for line in text)
    if header is not None:
        text.insert(1, rule)
    return "\n".join([rule, *text, rule])
