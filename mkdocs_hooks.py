"""MkDocs hooks for this site.

A code block fenced as ```python no-exec is shown but not run by
tests/test_docs_examples.py, and one fenced as ```python pytest is run as a
test file. Markdown knows no such fences: render them as plain python blocks.
"""

from __future__ import annotations

import re
from typing import Any

_NO_EXEC = re.compile(r"^([ \t]*```python)[ \t]+(?:no-exec|pytest)[ \t]*$", re.MULTILINE)


def on_page_markdown(markdown: str, **kwargs: Any) -> str:
    return _NO_EXEC.sub(r"\1", markdown)
