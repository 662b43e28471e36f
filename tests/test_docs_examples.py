"""Every ``python`` code block in README.md and docs/ runs, so the docs never rot.

A page's blocks run in order in one namespace, like a reader typing them into
one file. A block fenced as ```python no-exec is shown but not run (for
snippets that only make sense inside a larger app); use it sparingly.
"""

from __future__ import annotations

import asyncio
import re
import sys
import types
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import reset_sdk

ROOT = Path(__file__).resolve().parent.parent
PAGES = sorted([ROOT / "README.md", *(ROOT / "docs").rglob("*.md")])
_BLOCK = re.compile(r"^```python([^\n]*)\n(.*?)^```", re.MULTILINE | re.DOTALL)


def python_blocks(page: Path) -> list[str]:
    return [code for info, code in _BLOCK.findall(page.read_text()) if "no-exec" not in info]


@pytest.fixture(autouse=True)
def sentry_off_afterwards() -> Iterator[None]:
    yield
    reset_sdk()


@pytest.mark.parametrize(
    "page", [p for p in PAGES if python_blocks(p)], ids=lambda p: str(p.relative_to(ROOT))
)
def test_page_examples_run(page: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SENTRY_DSN", raising=False)
    # A real module: frameworks that read annotations (Litestar, pydantic) look
    # the handler's module up in sys.modules.
    module = types.ModuleType(f"docs_example_{page.stem}")
    monkeypatch.setitem(sys.modules, module.__name__, module)
    namespace = module.__dict__
    for code in python_blocks(page):
        exec(compile(code, str(page), "exec"), namespace)
    # A page may define ``async def main()`` to drive what it showed.
    main = namespace.get("main")
    if callable(main):
        result = main()
        if asyncio.iscoroutine(result):
            asyncio.run(result)
