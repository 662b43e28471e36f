"""EventStore: bounded, shared by processes, leases and rate limits, on a real SQLite file."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from asgi_sentry_ctx.store.delivery import register_live_owner, unregister_live_owner
from asgi_sentry_ctx.store.event_store import EventStore


@pytest.fixture
def store(tmp_path: Path) -> Iterator[EventStore]:
    opened = EventStore(tmp_path / "events.db", max_envelopes=3)
    yield opened
    opened.close()


def put(store: EventStore, name: str, category: str = "error", size: int = 0) -> None:
    body = name.encode() + b"\n" + b"x" * size
    store.put(body, event_id=name, kinds=["event"], categories=[category], forward=True)


def names(store: EventStore) -> list[str | None]:
    return [e.event_id for e in store.envelopes(newest_first=False)]


def test_sent_envelopes_are_evicted_before_pending_ones(store: EventStore) -> None:
    put(store, "a")
    put(store, "b")
    put(store, "c")
    [a] = store.claim("me", limit=1, lease=60)
    store.mark_sent(a.id, keep=True)
    put(store, "d")
    assert names(store) == ["b", "c", "d"]
    assert store.stats()["lost"] == 0


def test_the_byte_cap_evicts_the_oldest_until_the_new_one_fits(tmp_path: Path) -> None:
    store = EventStore(tmp_path / "events.db", max_bytes=250)
    for name in "abc":
        put(store, name, size=100)
    assert names(store) == ["b", "c"]
    assert store.stats()["lost_by_reason"] == [
        {"reason": "cache_overflow", "category": "error", "quantity": 1}
    ]
    store.close()


def test_an_envelope_larger_than_the_cap_is_counted_lost_and_not_stored(tmp_path: Path) -> None:
    store = EventStore(tmp_path / "events.db", max_bytes=50)
    put(store, "small")
    put(store, "huge", size=100)
    assert names(store) == ["small"]
    assert store.stats()["lost"] == 1
    store.close()


def test_an_envelope_leased_to_one_forwarder_is_not_claimed_by_another(store: EventStore) -> None:
    put(store, "a")
    put(store, "b")
    first = store.claim("one", limit=1, lease=60)
    second = store.claim("two", limit=5, lease=60)
    assert [e.body[:1] for e in first + second] == [b"a", b"b"]


def test_the_leases_of_a_process_that_died_are_taken_over(store: EventStore) -> None:
    put(store, "a")
    code = (
        "import sys; from asgi_sentry_ctx.store.event_store import EventStore; "
        "s = EventStore(sys.argv[1]); s.claim(EventStore.new_owner(), limit=1, lease=600)"
    )
    subprocess.run([sys.executable, "-c", code, str(store.path)], check=True)
    assert store.claim("me", limit=1, lease=60) == []
    assert store.release_dead_owners() == 1
    assert [e.body[:1] for e in store.claim("me", limit=1, lease=60)] == [b"a"]


def test_the_leases_of_a_stopped_forwarder_of_this_process_are_taken_over(
    store: EventStore,
) -> None:
    put(store, "a")
    owner = EventStore.new_owner()
    register_live_owner(owner)
    try:
        assert len(store.claim(owner, limit=1, lease=600)) == 1
        assert store.release_dead_owners() == 0  # its forwarder runs
    finally:
        unregister_live_owner(owner)
    assert store.release_dead_owners() == 1


def test_a_rate_limited_category_is_held_back_and_the_others_are_not(store: EventStore) -> None:
    put(store, "t", category="transaction")
    put(store, "e", category="error")
    store.limit_categories([("transaction", time.time() + 60)])
    assert [e.body[:1] for e in store.claim("me", limit=5, lease=60)] == [b"e"]


def test_a_limit_on_all_categories_holds_everything_back(store: EventStore) -> None:
    put(store, "e")
    store.limit_categories([(None, time.time() + 60)])
    assert store.claim("me", limit=5, lease=60) == []
    assert store.next_due("me") == pytest.approx(store.stats()["rate_limited_until"]["all"])


def test_dead_letters_are_bounded_oldest_first(tmp_path: Path) -> None:
    store = EventStore(tmp_path / "events.db", max_dead_letters=2)
    for name in "abc":
        put(store, name)
        [claimed] = store.claim("me", limit=1, lease=60)
        store.dead_letter(claimed.id, status=400, reason=f"bad {name}")
    assert sorted(e.error or "" for e in store.envelopes()) == [
        "HTTP 400: bad b",
        "HTTP 400: bad c",
    ]
    store.close()
