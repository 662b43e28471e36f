"""The loopback ingest reads envelopes as sentry-sdk writes them."""

from __future__ import annotations

from sentry_sdk.envelope import Envelope, Item, PayloadRef

from asgi_sentry_ctx.testing import parse_envelope


def serialized(*items: Item) -> bytes:
    return Envelope(headers={"event_id": "abc", "sent_at": "now"}, items=list(items)).serialize()


def test_the_envelope_header_is_read() -> None:
    assert parse_envelope(serialized()).header == {"event_id": "abc", "sent_at": "now"}


def test_events_and_transactions_are_decoded_json() -> None:
    envelope = parse_envelope(
        serialized(
            Item(payload=PayloadRef(json={"message": "boom"}), type="event"),
            Item(payload=PayloadRef(json={"transaction": "/x"}), type="transaction"),
        )
    )
    assert envelope.payloads("event") == [{"message": "boom"}]
    assert envelope.payloads("transaction") == [{"transaction": "/x"}]


def test_other_json_items_are_decoded_too() -> None:
    report = {"discarded_events": [{"reason": "queue_overflow", "quantity": 1}]}
    envelope = parse_envelope(
        serialized(Item(payload=PayloadRef(json=report), type="client_report"))
    )
    assert envelope.payloads("client_report") == [report]


def test_a_binary_attachment_stays_bytes() -> None:
    attachment = Item(payload=b"\x00\x01log\n", type="attachment", content_type="text/plain")
    envelope = parse_envelope(serialized(attachment))
    assert envelope.payloads("attachment") == [b"\x00\x01log\n"]
