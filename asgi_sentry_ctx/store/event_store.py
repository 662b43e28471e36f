"""The local event store: every envelope on disk (SQLite, WAL) until Sentry has it.

``EventStore`` is the one object the transport, the forwarder and the CLI
hold. It keeps the caps and binds them to the parts that do the work:

- ``database``: the schema, one connection per thread, write transactions;
- ``writing``: storing an envelope, and evicting what the caps do not hold;
- ``delivery``: leases, Sentry's answers, rate limits (the forwarder's side);
- ``reading``: envelopes, dead letters and counts for a person (the CLI).
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import asgi_sentry_ctx.store.delivery as delivery
import asgi_sentry_ctx.store.reading as reading
import asgi_sentry_ctx.store.writing as writing
from asgi_sentry_ctx.store.database import Database
from asgi_sentry_ctx.store.records import ClaimedEnvelope, StoredEnvelope

__all__ = ["EventStore"]


class EventStore:
    """A bounded, crash-safe, multi-process SQLite store of Sentry envelopes.

    ``max_envelopes`` and ``max_bytes`` bound the ``envelopes`` table: when a
    new envelope would exceed either, envelopes already sent go first, then the
    oldest others; those are counted as lost (see
    [`put`][asgi_sentry_ctx.EventStore.put]). ``max_dead_letters`` bounds the
    dead-letter table (oldest pruned). ``synchronous="NORMAL"`` survives a
    killed process (the WAL is in the OS page cache); pass ``"FULL"`` to
    survive a power cut too, at the price of an fsync per envelope.

    Several processes may use one file at once: every write is a short
    ``BEGIN IMMEDIATE`` transaction, and forwarding claims rows with a lease so
    two processes never send the same row at the same time. Only the standard
    library's ``sqlite3`` is used.

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
        self._database = Database(
            self.path, synchronous=synchronous.upper(), busy_timeout=busy_timeout
        )

    @classmethod
    def open_existing(cls, path: str | os.PathLike[str]) -> EventStore:
        """Open a store that must exist already (the CLI never creates one by mistake)."""
        if not Path(path).is_file():
            raise FileNotFoundError(f"no event store at {os.fspath(path)}")
        return cls(path)

    # -- the file ---------------------------------------------------------

    @property
    def background_checkpoints(self) -> bool:
        # True once a forwarder runs: it checkpoints, the request threads never do.
        return self._database.background_checkpoints

    @background_checkpoints.setter
    def background_checkpoints(self, value: bool) -> None:
        self._database.background_checkpoints = value

    def checkpoint(self) -> None:
        """Copy the WAL into the database file without blocking writers (``PASSIVE``)."""
        self._database.checkpoint()

    def close(self) -> None:
        """Close this process's connections (the store reopens on next use)."""
        self._database.close()

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
        return writing.put(
            self._database,
            body,
            event_id=event_id,
            kinds=kinds,
            categories=categories,
            forward=forward,
            max_envelopes=self.max_envelopes,
            max_bytes=self.max_bytes,
        )

    # -- forwarding -------------------------------------------------------

    @staticmethod
    def new_owner() -> str:
        """A lease owner name for one forwarder: host, pid and a unique part."""
        return delivery.new_owner()

    def claim(self, owner: str, *, limit: int, lease: float) -> list[ClaimedEnvelope]:
        """Lease up to ``limit`` due pending envelopes, oldest first, to ``owner``.

        Due: its retry time has come, no live lease is on it, and none of its
        categories is rate-limited. The lease lasts ``lease`` seconds; a
        forwarder that dies holding it is taken over when the lease ends, or
        sooner by [`release_dead_owners`][asgi_sentry_ctx.EventStore.release_dead_owners].
        """
        return delivery.claim(self._database, owner, limit=limit, lease=lease)

    def mark_sent(self, envelope_id: int, *, keep: bool) -> None:
        """Sentry has it: keep it as ``sent`` history, or delete it."""
        delivery.mark_sent(self._database, envelope_id, keep=keep)

    def retry_later(self, envelope_id: int, *, at: float, error: str) -> None:
        """Sending failed for now: try again at ``at`` (epoch seconds)."""
        delivery.retry_later(self._database, envelope_id, at=at, error=error)

    def release(self, envelope_ids: Iterable[int]) -> None:
        """Give leased envelopes back untouched (not tried in this round)."""
        delivery.release(self._database, envelope_ids)

    def release_dead_owners(self) -> int:
        """Free the leases of forwarders on this host whose process is gone; return how many.

        After a ``kill -9`` the restarted process sends what the dead one was
        holding at once rather than when the lease would have ended.
        """
        return delivery.release_dead_owners(self._database)

    def dead_letter(self, envelope_id: int, *, status: int | None, reason: str) -> None:
        """Sentry refused it for good: move it to ``dead_letters`` with ``reason``."""
        delivery.dead_letter(
            self._database, envelope_id, status=status, reason=reason, keep=self.max_dead_letters
        )

    def limit_categories(self, limits: Iterable[tuple[str | None, float]]) -> None:
        """Hold back each category (``None``: all) until the given epoch time."""
        delivery.limit_categories(self._database, limits)

    def next_due(self, owner: str) -> float | None:
        """When the earliest pending envelope ``owner`` may send becomes due; ``None``: none.

        Envelopes another live forwarder holds are not ``owner``'s to wait for.
        """
        return delivery.next_due(self._database, owner)

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
        return reading.envelopes(
            self._database, kind=kind, after_id=after_id, limit=limit, newest_first=newest_first
        )

    def find(self, event_id: str) -> list[StoredEnvelope]:
        """Envelopes whose event id starts with ``event_id`` (dashes and case ignored)."""
        return reading.find(self._database, event_id)

    def last_id(self) -> int:
        """The id of the newest row of ``envelopes`` (0 when empty)."""
        return reading.last_id(self._database)

    def stats(self) -> dict[str, Any]:
        """Counts a person checks first: pending, sent, local, dead-lettered and lost."""
        return reading.stats(
            self._database, max_envelopes=self.max_envelopes, max_bytes=self.max_bytes
        )
