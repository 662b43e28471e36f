"""Helpers to read what the loopback ingest received."""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from typing import Any

import sentry_sdk

from asgi_sentry_ctx.testing import SentryIngest


def events_before_marker(ingest: SentryIngest) -> list[dict[str, Any]]:
    """Every event received before a fresh marker message, captured now, arrived.

    The SDK's transport sends envelopes one at a time, in order: an event
    captured before the marker arrives before it, or was never sent. This is
    how a test proves that an event was *not* sent, without sleeping.
    """
    marker = f"marker-{uuid.uuid4().hex}"
    sentry_sdk.capture_message(marker)
    count = 1
    while True:
        events = ingest.wait_for_events(count)
        if any(event.get("message") == marker for event in events):
            return [event for event in events if event.get("message") != marker]
        count = len(events) + 1


def as_json(event: dict[str, Any]) -> str:
    """The event as the JSON text Sentry received (unescaped, to search it for a string)."""
    return json.dumps(event, ensure_ascii=False)


def message_of(event: dict[str, Any]) -> str:
    """The text Sentry shows for ``event``: a captured message, or a logging
    record's ``logentry`` with its arguments in. sentry-sdk 2.20 sends the
    record's format and ``params`` only; later releases add ``formatted``."""
    if event.get("message"):
        return str(event["message"])
    entry = event["logentry"]
    if "formatted" in entry:
        return str(entry["formatted"])
    params = entry.get("params")
    if not params:
        return str(entry["message"])
    return str(entry["message"] % (tuple(params) if isinstance(params, list) else params))


def crumb_messages(event: dict[str, Any]) -> list[str]:
    return [crumb.get("message") for crumb in event.get("breadcrumbs", {}).get("values", [])]


def telemetry_items(
    ingest: SentryIngest,
    kind: str,
    until: Callable[[list[dict[str, Any]]], bool] | None = None,
) -> list[dict[str, Any]]:
    """The ``kind`` items (``"log"``, ``"span"``) Sentry received, flushed first,
    each with its attributes' values; with ``until``, once they satisfy it.

    ``until`` is for items that may arrive after the flush returns: the SDK's
    span batcher sends from its own thread too, and a batch it took just
    before the flush is queued after the flush waited.
    """
    sentry_sdk.flush()
    if until is not None:
        ingest.wait_for(lambda received: until(_telemetry(received, kind)))
    return _telemetry(ingest, kind)


def _telemetry(ingest: SentryIngest, kind: str) -> list[dict[str, Any]]:
    return [
        {**item, "attributes": {k: v["value"] for k, v in item["attributes"].items()}}
        for envelope in list(ingest.envelopes)
        for container in envelope.payloads(kind)
        for item in container["items"]
    ]


def named(*names: str) -> Callable[[list[dict[str, Any]]], bool]:
    """An ``until`` for ``telemetry_items``: items of each of ``names`` arrived."""
    return lambda items: set(names) <= {item.get("name") for item in items}
