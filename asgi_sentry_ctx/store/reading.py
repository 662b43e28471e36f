"""Reading the store back, for a person (the CLI): envelopes, dead letters and counts."""

from __future__ import annotations

import os
import sqlite3
import time
from typing import Any

from asgi_sentry_ctx.store.database import Database
from asgi_sentry_ctx.store.records import LOCAL, PENDING, SENT, StoredEnvelope, split

__all__ = ["envelopes", "find", "last_id", "stats"]

# Both select the fields of a StoredEnvelope, in its order; a dead letter's id
# is negated so that it never collides with an id of ``envelopes``.
_FROM_ENVELOPES = (
    "SELECT id, created_at, event_id, kinds, state, attempts, body, last_error FROM envelopes"
)
_FROM_DEAD_LETTERS = (
    "SELECT -id, created_at, event_id, kinds, 'dead', attempts, body,"
    " 'HTTP ' || coalesce(status, '?') || ': ' || reason FROM dead_letters"
)


def envelopes(
    database: Database,
    *,
    kind: str | None,
    after_id: int,
    limit: int | None,
    newest_first: bool,
) -> list[StoredEnvelope]:
    """Stored envelopes and dead letters, by when they were first stored."""
    kind_filter = "" if kind is None else " AND instr(kinds, ?) > 0"
    kind_args: tuple[Any, ...] = () if kind is None else (f",{kind},",)
    order = "DESC" if newest_first else "ASC"
    found = _stored(
        database.connection(),
        f"WHERE id > ?{kind_filter} ORDER BY id {order} LIMIT ?",
        (after_id, *kind_args, -1 if limit is None else limit),
        # after_id is an id of ``envelopes``: dead letters come only with a listing from the start.
        dead_letters=after_id == 0,
    )
    found.sort(key=lambda stored: (stored.created_at, stored.id), reverse=newest_first)
    return found if limit is None else found[:limit]


def find(database: Database, event_id: str) -> list[StoredEnvelope]:
    """Envelopes whose event id starts with ``event_id`` (dashes and case ignored)."""
    prefix = event_id.replace("-", "").lower()
    if not prefix or any(ch not in "0123456789abcdef" for ch in prefix):
        return []
    return _stored(
        database.connection(), "WHERE event_id LIKE ? || '%'", (prefix,), dead_letters=True
    )


def last_id(database: Database) -> int:
    """The id of the newest row of ``envelopes`` (0 when empty)."""
    row = database.connection().execute("SELECT max(id) FROM envelopes").fetchone()
    return int(row[0] or 0)


def stats(database: Database, *, max_envelopes: int, max_bytes: int) -> dict[str, Any]:
    """Counts a person checks first: pending, sent, local, dead-lettered and lost."""
    db = database.connection()
    now = time.time()
    by_state = dict(db.execute("SELECT state, count(*) FROM envelopes GROUP BY state"))
    count, size = db.execute("SELECT count, bytes FROM totals WHERE id = 0").fetchone()
    oldest = db.execute(
        "SELECT min(created_at), max(attempts) FROM envelopes WHERE state = ?", (PENDING,)
    ).fetchone()
    lost = [
        {"reason": reason, "category": category, "quantity": quantity}
        for reason, category, quantity in db.execute(
            "SELECT reason, category, quantity FROM lost ORDER BY reason, category"
        )
    ]
    dead = db.execute("SELECT count(*) FROM dead_letters").fetchone()[0]
    limits = {
        (category or "all"): until
        for category, until in db.execute(
            "SELECT category, until FROM rate_limits WHERE until > ?", (now,)
        )
    }
    return {
        "path": os.fspath(database.path),
        "pending": by_state.get(PENDING, 0),
        "sent": by_state.get(SENT, 0),
        "local": by_state.get(LOCAL, 0),
        "dead_lettered": dead,
        "lost": sum(item["quantity"] for item in lost),
        "lost_by_reason": lost,
        "envelopes": count,
        "bytes": size,
        "max_envelopes": max_envelopes,
        "max_bytes": max_bytes,
        "oldest_pending_age_s": None if oldest[0] is None else round(now - oldest[0], 3),
        "max_attempts": oldest[1] or 0,
        "rate_limited_until": limits,
    }


def _stored(
    db: sqlite3.Connection, rest: str, args: tuple[Any, ...], *, dead_letters: bool
) -> list[StoredEnvelope]:
    """The rows of ``envelopes`` (and of ``dead_letters``) that ``rest`` selects, in that order.

    ``rest`` (``WHERE ...``, perhaps ``ORDER BY`` and ``LIMIT``) and its
    ``args`` apply to each table alike.
    """
    rows = db.execute(f"{_FROM_ENVELOPES} {rest}", args).fetchall()
    if dead_letters:
        rows += db.execute(f"{_FROM_DEAD_LETTERS} {rest}", args).fetchall()
    return [_stored_envelope(row) for row in rows]


def _stored_envelope(row: tuple[Any, ...]) -> StoredEnvelope:
    """A row selected by ``_stored`` as a ``StoredEnvelope``."""
    envelope_id, created_at, event_id, kinds, state, attempts, body, error = row
    return StoredEnvelope(
        envelope_id, created_at, event_id, split(kinds), state, attempts, body, error
    )
