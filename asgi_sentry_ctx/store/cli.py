"""``python -m asgi_sentry_ctx events list|show|tail|stats``: read the local event store.

With no DSN, the store is where events go; with one, it is where they wait
until Sentry has them. Either way this shows them as a person wants to read
them. ``--store PATH`` defaults to ``$ASGI_SENTRY_CTX_STORE``; ``--json``
prints JSON (one object per line for ``tail``).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Sequence
from typing import Any, TextIO

from sentry_sdk.envelope import Envelope

from asgi_sentry_ctx.store.event_format import format_event, format_event_line, summarize_event
from asgi_sentry_ctx.store.event_store import EventStore
from asgi_sentry_ctx.store.records import StoredEnvelope

__all__ = ["main"]


def main(argv: Sequence[str] | None = None, out: TextIO | None = None) -> int:
    """Run the CLI; return the exit status (0 fine, 1 not found, 2 usage or no store)."""
    out = out or sys.stdout
    args = _parser().parse_args(argv)
    path = getattr(args, "store", None) or os.environ.get("ASGI_SENTRY_CTX_STORE", "").strip()
    if not path:
        print("no event store: pass --store PATH or set ASGI_SENTRY_CTX_STORE", file=sys.stderr)
        return 2
    try:
        store = EventStore.open_existing(path)
    except (OSError, ValueError) as exc:
        print(f"cannot open the event store: {exc}", file=sys.stderr)
        return 2
    as_json = getattr(args, "json", False)
    try:
        if args.command == "list":
            return _list(store, args.limit, as_json, out)
        if args.command == "show":
            return _show(store, args.event_id, as_json, out)
        if args.command == "tail":
            return _tail(store, args.lines, args.interval, as_json, out)
        return _stats(store, as_json, out)
    except KeyboardInterrupt:
        return 0
    finally:
        store.close()


def _parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    # SUPPRESS: given before or after the subcommand, neither erases the other.
    common.add_argument(
        "--store",
        metavar="PATH",
        default=argparse.SUPPRESS,
        help="the event store (default: $ASGI_SENTRY_CTX_STORE)",
    )
    common.add_argument("--json", action="store_true", default=argparse.SUPPRESS, help="print JSON")
    parser = argparse.ArgumentParser(prog="python -m asgi_sentry_ctx")
    groups = parser.add_subparsers(dest="group", required=True)
    events = groups.add_parser("events", parents=[common], help="read the local event store")
    commands = events.add_subparsers(dest="command", required=True)
    listing = commands.add_parser("list", parents=[common], help="newest events, one per line")
    listing.add_argument("-n", "--limit", type=int, default=20, help="how many (default 20)")
    show = commands.add_parser("show", parents=[common], help="one event in full")
    show.add_argument("event_id", help="the event id, or its first characters")
    tail = commands.add_parser("tail", parents=[common], help="the last events, then new ones")
    tail.add_argument("-n", "--lines", type=int, default=3, help="events shown first (default 3)")
    tail.add_argument("--interval", type=float, default=0.5, help="seconds between looks")
    commands.add_parser(
        "stats", parents=[common], help="pending, sent, local, dead-lettered and lost counts"
    )
    return parser


def _event_of(stored: StoredEnvelope) -> dict[str, Any] | None:
    try:
        event = Envelope.deserialize(stored.body).get_event()
    except (ValueError, TypeError):
        return None
    return dict(event) if event is not None else None


def _state(stored: StoredEnvelope) -> str:
    if stored.state == "dead":
        return f"dead-lettered: {stored.error}"
    if stored.state == "pending" and stored.attempts:
        return f"pending, {stored.attempts} attempts, last: {stored.error}"
    return stored.state


def _as_json(stored: StoredEnvelope, event: dict[str, Any] | None) -> dict[str, Any]:
    summary = summarize_event(event) if event is not None else {"event_id": stored.event_id}
    return {**summary, "state": stored.state, "attempts": stored.attempts, "error": stored.error}


def _list(store: EventStore, limit: int, as_json: bool, out: TextIO) -> int:
    rows = [(stored, _event_of(stored)) for stored in store.envelopes(limit=limit)]
    if as_json:
        print(json.dumps([_as_json(s, e) for s, e in rows], default=str), file=out)
        return 0
    if not rows:
        print(f"no events in {store.path}", file=out)
    for stored, event in rows:
        state = stored.state if stored.state != "dead" else "dead-lettered"
        if event is None:
            print(f"{stored.event_id or '?'}  [{state}]  (unreadable envelope)", file=out)
        else:
            print(format_event_line(event, state), file=out)
    return 0


def _show(store: EventStore, event_id: str, as_json: bool, out: TextIO) -> int:
    matches = [(s, e) for s in store.find(event_id) if (e := _event_of(s)) is not None]
    if not matches:
        print(f"no event {event_id!r} in {store.path}", file=sys.stderr)
        return 1
    if len({s.event_id for s, _ in matches}) > 1:
        print(f"{event_id!r} matches several events; give more characters:", file=sys.stderr)
        for stored, _ in matches:
            print(f"  {stored.event_id}", file=sys.stderr)
        return 1
    stored, event = matches[0]
    if as_json:
        print(json.dumps({**_as_json(stored, event), "event": event}, default=str), file=out)
    else:
        print(format_event(event, state=_state(stored)), file=out)
    return 0


def _tail(store: EventStore, lines: int, interval: float, as_json: bool, out: TextIO) -> int:
    last = store.last_id()
    for stored in reversed(store.envelopes(limit=lines)):
        _print_tailed(stored, as_json, out)
    while True:
        for stored in store.envelopes(after_id=last, newest_first=False):
            _print_tailed(stored, as_json, out)
        last = max(last, store.last_id())
        time.sleep(interval)  # polling a file: nothing to wait on


def _print_tailed(stored: StoredEnvelope, as_json: bool, out: TextIO) -> None:
    event = _event_of(stored)
    if event is None:
        return
    if as_json:
        print(json.dumps(_as_json(stored, event), default=str), file=out)
    else:
        print(format_event(event, state=_state(stored)) + "\n", file=out)
    out.flush()


def _stats(store: EventStore, as_json: bool, out: TextIO) -> int:
    stats = store.stats()
    if as_json:
        print(json.dumps(stats), file=out)
        return 0
    print(f"store          {stats['path']}", file=out)
    for name in ("pending", "sent", "local", "dead_lettered", "lost"):
        print(f"{name.replace('_', '-'):<14} {stats[name]}", file=out)
    for lost in stats["lost_by_reason"]:
        print(f"  lost: {lost['quantity']} {lost['category']} ({lost['reason']})", file=out)
    print(
        f"size           {stats['envelopes']} envelopes, {stats['bytes']} bytes "
        f"(cap {stats['max_envelopes']} envelopes, {stats['max_bytes']} bytes)",
        file=out,
    )
    if stats["oldest_pending_age_s"] is not None:
        print(
            f"oldest pending {stats['oldest_pending_age_s']:.0f} s ago, "
            f"up to {stats['max_attempts']} attempts",
            file=out,
        )
    for category, until in stats["rate_limited_until"].items():
        left = max(0.0, until - time.time())
        print(f"rate-limited   {category} for {left:.0f} s more", file=out)
    return 0
