"""The documentation's code runs: every Python block of the README and the guide pages.

A page is run like a session: its blocks in order, in one namespace, in a fresh working
directory. ```` ```python ```` blocks are executed; ```` ```pycon ```` blocks (``>>>`` prompts)
are doctests whose printed output is compared with what the page shows (``...`` matches
anything, whitespace is normalised). A block whose fence says ```` ```python notest ```` is
shown, not run: the page says why next to it (a full-size dataset that is not in the mirror,
hours of training). Pages whose examples need a dataset from the mirror skip without one, and
fail under ``GNNKIT_REQUIRE_DATA=1``, like every other data test (``conftest.py``).
"""

from __future__ import annotations

import doctest
import os
import re
import textwrap
from dataclasses import dataclass
from pathlib import Path

import pytest
from conftest import REPO, require_data

FENCE = re.compile(
    r"^(?P<indent> *)```(?P<info>[^`\n]*)\n(?P<body>.*?)^(?P=indent)```\s*$", re.M | re.S
)
RUN = {"python", "py", "pycon"}
# Files a page's blocks create stay inside a temporary directory; nothing is downloaded.
PAGES = sorted(
    [REPO / "README.md"]
    + [
        path
        for path in (REPO / "docs").rglob("*.md")
        if "_build" not in path.parts and "api" not in path.relative_to(REPO / "docs").parts
    ]
)


@dataclass
class Block:
    path: Path
    line: int
    language: str
    code: str
    run: bool


def code_blocks(path: Path) -> list[Block]:
    """The fenced code blocks of a Markdown file, with the line each starts on."""
    text = path.read_text(encoding="utf-8")
    blocks = []
    for match in FENCE.finditer(text):
        words = match["info"].split()
        language = words[0] if words else ""
        line = text.count("\n", 0, match.start()) + 1
        body = textwrap.dedent(match["body"]) if match["indent"] else match["body"]
        blocks.append(Block(path, line, language, body, "notest" not in words[1:]))
    return blocks


def _label(path: Path) -> str:
    return str(path.relative_to(REPO)) if path.is_relative_to(REPO) else path.name


def run_page(path: Path) -> int:
    """Run every runnable Python block of ``path``; return how many ran."""
    namespace: dict[str, object] = {"__name__": "__docs__"}
    parser = doctest.DocTestParser()
    flags = doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE
    ran = 0
    for block in code_blocks(path):
        if block.language not in RUN or not block.run:
            continue
        where = f"{_label(path)}:{block.line}"
        if block.language == "pycon":
            test = parser.get_doctest(block.code, namespace, where, str(path), block.line)
            # DebugRunner stops at the first problem and raises it, so an exception the page
            # did not expect (a dataset that is not at hand) reaches the caller as itself.
            runner = doctest.DebugRunner(optionflags=flags)
            try:
                runner.run(test, clear_globs=False)
            except doctest.UnexpectedException as exc:
                raise exc.exc_info[1] from None
            except doctest.DocTestFailure as exc:
                raise AssertionError(
                    f"{where}: printed output differs at {exc.example.source.strip()!r}: "
                    f"expected {exc.example.want!r}, got {exc.got!r}"
                ) from None
            namespace.update(test.globs)  # DocTest ran on a copy; later blocks see its names
        else:
            exec(compile(block.code, where, "exec"), namespace)
        ran += 1
    return ran


def test_fence_pattern_finds_blocks_with_and_without_marks(tmp_path):
    page = tmp_path / "page.md"
    page.write_text(
        "# t\n\n```python\nx = 1\n```\n\n```python notest\nraise SystemExit\n```\n\n"
        "- item\n\n  ```pycon\n  >>> x + 1\n  2\n  ```\n\n```console\n$ ls\n```\n"
    )
    blocks = code_blocks(page)
    assert [(b.language, b.run, b.line) for b in blocks] == [
        ("python", True, 3),
        ("python", False, 7),
        ("pycon", True, 13),
        ("console", True, 18),
    ]
    assert run_page(page) == 2


def test_a_wrong_printed_output_fails(tmp_path):
    page = tmp_path / "page.md"
    page.write_text("```pycon\n>>> print(1 + 1)\n3\n```\n")
    with pytest.raises(AssertionError, match=r"page.md:1: printed output differs"):
        run_page(page)


def test_the_readme_and_every_guide_page_are_collected():
    names = {_label(path) for path in PAGES}
    guide = {_label(path) for path in (REPO / "docs" / "guide").glob("*.md")}
    assert {"README.md", "docs/getting-started.md"} <= names and guide and guide <= names
    # The README's library example and the quickstart are run, not shown.
    for name in ("README.md", "docs/getting-started.md"):
        assert runnable(REPO / name), name


def runnable(path: Path) -> bool:
    return any(block.language in RUN and block.run for block in code_blocks(path))


@pytest.mark.parametrize("path", [path for path in PAGES if runnable(path)], ids=_label)
def test_page_code_runs(path, tmp_path, monkeypatch, one_thread_docs):
    from gnnkit.errors import DataUnavailableError

    # Datasets come from the repository's data root (caches reused) or the mirror, never the
    # network; the blocks' own files land in a temporary directory.
    monkeypatch.setenv("GNNKIT_DATA", os.environ.get("GNNKIT_DATA") or str(REPO / "datasets"))
    monkeypatch.setenv("GNNKIT_OFFLINE", "1")
    monkeypatch.setenv("MPLBACKEND", "Agg")
    monkeypatch.chdir(tmp_path)
    try:
        assert run_page(path) > 0
    except DataUnavailableError as exc:
        if require_data():
            pytest.fail(f"GNNKIT_REQUIRE_DATA=1 but {_label(path)} needs data: {exc}")
        pytest.skip(f"{_label(path)} needs a dataset: {str(exc).splitlines()[0]}")


@pytest.fixture
def one_thread_docs():
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
