"""The store's SQLite file: its schema, one connection per thread, write transactions.

One file holds:

- ``envelopes``: each envelope as the SDK serialized it, with its state:
  ``pending`` (to forward), ``sent`` (Sentry answered 2xx; kept as history
  and evicted first) or ``local`` (no DSN: the store is where events go);
- ``dead_letters``: envelopes Sentry refused for good (400, 413...), with why;
- ``lost``: how many envelopes the size/count cap evicted, by reason and category;
- ``rate_limits``: until when Sentry asked us to hold each data category back;
- ``totals``: the count and bytes of ``envelopes``, kept by triggers.

Several processes may use one file at once: every write is a short
``BEGIN IMMEDIATE`` transaction. Only the standard library's ``sqlite3`` is used.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import threading
from pathlib import Path
from typing import Any

__all__ = ["Database"]

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


class Database:
    """The file at ``path``, created with its schema on first open.

    One connection per thread (and per process: a connection must never
    cross a fork; the inherited one is abandoned, not closed). SQLite itself
    serializes writers across threads and processes, so no Python lock sits
    on the request path; in WAL mode readers never block the writer, nor the
    writer them.
    """

    def __init__(self, path: Path, *, synchronous: str, busy_timeout: float) -> None:
        self.path = path
        self._synchronous = synchronous
        self._busy_timeout = busy_timeout
        self._local = threading.local()
        self._connections: list[sqlite3.Connection] = []
        self._connections_lock = threading.Lock()
        self.background_checkpoints = False
        self._write_lock = threading.Lock()
        # executescript commits by itself: the whole schema is one transaction.
        self.connection().executescript(f"BEGIN IMMEDIATE;{_SCHEMA}COMMIT;")

    def connection(self) -> sqlite3.Connection:
        """This thread's connection (opened on first use, and again after a fork)."""
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

    def transaction(self) -> _Transaction:
        """``with database.transaction() as db:`` one ``BEGIN IMMEDIATE`` ... ``COMMIT``."""
        return _Transaction(self)

    def checkpoint(self) -> None:
        """Copy the WAL into the database file without blocking writers (``PASSIVE``)."""
        self.connection().execute("PRAGMA wal_checkpoint(PASSIVE)")

    def close(self) -> None:
        """Close this process's connections (the next use reopens one)."""
        with self._connections_lock:
            connections, self._connections = self._connections, []
        self._local = threading.local()
        for db in connections:
            with contextlib.suppress(sqlite3.Error):  # busy elsewhere: closed when collected
                db.close()


class _Transaction:
    # Writers of this process queue on a Python lock, which wakes the next one
    # at once; SQLite's own busy handler (for other processes) sleeps in steps
    # of milliseconds, which would show in request latency.
    def __init__(self, database: Database) -> None:
        self.database = database

    def __enter__(self) -> sqlite3.Connection:
        self.database._write_lock.acquire()
        try:
            self.db = self.database.connection()
            self.db.execute("BEGIN IMMEDIATE")
        except BaseException:
            self.database._write_lock.release()
            raise
        return self.db

    def __exit__(self, exc_type: type[BaseException] | None, *_: Any) -> None:
        try:
            self.db.execute("COMMIT" if exc_type is None else "ROLLBACK")
        finally:
            self.database._write_lock.release()
