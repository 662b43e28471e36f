"""Reading the timestamps events carry: a ``datetime``, epoch seconds or ISO 8601 text.

An event still in the SDK holds ``datetime`` objects; once serialized (in the
store, or as Sentry receives it) the same fields are numbers or strings.
"""

from __future__ import annotations

from datetime import UTC, datetime

__all__ = ["parse_timestamp"]


def parse_timestamp(value: object) -> datetime | None:
    """``value`` as an aware ``datetime`` (naive ones taken as UTC); ``None`` if it is none.

    Epoch seconds (an ``int`` or ``float``, not a ``bool``) and ISO 8601 strings
    (a ``Z`` suffix included) are read; anything else, or a string that does
    not parse, gives ``None``.
    """
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    if isinstance(value, int | float) and not isinstance(value, bool):
        return datetime.fromtimestamp(value, UTC)
    if isinstance(value, str):
        try:
            parsed = datetime.fromisoformat(value)
        except ValueError:
            return None
        return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
    return None
