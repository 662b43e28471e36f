"""Every ``python`` code block in README.md and docs/ runs, so the docs never rot.

A page's blocks run in order in one namespace, like a reader typing them into
one file. A block fenced as ```python no-exec is shown but not run (for
snippets that only make sense inside a larger app); use it sparingly. A block
fenced as ```python pytest is a test file (docs/testing.md): pytest runs it in
a fresh process, with the library's pytest plugin found through its entry point.
"""

from __future__ import annotations

import asyncio
import os
import re
import sys
import textwrap
import types
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import reset_sdk

ROOT = Path(__file__).resolve().parent.parent
PAGES = sorted([ROOT / "README.md", *(ROOT / "docs").rglob("*.md")])
# A fence may be indented (inside a list item or an admonition): its code is dedented.
_BLOCK = re.compile(r"^([ \t]*)```python([^\n]*)\n(.*?)^\1```", re.MULTILINE | re.DOTALL)


def python_blocks(page: Path) -> list[str]:
    return [
        textwrap.dedent(code)
        for _, info, code in _BLOCK.findall(page.read_text())
        if "no-exec" not in info and "pytest" not in info
    ]


def page_test_files(page: Path) -> list[str]:
    return [
        textwrap.dedent(code)
        for _, info, code in _BLOCK.findall(page.read_text())
        if info.strip() == "pytest"
    ]


@pytest.fixture(autouse=True)
def sentry_off_afterwards() -> Iterator[None]:
    yield
    reset_sdk()


@pytest.mark.parametrize(
    "page", [p for p in PAGES if python_blocks(p)], ids=lambda p: str(p.relative_to(ROOT))
)
def test_page_examples_run(page: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Examples see a clean environment (no DSN, no sample rates, no dev switch of
    # the reader's shell), and whatever they set in os.environ is undone afterwards.
    for name in list(os.environ):
        if name.startswith(("SENTRY_", "ASGI_SENTRY_CTX_")):
            monkeypatch.delenv(name)
    monkeypatch.setattr(os, "environ", os.environ.copy())
    # A real module: frameworks that read annotations (Litestar, pydantic) look
    # the handler's module up in sys.modules.
    module = types.ModuleType(f"docs_example_{page.stem}")
    monkeypatch.setitem(sys.modules, module.__name__, module)
    namespace = module.__dict__
    for code in python_blocks(page):
        # dont_inherit: this module's `from __future__` imports must not change the examples.
        exec(compile(code, str(page), "exec", dont_inherit=True), namespace)
    # A page may define ``async def main()`` to drive what it showed.
    main = namespace.get("main")
    if callable(main):
        result = main()
        if asyncio.iscoroutine(result):
            asyncio.run(result)


@pytest.mark.parametrize(
    "page", [p for p in PAGES if page_test_files(p)], ids=lambda p: str(p.relative_to(ROOT))
)
def test_page_test_files_pass(page: Path, pytester: pytest.Pytester) -> None:
    for number, code in enumerate(page_test_files(page)):
        pytester.makepyfile(**{f"test_{page.stem}_{number}": code})
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-q")
    tests = sum(code.count("\ndef test_") for code in page_test_files(page))
    result.assert_outcomes(passed=tests)
