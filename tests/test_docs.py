"""Every code block of README.md and docs/ runs here, or says in the Markdown why it cannot.

The rules, page by page (README.md, then docs/**/*.md in order), blocks in page order:

- A block preceded by ``<!-- not run in the suite: REASON -->`` (blank lines between allowed) is
  not run; REASON must say why (a command of minutes, a GPU, a file tree, ...).  A ``text``
  block right after a not-run block is that block's shown output and is covered by its marker.
- ``python`` blocks are executed in order, sharing one namespace per page, in a temporary
  working folder of the page's own (files one block writes, the next block reads).
- ``bash``, ``console``, ``sh`` and unlabelled blocks whose every line is a ``meshprop ...``
  command (a ``$ `` prompt and ``# comments`` allowed) are run in-process through
  ``meshprop.cli.main`` in that same folder, and each command must exit with status 0.
- ``toml`` and ``json`` blocks are parsed.
- A ``text`` block right after a block that ran is its expected standard output, compared
  line by line (trailing spaces ignored) with what the block printed, exactly, but for one
  tolerance: a number followed by a time unit (``s``, ``ms``, ``µs``, ``us``, ``min``) or by
  ``/s`` is a timing and matches any number (the spaces padding it too).  No other number gets
  a tolerance.
- Any other block (unmarked, not runnable) FAILS the test: nothing is skipped silently.

``test_no_page_refers_to_issues_or_outside_files`` checks src/, tests/, docs/, benchmarks/ and
README.md for issue numbers and for files outside the repository.
"""

from __future__ import annotations

import contextlib
import io
import re
import shlex
import tomllib
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
NOT_RUN = re.compile(r"<!--\s*not run in the suite:\s*(?P<reason>[^>]*?)\s*-->")
FENCE = re.compile(r"^```(?P<lang>[\w-]*)\s*$")
SHELL = {"bash", "console", "sh", ""}
TIMING = re.compile(
    r"[ \t]*\d[\d,]*(?:\.\d+)?(?:e[+-]?\d+)?\s?(?:s|ms|µs|us|min)\b|[ \t]*\d[\d,.]*(?=/s)"
)


@dataclass
class Block:
    page: Path
    line: int  # 1-based line of the opening fence
    lang: str
    text: str
    reason: str | None  # the not-run marker's reason, None when unmarked

    @property
    def where(self) -> str:
        page = self.page.relative_to(ROOT) if self.page.is_relative_to(ROOT) else self.page
        return f"{page}:{self.line}"


def blocks_of(page: Path) -> list[Block]:
    lines = page.read_text(encoding="utf-8").split("\n")
    found: list[Block] = []
    reason: str | None = None
    i = 0
    while i < len(lines):
        marker = NOT_RUN.search(lines[i])
        if marker:
            reason = marker["reason"]
        fence = FENCE.match(lines[i])
        if fence:
            end = next(j for j in range(i + 1, len(lines)) if lines[j].startswith("```"))
            body = "\n".join(lines[i + 1 : end])
            found.append(Block(page, i + 1, fence["lang"], body, reason))
            reason = None
            i = end + 1
            continue
        if lines[i].strip() and not marker:
            reason = None  # a marker applies to the very next block only
        i += 1
    return found


def commands_of(block: Block) -> list[str] | None:
    """The ``meshprop`` commands of a shell block, or None when it holds anything else."""
    if block.lang not in SHELL:
        return None
    commands = []
    for line in block.text.split("\n"):
        line = line.strip().removeprefix("$ ")
        if not line or line.startswith("#"):
            continue
        command = line.split(" #")[0].strip()
        if not command.startswith("meshprop "):
            return None
        commands.append(command)
    return commands or None


def _normalise(text: str) -> list[str]:
    lines = [TIMING.sub(" <time>", line.rstrip()) for line in text.strip("\n").split("\n")]
    return lines


def run_page(page: Path, folder: Path) -> int:
    """Run every block of ``page`` by the rules above; returns how many blocks ran or were
    compared."""
    import torch

    from meshprop.cli import main

    threads = torch.get_num_threads()  # a page may set its own; restored after it
    try:
        return _run_blocks(page, folder, main)
    finally:
        torch.set_num_threads(threads)


def _run_blocks(page: Path, folder: Path, main) -> int:  # type: ignore[no-untyped-def]
    namespace: dict[str, object] = {"__name__": f"docs_{page.stem}"}
    output: str | None = None  # what the previous block printed, if it ran
    previous_skipped = False
    done = 0
    for block in blocks_of(page):
        if block.reason is not None:
            assert block.reason.strip(), f"{block.where}: the not-run marker gives no reason"
            output, previous_skipped = None, True
            continue
        if block.lang == "text":
            if previous_skipped:
                previous_skipped = False
                continue
            assert output is not None, f"{block.where}: a text block that follows no run block"
            assert _normalise(output) == _normalise(block.text), (
                f"{block.where}: the shown output differs from the output\n--- shown\n"
                f"{block.text}\n--- printed\n{output}"
            )
            output, done = None, done + 1
            continue
        previous_skipped = False
        captured = io.StringIO()
        commands = commands_of(block)
        with contextlib.chdir(folder), contextlib.redirect_stdout(captured):
            if block.lang == "python":
                code = compile(block.text, block.where, "exec")
                exec(code, namespace)
            elif block.lang == "toml":
                tomllib.loads(block.text)
            elif block.lang == "json":
                import json

                json.loads(block.text)
            elif commands is not None:
                for command in commands:
                    code = main(shlex.split(command)[1:])
                    assert code == 0, f"{block.where}: {command!r} exited with {code}"
            else:
                pytest.fail(
                    f"{block.where}: a {block.lang or 'unlabelled'} block that the suite does "
                    "not run: make it runnable or mark it <!-- not run in the suite: REASON -->"
                )
        output, done = captured.getvalue(), done + 1
    return done


@pytest.mark.docs
@pytest.mark.parametrize("page", PAGES, ids=[str(p.relative_to(ROOT)) for p in PAGES])
def test_code_blocks_run(page, tmp_path, monkeypatch):
    monkeypatch.setenv("MPLBACKEND", "Agg")
    run_page(page, tmp_path)


def test_the_collector_fails_on_an_unmarked_block_it_cannot_run(tmp_path):
    page = tmp_path / "page.md"
    page.write_text("```\nmake bench\n```\n")
    with pytest.raises(pytest.fail.Exception, match="does not run"):
        run_page(page, tmp_path)
    page.write_text("<!-- not run in the suite: minutes -->\n\n```\nmake bench\n```\n")
    assert run_page(page, tmp_path) == 0
    page.write_text("```python\nprint('a 1.5 s', 2)\n```\n\n```text\na 9 s 2\n```\n")
    assert run_page(page, tmp_path) == 2
    page.write_text("```python\nprint(3)\n```\n\n```text\n4\n```\n")
    with pytest.raises(AssertionError, match="differs"):
        run_page(page, tmp_path)


FORBIDDEN = re.compile(r"\b[Ii]ssues? #?\d|(?<![\w&])#\d{1,4}\b|DESIGN\.md|\.\./shared")


def test_no_page_refers_to_issues_or_outside_files():
    files = [ROOT / "README.md"]
    for folder in ("src", "tests", "docs", "benchmarks"):
        files += [p for p in (ROOT / folder).rglob("*") if p.suffix in {".py", ".md"}]
    bad = []
    for file in files:
        if file == Path(__file__).resolve():
            continue
        for number, line in enumerate(file.read_text(encoding="utf-8").split("\n"), 1):
            if FORBIDDEN.search(line):
                bad.append(f"{file.relative_to(ROOT)}:{number}: {line.strip()}")
    assert not bad, "\n".join(bad)
