"""The API reference stays complete (the strict ``mkdocs build`` checks links and the nav)."""

from __future__ import annotations

import re
from pathlib import Path

import asgi_sentry_ctx

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"


def test_every_public_name_is_in_the_api_reference() -> None:
    """A name added to ``__all__`` gets a ``::: asgi_sentry_ctx.<name>`` entry in docs/api.md."""
    documented = set(
        re.findall(r"^::: asgi_sentry_ctx\.(\w+)$", (DOCS / "api.md").read_text(), re.M)
    )
    assert sorted(set(asgi_sentry_ctx.__all__) - documented) == []
