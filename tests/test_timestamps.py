"""Reading event timestamps: the three forms an event's time can take, and what is no time."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from asgi_sentry_ctx._timestamps import parse_timestamp

MOMENT = datetime(2026, 12, 5, 17, 0, 0, 250000, tzinfo=UTC)


def test_an_aware_datetime_is_itself() -> None:
    assert parse_timestamp(MOMENT) is MOMENT


def test_a_naive_datetime_is_taken_as_utc() -> None:
    assert parse_timestamp(MOMENT.replace(tzinfo=None)) == MOMENT


def test_epoch_seconds_are_read_as_utc() -> None:
    assert parse_timestamp(MOMENT.timestamp()) == MOMENT
    assert parse_timestamp(int(MOMENT.timestamp())) == MOMENT.replace(microsecond=0)


@pytest.mark.parametrize(
    "text",
    ["2026-12-05T17:00:00.250000Z", "2026-12-05T17:00:00.250000+00:00", "2026-12-05T17:00:00.25"],
)
def test_iso_8601_text_is_read_with_or_without_a_zone(text: str) -> None:
    assert parse_timestamp(text) == MOMENT


def test_an_offset_is_kept() -> None:
    parsed = parse_timestamp("2026-12-05T18:00:00.25+01:00")
    assert parsed == MOMENT
    assert parsed is not None
    assert parsed.tzinfo == timezone(timedelta(hours=1))


@pytest.mark.parametrize("value", [None, True, False, "yesterday", "", b"2026-12-05", [1.0]])
def test_anything_else_is_no_time(value: object) -> None:
    assert parse_timestamp(value) is None
