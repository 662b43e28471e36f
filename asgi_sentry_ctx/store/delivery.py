"""The forwarder's side of the store: leases, Sentry's answers, rate limits, what is due.

Forwarding claims rows with a lease so that two processes never send the same
row at the same time; a forwarder that dies holding leases is taken over when
they end, or at once when its process is gone from this host. This module
owns the set of this process's live lease owners: a forwarder registers its
owner name when it starts and unregisters it when it stops.
"""

from __future__ import annotations

import os
import socket
import time
import uuid
from collections.abc import Iterable

from asgi_sentry_ctx.store.database import Database
from asgi_sentry_ctx.store.records import ALL_CATEGORIES, PENDING, SENT, ClaimedEnvelope, split

__all__ = [
    "claim",
    "dead_letter",
    "limit_categories",
    "mark_sent",
    "new_owner",
    "next_due",
    "register_live_owner",
    "release",
    "release_dead_owners",
    "retry_later",
    "unregister_live_owner",
]

_HOST = socket.gethostname()

_live_owners: set[str] = set()
"""Lease owners of this process whose forwarder runs: the others here are dead ones."""


def new_owner() -> str:
    """A lease owner name for one forwarder: host, pid and a unique part."""
    return f"{_HOST}:{os.getpid()}:{uuid.uuid4().hex[:12]}"


def register_live_owner(owner: str) -> None:
    """``owner``'s forwarder runs in this process: its leases are not a dead one's."""
    _live_owners.add(owner)


def unregister_live_owner(owner: str) -> None:
    """``owner``'s forwarder stopped: what it still holds may be taken over."""
    _live_owners.discard(owner)


def claim(database: Database, owner: str, *, limit: int, lease: float) -> list[ClaimedEnvelope]:
    """Lease up to ``limit`` due pending envelopes, oldest first, to ``owner``."""
    now = time.time()
    with database.transaction() as db:
        blocked = [
            row[0] for row in db.execute("SELECT category FROM rate_limits WHERE until > ?", (now,))
        ]
        if ALL_CATEGORIES in blocked:
            return []
        where = " AND instr(categories, ?) = 0" * len(blocked)
        rows = db.execute(
            "SELECT id, body, attempts, categories FROM envelopes"
            " WHERE state = ? AND next_attempt_at <= ?"
            f" AND (lease_until IS NULL OR lease_until <= ?){where} ORDER BY id LIMIT ?",
            (PENDING, now, now, *(f",{c}," for c in blocked), limit),
        ).fetchall()
        db.executemany(
            "UPDATE envelopes SET lease_owner = ?, lease_until = ? WHERE id = ?",
            [(owner, now + lease, row[0]) for row in rows],
        )
    return [ClaimedEnvelope(row[0], row[1], row[2], split(row[3])) for row in rows]


def mark_sent(database: Database, envelope_id: int, *, keep: bool) -> None:
    """Sentry has it: keep it as ``sent`` history, or delete it."""
    with database.transaction() as db:
        if keep:
            db.execute(
                "UPDATE envelopes SET state = ?, done_at = ?, lease_owner = NULL,"
                " lease_until = NULL, last_error = NULL WHERE id = ?",
                (SENT, time.time(), envelope_id),
            )
        else:
            db.execute("DELETE FROM envelopes WHERE id = ?", (envelope_id,))


def retry_later(database: Database, envelope_id: int, *, at: float, error: str) -> None:
    """Sending failed for now: try again at ``at`` (epoch seconds)."""
    with database.transaction() as db:
        db.execute(
            "UPDATE envelopes SET attempts = attempts + 1, next_attempt_at = ?,"
            " last_error = ?, lease_owner = NULL, lease_until = NULL WHERE id = ?",
            (at, error, envelope_id),
        )


def release(database: Database, envelope_ids: Iterable[int]) -> None:
    """Give leased envelopes back untouched."""
    with database.transaction() as db:
        db.executemany(
            "UPDATE envelopes SET lease_owner = NULL, lease_until = NULL WHERE id = ?",
            [(envelope_id,) for envelope_id in envelope_ids],
        )


def release_dead_owners(database: Database) -> int:
    """Free the leases of forwarders on this host whose process is gone; return how many."""
    now = time.time()
    with database.transaction() as db:
        owners = [
            row[0]
            for row in db.execute(
                "SELECT DISTINCT lease_owner FROM envelopes WHERE lease_until > ?", (now,)
            )
        ]
        dead = [owner for owner in owners if _is_dead_local_owner(owner)]
        freed = 0
        for owner in dead:
            freed += db.execute(
                "UPDATE envelopes SET lease_owner = NULL, lease_until = NULL WHERE lease_owner = ?",
                (owner,),
            ).rowcount
        return freed


def dead_letter(
    database: Database, envelope_id: int, *, status: int | None, reason: str, keep: int
) -> None:
    """Move the envelope to ``dead_letters``; keep the newest ``keep`` dead letters."""
    with database.transaction() as db:
        db.execute(
            "INSERT INTO dead_letters (created_at, event_id, kinds, categories, size, body,"
            " attempts, status, reason, dead_at)"
            " SELECT created_at, event_id, kinds, categories, size, body, attempts + 1, ?, ?, ?"
            " FROM envelopes WHERE id = ?",
            (status, reason, time.time(), envelope_id),
        )
        db.execute("DELETE FROM envelopes WHERE id = ?", (envelope_id,))
        db.execute(
            "DELETE FROM dead_letters WHERE id IN (SELECT id FROM dead_letters"
            " ORDER BY id DESC LIMIT -1 OFFSET ?)",
            (keep,),
        )


def limit_categories(database: Database, limits: Iterable[tuple[str | None, float]]) -> None:
    """Hold back each category (``None``: all) until the given epoch time."""
    rows = [(ALL_CATEGORIES if c is None else c, until) for c, until in limits]
    if not rows:
        return
    with database.transaction() as db:
        db.executemany(
            "INSERT INTO rate_limits (category, until) VALUES (?, ?)"
            " ON CONFLICT (category) DO UPDATE SET until = max(until, excluded.until)",
            rows,
        )


def next_due(database: Database, owner: str) -> float | None:
    """When the earliest pending envelope ``owner`` may send becomes due; ``None``: none."""
    now = time.time()
    db = database.connection()
    limits = dict(db.execute("SELECT category, until FROM rate_limits WHERE until > ?", (now,)))
    groups = db.execute(
        "SELECT categories, min(next_attempt_at) FROM envelopes WHERE state = ?"
        " AND (lease_until IS NULL OR lease_until <= ? OR lease_owner = ?)"
        " GROUP BY categories",
        (PENDING, now, owner),
    ).fetchall()
    due: float | None = None
    for categories, earliest in groups:
        blocked = [limits.get(c, 0.0) for c in split(categories)]
        at = max(earliest, limits.get(ALL_CATEGORIES, 0.0), *blocked)
        due = at if due is None else min(due, at)
    return due


def _is_dead_local_owner(owner: str) -> bool:
    host, _, rest = owner.partition(":")
    pid_text, _, _ = rest.partition(":")
    if host != _HOST or not pid_text.isdigit():
        return False  # another machine's (or container's) process: its lease will end
    pid = int(pid_text)
    if pid == os.getpid():
        return owner not in _live_owners  # a forwarder of this process that was stopped
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False
