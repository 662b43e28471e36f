"""MkDocs hooks for this site.

A code block fenced as ```python no-exec is shown but not run by
tests/test_docs_examples.py. Markdown knows no such fence: render it as a plain
python block.
"""

from __future__ import annotations

import re
from typing import Any

_NO_EXEC = re.compile(r"^([ \t]*```python)[ \t]+no-exec[ \t]*$", re.MULTILINE)


def on_page_markdown(markdown: str, **kwargs: Any) -> str:
    return _NO_EXEC.sub(r"\1", markdown)
