"""Storing an envelope within the store's caps: what does not fit is evicted and counted lost."""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterable

from asgi_sentry_ctx.store.database import Database
from asgi_sentry_ctx.store.records import LOCAL, PENDING, SENT, joined, split

__all__ = ["put"]


def put(
    database: Database,
    body: bytes,
    *,
    event_id: str | None,
    kinds: Iterable[str],
    categories: Iterable[str],
    forward: bool,
    max_envelopes: int,
    max_bytes: int,
) -> list[tuple[str, ...]]:
    """Insert one envelope, then evict down to the caps; return the evicted ones' categories.

    See [`EventStore.put`][asgi_sentry_ctx.EventStore.put].
    """
    category_list = joined(categories)
    if len(body) > max_bytes:
        with database.transaction() as db:
            _count_lost(db, "cache_overflow", split(category_list))
        return [split(category_list)]
    now = time.time()
    with database.transaction() as db:
        cursor = db.execute(
            "INSERT INTO envelopes (created_at, event_id, kinds, categories, size, body, state)"
            " VALUES (?, ?, ?, ?, ?, ?, ?)",
            (
                now,
                event_id,
                joined(kinds),
                category_list,
                len(body),
                body,
                PENDING if forward else LOCAL,
            ),
        )
        return _evict(
            db, keep=cursor.lastrowid or 0, max_envelopes=max_envelopes, max_bytes=max_bytes
        )


def _evict(
    db: sqlite3.Connection, *, keep: int, max_envelopes: int, max_bytes: int
) -> list[tuple[str, ...]]:
    lost: list[tuple[str, ...]] = []
    while True:
        count, size = db.execute("SELECT count, bytes FROM totals WHERE id = 0").fetchone()
        if count <= max_envelopes and size <= max_bytes:
            return lost
        excess = max(count - max_envelopes, 1)
        # Sent envelopes are history, not data in flight: they go first.
        sent = db.execute(
            "SELECT id FROM envelopes WHERE state = ? ORDER BY id LIMIT ?", (SENT, excess)
        ).fetchall()
        if sent:
            db.executemany("DELETE FROM envelopes WHERE id = ?", sent)
            continue
        victims = db.execute(
            "SELECT id, categories FROM envelopes WHERE id != ? ORDER BY id LIMIT ?",
            (keep, excess),
        ).fetchall()
        if not victims:
            return lost
        db.executemany("DELETE FROM envelopes WHERE id = ?", [(row[0],) for row in victims])
        for _, categories in victims:
            _count_lost(db, "cache_overflow", split(categories))
            lost.append(split(categories))


def _count_lost(db: sqlite3.Connection, reason: str, categories: Iterable[str]) -> None:
    """Count one envelope lost for ``reason`` under each of its categories (``default``: none)."""
    db.executemany(
        "INSERT INTO lost (reason, category, quantity) VALUES (?, ?, 1)"
        " ON CONFLICT (reason, category) DO UPDATE SET quantity = quantity + 1",
        [(reason, category) for category in categories or ("default",)],
    )
