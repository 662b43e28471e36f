"""The local event store: every envelope on disk (SQLite, WAL) until Sentry has it.

One file holds:

- ``envelopes``: each envelope as the SDK serialized it, with its state:
  ``pending`` (to forward), ``sent`` (Sentry answered 2xx; kept as history
  and evicted first) or ``local`` (no DSN: the store is where events go);
- ``dead_letters``: envelopes Sentry refused for good (400, 413...), with why;
- ``lost``: how many envelopes the size/count cap evicted, by reason and category;
- ``rate_limits``: until when Sentry asked us to hold each data category back.

Several processes may use one file at once: every write is a short
``BEGIN IMMEDIATE`` transaction, and forwarding claims rows with a lease so
two processes never send the same row at the same time. Only the standard
library's :mod:`sqlite3` is used.
"""

from __future__ import annotations

import contextlib
import os
import socket
import sqlite3
import threading
import time
import uuid
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = ["ClaimedEnvelope", "EventStore", "StoredEnvelope", "live_owners"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS envelopes (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    created_at REAL NOT NULL,
    event_id TEXT,
    kinds TEXT NOT NULL,
    categories TEXT NOT NULL,
    size INTEGER NOT NULL,
    body BLOB NOT NULL,
    state TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    next_attempt_at REAL NOT NULL DEFAULT 0,
    lease_owner TEXT,
    lease_until REAL,
    last_error TEXT,
    done_at REAL
);
CREATE INDEX IF NOT EXISTS envelopes_state ON envelopes (state, id);
CREATE INDEX IF NOT EXISTS envelopes_event_id ON envelopes (event_id);
CREATE TABLE IF NOT EXISTS dead_letters (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    created_at REAL NOT NULL,
    event_id TEXT,
    kinds TEXT NOT NULL,
    categories TEXT NOT NULL,
    size INTEGER NOT NULL,
    body BLOB NOT NULL,
    attempts INTEGER NOT NULL,
    status INTEGER,
    reason TEXT NOT NULL,
    dead_at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS dead_letters_event_id ON dead_letters (event_id);
CREATE TABLE IF NOT EXISTS lost (
    reason TEXT NOT NULL,
    category TEXT NOT NULL,
    quantity INTEGER NOT NULL,
    PRIMARY KEY (reason, category)
);
CREATE TABLE IF NOT EXISTS rate_limits (
    category TEXT PRIMARY KEY,
    until REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS totals (
    id INTEGER PRIMARY KEY CHECK (id = 0),
    count INTEGER NOT NULL,
    bytes INTEGER NOT NULL
);
INSERT OR IGNORE INTO totals VALUES (0, 0, 0);
CREATE TRIGGER IF NOT EXISTS envelopes_counted AFTER INSERT ON envelopes BEGIN
    UPDATE totals SET count = count + 1, bytes = bytes + NEW.size WHERE id = 0;
END;
CREATE TRIGGER IF NOT EXISTS envelopes_uncounted AFTER DELETE ON envelopes BEGIN
    UPDATE totals SET count = count - 1, bytes = bytes - OLD.size WHERE id = 0;
END;
"""

PENDING = "pending"
SENT = "sent"
LOCAL = "local"
ALL_CATEGORIES = ""  # the rate_limits row of a limit on every category

_HOST = socket.gethostname()

live_owners: set[str] = set()
"""Lease owners of this process whose forwarder runs: the others here are dead ones."""


@dataclass(frozen=True)
class ClaimedEnvelope:
    """A pending envelope leased to one forwarder for sending."""

    id: int
    body: bytes
    attempts: int
    categories: tuple[str, ...]


@dataclass(frozen=True)
class StoredEnvelope:
    """An envelope as the store holds it, for reading (the CLI)."""

    id: int
    created_at: float
    event_id: str | None
    kinds: tuple[str, ...]
    state: str  # pending, sent, local or dead
    attempts: int
    body: bytes
    error: str | None


def _joined(names: Iterable[str]) -> str:
    # ",a,b," so that instr(column, ",a,") finds a whole name and nothing else.
    return "," + ",".join(sorted(set(names))) + ","


def _split(joined: str) -> tuple[str, ...]:
    return tuple(name for name in joined.split(",") if name)


class EventStore:
    """A bounded, crash-safe, multi-process SQLite store of Sentry envelopes.

    ``max_envelopes`` and ``max_bytes`` bound the ``envelopes`` table: when a
    new envelope would exceed either, envelopes already sent go first, then the
    oldest others; those are counted as lost (see :meth:`put`).
    ``max_dead_letters`` bounds the dead-letter table (oldest pruned).
    ``synchronous="NORMAL"`` survives a killed process (the WAL is in the OS
    page cache); pass ``"FULL"`` to survive a power cut too, at the price of
    an fsync per envelope.

    The file is created (with its parent directory left as is) on first open.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        max_envelopes: int = 10_000,
        max_bytes: int = 100 * 1024 * 1024,
        max_dead_letters: int = 1_000,
        synchronous: str = "NORMAL",
        busy_timeout: float = 10.0,
    ) -> None:
        if max_envelopes < 1 or max_bytes < 1 or max_dead_letters < 0:
            raise ValueError("max_envelopes and max_bytes must be positive")
        if synchronous.upper() not in {"OFF", "NORMAL", "FULL", "EXTRA"}:
            raise ValueError(f"synchronous must be OFF, NORMAL, FULL or EXTRA, not {synchronous!r}")
        self.path = Path(path)
        self.max_envelopes = max_envelopes
        self.max_bytes = max_bytes
        self.max_dead_letters = max_dead_letters
        self._synchronous = synchronous.upper()
        self._busy_timeout = busy_timeout
        self._local = threading.local()
        self._connections: list[sqlite3.Connection] = []
        self._connections_lock = threading.Lock()
        self.background_checkpoints = False
        self._write_lock = threading.Lock()
        # executescript commits by itself: the whole schema is one transaction.
        self._db().executescript(f"BEGIN IMMEDIATE;{_SCHEMA}COMMIT;")

    @classmethod
    def open_existing(cls, path: str | os.PathLike[str]) -> EventStore:
        """Open a store that must exist already (the CLI never creates one by mistake)."""
        if not Path(path).is_file():
            raise FileNotFoundError(f"no event store at {os.fspath(path)}")
        return cls(path)

    # -- connections ------------------------------------------------------
    #
    # One connection per thread (and per process: a connection must never
    # cross a fork; the inherited one is abandoned, not closed). SQLite itself
    # serializes writers across threads and processes, so no Python lock sits
    # on the request path.

    def _db(self) -> sqlite3.Connection:
        local = self._local
        db: sqlite3.Connection | None = getattr(local, "db", None)
        if db is None or local.pid != os.getpid():
            db = sqlite3.connect(
                self.path,
                timeout=self._busy_timeout,
                isolation_level=None,  # explicit BEGIN/COMMIT
                check_same_thread=False,  # only so that close() may close it
            )
            db.execute("PRAGMA journal_mode=WAL")
            db.execute(f"PRAGMA synchronous={self._synchronous}")
            local.db, local.pid, local.autocheckpoint = db, os.getpid(), None
            with self._connections_lock:
                self._connections.append(db)
        # A checkpoint (copying the WAL into the file, with an fsync) takes
        # milliseconds: when a forwarder runs, it checkpoints from its thread
        # (see checkpoint) and the threads storing envelopes for requests never do.
        autocheckpoint = 0 if self.background_checkpoints else 1000
        if local.autocheckpoint != autocheckpoint:
            db.execute(f"PRAGMA wal_autocheckpoint={autocheckpoint}")
            local.autocheckpoint = autocheckpoint
        return db

    def checkpoint(self) -> None:
        """Copy the WAL into the database file without blocking writers (``PASSIVE``)."""
        self._db().execute("PRAGMA wal_checkpoint(PASSIVE)")

    class _Transaction:
        # Writers of this process queue on a Python lock, which wakes the next one
        # at once; SQLite's own busy handler (for other processes) sleeps in steps
        # of milliseconds, which would show in request latency.
        def __init__(self, store: EventStore) -> None:
            self.store = store

        def __enter__(self) -> sqlite3.Connection:
            self.store._write_lock.acquire()
            try:
                self.db = self.store._db()
                self.db.execute("BEGIN IMMEDIATE")
            except BaseException:
                self.store._write_lock.release()
                raise
            return self.db

        def __exit__(self, exc_type: type[BaseException] | None, *_: Any) -> None:
            try:
                self.db.execute("COMMIT" if exc_type is None else "ROLLBACK")
            finally:
                self.store._write_lock.release()

    def _transaction(self) -> EventStore._Transaction:
        return EventStore._Transaction(self)

    def _reader(self) -> sqlite3.Connection:
        # In WAL mode readers never block the writer, nor the writer them.
        return self._db()

    def close(self) -> None:
        """Close this process's connections (the store reopens on next use)."""
        with self._connections_lock:
            connections, self._connections = self._connections, []
        self._local = threading.local()
        for db in connections:
            with contextlib.suppress(sqlite3.Error):  # busy elsewhere: closed when collected
                db.close()

    # -- writing ----------------------------------------------------------

    def put(
        self,
        body: bytes,
        *,
        event_id: str | None,
        kinds: Iterable[str],
        categories: Iterable[str],
        forward: bool,
    ) -> list[tuple[str, ...]]:
        """Store one serialized envelope; return the categories of each envelope evicted.

        ``forward`` stores it as ``pending`` (to send), else as ``local``. When
        the cap is exceeded, sent envelopes are evicted first, then the oldest
        others (even one being sent at that moment, whose answer is then
        ignored). Each of those is counted in ``lost`` under ``cache_overflow``
        and returned, so that the caller can report it to Sentry in a client
        report. An envelope larger than ``max_bytes`` on its own is not stored
        and is returned as lost itself.
        """
        category_list = _joined(categories)
        if len(body) > self.max_bytes:
            with self._transaction() as db:
                self._count_lost(db, "cache_overflow", _split(category_list))
            return [_split(category_list)]
        now = time.time()
        with self._transaction() as db:
            cursor = db.execute(
                "INSERT INTO envelopes (created_at, event_id, kinds, categories, size, body, state)"
                " VALUES (?, ?, ?, ?, ?, ?, ?)",
                (
                    now,
                    event_id,
                    _joined(kinds),
                    category_list,
                    len(body),
                    body,
                    PENDING if forward else LOCAL,
                ),
            )
            return self._evict(db, keep=cursor.lastrowid or 0)

    def _evict(self, db: sqlite3.Connection, *, keep: int) -> list[tuple[str, ...]]:
        lost: list[tuple[str, ...]] = []
        while True:
            count, size = db.execute("SELECT count, bytes FROM totals WHERE id = 0").fetchone()
            if count <= self.max_envelopes and size <= self.max_bytes:
                return lost
            excess = max(count - self.max_envelopes, 1)
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
                self._count_lost(db, "cache_overflow", _split(categories))
                lost.append(_split(categories))

    @staticmethod
    def _count_lost(db: sqlite3.Connection, reason: str, categories: Iterable[str]) -> None:
        db.executemany(
            "INSERT INTO lost (reason, category, quantity) VALUES (?, ?, 1)"
            " ON CONFLICT (reason, category) DO UPDATE SET quantity = quantity + 1",
            [(reason, category) for category in categories or ("default",)],
        )

    # -- forwarding -------------------------------------------------------

    @staticmethod
    def new_owner() -> str:
        """A lease owner name for one forwarder: host, pid and a unique part."""
        return f"{_HOST}:{os.getpid()}:{uuid.uuid4().hex[:12]}"

    def claim(self, owner: str, *, limit: int, lease: float) -> list[ClaimedEnvelope]:
        """Lease up to ``limit`` due pending envelopes, oldest first, to ``owner``.

        Due: its retry time has come, no live lease is on it, and none of its
        categories is rate-limited. The lease lasts ``lease`` seconds; a
        forwarder that dies holding it is taken over when the lease ends, or
        sooner by :meth:`release_dead_owners`.
        """
        now = time.time()
        with self._transaction() as db:
            blocked = [
                row[0]
                for row in db.execute("SELECT category FROM rate_limits WHERE until > ?", (now,))
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
        return [ClaimedEnvelope(row[0], row[1], row[2], _split(row[3])) for row in rows]

    def mark_sent(self, envelope_id: int, *, keep: bool) -> None:
        """Sentry has it: keep it as ``sent`` history, or delete it."""
        with self._transaction() as db:
            if keep:
                db.execute(
                    "UPDATE envelopes SET state = ?, done_at = ?, lease_owner = NULL,"
                    " lease_until = NULL, last_error = NULL WHERE id = ?",
                    (SENT, time.time(), envelope_id),
                )
            else:
                db.execute("DELETE FROM envelopes WHERE id = ?", (envelope_id,))

    def retry_later(self, envelope_id: int, *, at: float, error: str) -> None:
        """Sending failed for now: try again at ``at`` (epoch seconds)."""
        with self._transaction() as db:
            db.execute(
                "UPDATE envelopes SET attempts = attempts + 1, next_attempt_at = ?,"
                " last_error = ?, lease_owner = NULL, lease_until = NULL WHERE id = ?",
                (at, error, envelope_id),
            )

    def release(self, envelope_ids: Iterable[int]) -> None:
        """Give leased envelopes back untouched (not tried in this round)."""
        with self._transaction() as db:
            db.executemany(
                "UPDATE envelopes SET lease_owner = NULL, lease_until = NULL WHERE id = ?",
                [(envelope_id,) for envelope_id in envelope_ids],
            )

    def release_dead_owners(self) -> int:
        """Free the leases of forwarders on this host whose process is gone; return how many.

        After a ``kill -9`` the restarted process sends what the dead one was
        holding at once rather than when the lease would have ended.
        """
        now = time.time()
        with self._transaction() as db:
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
                    "UPDATE envelopes SET lease_owner = NULL, lease_until = NULL"
                    " WHERE lease_owner = ?",
                    (owner,),
                ).rowcount
            return freed

    def dead_letter(self, envelope_id: int, *, status: int | None, reason: str) -> None:
        """Sentry refused it for good: move it to ``dead_letters`` with ``reason``."""
        with self._transaction() as db:
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
                (self.max_dead_letters,),
            )

    def limit_categories(self, limits: Iterable[tuple[str | None, float]]) -> None:
        """Hold back each category (``None``: all) until the given epoch time."""
        rows = [(ALL_CATEGORIES if c is None else c, until) for c, until in limits]
        if not rows:
            return
        with self._transaction() as db:
            db.executemany(
                "INSERT INTO rate_limits (category, until) VALUES (?, ?)"
                " ON CONFLICT (category) DO UPDATE SET until = max(until, excluded.until)",
                rows,
            )

    def next_due(self, owner: str) -> float | None:
        """When the earliest pending envelope ``owner`` may send becomes due; ``None``: none.

        Envelopes another live forwarder holds are not ``owner``'s to wait for.
        """
        now = time.time()
        db = self._reader()
        limits = dict(db.execute("SELECT category, until FROM rate_limits WHERE until > ?", (now,)))
        groups = db.execute(
            "SELECT categories, min(next_attempt_at) FROM envelopes WHERE state = ?"
            " AND (lease_until IS NULL OR lease_until <= ? OR lease_owner = ?)"
            " GROUP BY categories",
            (PENDING, now, owner),
        ).fetchall()
        due: float | None = None
        for categories, earliest in groups:
            blocked = [limits.get(c, 0.0) for c in _split(categories)]
            at = max(earliest, limits.get(ALL_CATEGORIES, 0.0), *blocked)
            due = at if due is None else min(due, at)
        return due

    # -- reading ----------------------------------------------------------

    def envelopes(
        self,
        *,
        kind: str | None = "event",
        after_id: int = 0,
        limit: int | None = None,
        newest_first: bool = True,
    ) -> list[StoredEnvelope]:
        """Stored envelopes (with an item of type ``kind`` unless ``None``), dead letters included.

        Dead letters are listed by when they were first stored, with ``state``
        ``"dead"`` and the refusal as ``error``. ``after_id`` (ids of the
        ``envelopes`` table) is for following new ones.
        """
        db = self._reader()
        kind_filter = "" if kind is None else " AND instr(kinds, ?) > 0"
        kind_args: tuple[Any, ...] = () if kind is None else (f",{kind},",)
        order = "DESC" if newest_first else "ASC"
        rows = db.execute(
            "SELECT id, created_at, event_id, kinds, state, attempts, body, last_error"
            f" FROM envelopes WHERE id > ?{kind_filter} ORDER BY id {order} LIMIT ?",
            (after_id, *kind_args, -1 if limit is None else limit),
        ).fetchall()
        if after_id == 0:
            rows += db.execute(
                "SELECT -id, created_at, event_id, kinds, 'dead', attempts, body,"
                " 'HTTP ' || coalesce(status, '?') || ': ' || reason"
                f" FROM dead_letters WHERE 1{kind_filter} ORDER BY id {order} LIMIT ?",
                (*kind_args, -1 if limit is None else limit),
            ).fetchall()
        rows.sort(key=lambda row: (row[1], row[0]), reverse=newest_first)
        if limit is not None:
            rows = rows[:limit]
        return [
            StoredEnvelope(row[0], row[1], row[2], _split(row[3]), row[4], row[5], row[6], row[7])
            for row in rows
        ]

    def find(self, event_id: str) -> list[StoredEnvelope]:
        """Envelopes whose event id starts with ``event_id`` (dashes and case ignored)."""
        prefix = event_id.replace("-", "").lower()
        if not prefix or any(ch not in "0123456789abcdef" for ch in prefix):
            return []
        db = self._reader()
        rows = db.execute(
            "SELECT id, created_at, event_id, kinds, state, attempts, body, last_error"
            " FROM envelopes WHERE event_id LIKE ? || '%'",
            (prefix,),
        ).fetchall()
        rows += db.execute(
            "SELECT -id, created_at, event_id, kinds, 'dead', attempts, body,"
            " 'HTTP ' || coalesce(status, '?') || ': ' || reason"
            " FROM dead_letters WHERE event_id LIKE ? || '%'",
            (prefix,),
        ).fetchall()
        return [
            StoredEnvelope(row[0], row[1], row[2], _split(row[3]), row[4], row[5], row[6], row[7])
            for row in rows
        ]

    def last_id(self) -> int:
        """The id of the newest row of ``envelopes`` (0 when empty)."""
        row = self._reader().execute("SELECT max(id) FROM envelopes").fetchone()
        return int(row[0] or 0)

    def stats(self) -> dict[str, Any]:
        """Counts a person checks first: pending, sent, local, dead-lettered and lost."""
        db = self._reader()
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
            "path": os.fspath(self.path),
            "pending": by_state.get(PENDING, 0),
            "sent": by_state.get(SENT, 0),
            "local": by_state.get(LOCAL, 0),
            "dead_lettered": dead,
            "lost": sum(item["quantity"] for item in lost),
            "lost_by_reason": lost,
            "envelopes": count,
            "bytes": size,
            "max_envelopes": self.max_envelopes,
            "max_bytes": self.max_bytes,
            "oldest_pending_age_s": None if oldest[0] is None else round(now - oldest[0], 3),
            "max_attempts": oldest[1] or 0,
            "rate_limited_until": limits,
        }

    def iter_new(self, after_id: int, *, kind: str | None = "event") -> Iterator[StoredEnvelope]:
        """Envelopes stored after ``after_id``, oldest first."""
        yield from self.envelopes(kind=kind, after_id=after_id, newest_first=False)


def _is_dead_local_owner(owner: str) -> bool:
    host, _, rest = owner.partition(":")
    pid_text, _, _ = rest.partition(":")
    if host != _HOST or not pid_text.isdigit():
        return False  # another machine's (or container's) process: its lease will end
    pid = int(pid_text)
    if pid == os.getpid():
        return owner not in live_owners  # a forwarder of this process that was stopped
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False
