"""The adapters' one seam into the core: what it exports, and the checks adapters share."""

from __future__ import annotations

from typing import Any

import pytest

from asgi_sentry_ctx.adapters import support
from asgi_sentry_ctx.adapters.support import check_user_source


def user_getter(user: Any) -> Any:
    return user


class TestCheckUserSource:
    @pytest.mark.parametrize(
        ("getter", "options"),
        [
            (None, {}),
            (None, {"user_extractor": None}),
            (None, {"user_extractor": lambda scope: "u-1"}),
            (user_getter, {}),
            (user_getter, {"header_name": "X-Trace-ID"}),
        ],
        ids=["neither", "no-lookup", "extractor", "getter", "getter-and-other-options"],
    )
    def test_one_source_or_none_is_fine(self, getter: Any, options: dict[str, Any]) -> None:
        check_user_source(getter, options)

    @pytest.mark.parametrize(
        "extractor", [lambda scope: "u-1", None], ids=["extractor", "explicit-none"]
    )
    def test_a_getter_and_a_passed_extractor_are_refused(self, extractor: Any) -> None:
        # An explicit ``user_extractor=None`` counts: it means "no user lookup".
        with pytest.raises(TypeError, match="pass user_getter or user_extractor, not both"):
            check_user_source(user_getter, {"user_extractor": extractor})


def test_every_export_exists() -> None:
    for name in support.__all__:
        assert getattr(support, name) is not None, name
