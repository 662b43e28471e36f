"""What the store's rows mean: envelope states, the envelopes handed out, category lists."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

__all__ = [
    "ALL_CATEGORIES",
    "LOCAL",
    "PENDING",
    "SENT",
    "ClaimedEnvelope",
    "StoredEnvelope",
    "joined",
    "split",
]

PENDING = "pending"
SENT = "sent"
LOCAL = "local"
ALL_CATEGORIES = ""  # the rate_limits row of a limit on every category


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


def joined(names: Iterable[str]) -> str:
    """``names`` as one column value: ``",a,b,"``, sorted, each name once."""
    # ",a,b," so that instr(column, ",a,") finds a whole name and nothing else.
    return "," + ",".join(sorted(set(names))) + ","


def split(column: str) -> tuple[str, ...]:
    """The names of a column value made by ``joined``."""
    return tuple(name for name in column.split(",") if name)
