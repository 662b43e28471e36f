"""Sentry events as a person wants to read them, in a terminal.

``summarize_event`` picks what matters for triage out of an event as
Sentry receives it (time, level, request ID, user, tags, business context,
breadcrumbs, exception and its top frames); ``format_event`` prints that
summary as a short report and ``format_event_line`` as one line of a list.
The CLI (``python -m asgi_sentry_ctx events``) and the demo use them.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from asgi_sentry_ctx._timestamps import parse_timestamp

__all__ = ["format_event", "format_event_line", "summarize_event"]

# Contexts every SDK event has: not what a person triaging looks for.
_SDK_CONTEXTS = frozenset(
    {"runtime", "trace", "os", "device", "app", "browser", "gpu", "culture", "otel", "flags"}
)


def summarize_event(event: Mapping[str, Any]) -> dict[str, Any]:
    """The triage view of ``event``: plain JSON-able values, missing parts as ``None``/empty."""
    tags = _tags(event.get("tags"))
    contexts = event.get("contexts") or {}
    request = event.get("request") or {}
    return {
        "event_id": event.get("event_id"),
        "time": _iso(event.get("timestamp")),
        "level": event.get("level") or "error",
        "title": _title(event),
        "request_id": tags.get("request_id"),
        "user": event.get("user") or None,
        "request": (
            {"method": request.get("method"), "url": request.get("url")}
            if request.get("method") or request.get("url")
            else None
        ),
        "tags": tags,
        "business": contexts.get("business") or None,
        "contexts": {
            name: value
            for name, value in contexts.items()
            if name not in _SDK_CONTEXTS and name != "business"
        },
        "breadcrumbs": [
            {
                "time": _iso(crumb.get("timestamp")),
                "category": crumb.get("category"),
                "level": crumb.get("level"),
                "message": crumb.get("message"),
                "data": crumb.get("data") or None,
            }
            for crumb in ((event.get("breadcrumbs") or {}).get("values") or ())
        ],
        "exceptions": [
            {
                "type": value.get("type"),
                "value": value.get("value"),
                "frames": [
                    {
                        "file": frame.get("filename") or frame.get("abs_path"),
                        "line": frame.get("lineno"),
                        "function": frame.get("function"),
                        "code": (frame.get("context_line") or "").strip() or None,
                        "in_app": frame.get("in_app"),
                    }
                    for frame in ((value.get("stacktrace") or {}).get("frames") or ())
                ],
            }
            for value in ((event.get("exception") or {}).get("values") or ())
        ],
    }


def format_event_line(event: Mapping[str, Any], state: str | None = None) -> str:
    """One line: time, level, short event id, request ID, user, title (and ``state``)."""
    summary = summarize_event(event)
    user = summary["user"] or {}
    parts = [
        _short_time(summary["time"]),
        f"{summary['level']:<7}",
        (summary["event_id"] or "-" * 32)[:12],
        f"req={summary['request_id'] or '-'}",
        f"user={user.get('id') or '-'}",
    ]
    if state is not None:
        parts.append(f"[{state}]")
    parts.append(_one_line(summary["title"], 100))
    return "  ".join(parts)


def format_event(
    event: Mapping[str, Any],
    *,
    state: str | None = None,
    frames: int = 5,
    breadcrumbs: int = 20,
) -> str:
    """A short report of ``event``: the top ``frames`` frames, the last ``breadcrumbs`` crumbs."""
    s = summarize_event(event)
    lines = [
        f"{_short_time(s['time'])}  {s['level'].upper()}  {s['event_id'] or '(no event id)'}"
        + (f"  [{state}]" if state else ""),
        f"  {_one_line(s['title'], 300)}",
    ]
    if s["request"]:
        lines.append(f"  request     {s['request']['method'] or ''} {s['request']['url'] or ''}")
    lines.append(f"  request_id  {s['request_id'] or '-'}")
    lines.append(f"  user        {_pairs(s['user']) if s['user'] else '-'}")
    other_tags = {k: v for k, v in s["tags"].items() if k != "request_id"}
    if other_tags:
        lines.append(f"  tags        {_pairs(other_tags)}")
    if s["business"]:
        lines.append(f"  business    {_pairs(s['business'])}")
    for name, value in s["contexts"].items():
        lines.append(f"  {name:<11} {_pairs(value) if isinstance(value, Mapping) else value}")
    crumbs = s["breadcrumbs"]
    if crumbs:
        lines.append(f"  breadcrumbs ({len(crumbs)})")
        if len(crumbs) > breadcrumbs:
            lines.append(f"    ... {len(crumbs) - breadcrumbs} earlier")
        for crumb in crumbs[-breadcrumbs:]:
            text = _one_line(crumb["message"] or "", 120)
            if crumb["data"]:
                text += "  " + _one_line(_pairs(crumb["data"]), 160)
            lines.append(
                f"    {_clock(crumb['time'])}  {crumb['category'] or '-':<10} "
                f"{crumb['level'] or 'info':<7} {text}"
            )
    for index, exc in enumerate(s["exceptions"]):
        if index:
            lines.append("    (the above exception led to the one below)")
        lines.append(f"  exception   {exc['type']}: {_one_line(exc['value'] or '', 300)}")
        shown = exc["frames"][-frames:] if frames else []
        if len(exc["frames"]) > len(shown):
            lines.append(f"    ... {len(exc['frames']) - len(shown)} earlier frames")
        for frame in shown:
            marker = "" if frame["in_app"] is not False else "  (library)"
            lines.append(
                f'    File "{frame["file"]}", line {frame["line"]}, in {frame["function"]}{marker}'
            )
            if frame["code"]:
                lines.append(f"      {frame['code']}")
    return "\n".join(lines)


def _title(event: Mapping[str, Any]) -> str:
    values = (event.get("exception") or {}).get("values") or ()
    if values:
        last = values[-1]
        return f"{last.get('type')}: {last.get('value') or ''}".rstrip(": ")
    message = event.get("message")
    if isinstance(message, str) and message:
        return message
    logentry = event.get("logentry") or (message if isinstance(message, Mapping) else {})
    return str(logentry.get("formatted") or logentry.get("message") or "(no message)")


def _tags(tags: Any) -> dict[str, str]:
    if isinstance(tags, Mapping):
        return {str(k): str(v) for k, v in tags.items()}
    if isinstance(tags, list):  # Sentry also accepts [[key, value], ...]
        return {str(pair[0]): str(pair[1]) for pair in tags if len(pair) == 2}
    return {}


def _iso(timestamp: Any) -> str | None:
    parsed = parse_timestamp(timestamp)
    if parsed is not None:
        return parsed.isoformat()
    return timestamp if isinstance(timestamp, str) and timestamp else None  # shown as it is


def _short_time(iso: str | None) -> str:
    if iso is None:
        return "????-??-?? ??:??:??"
    try:
        return datetime.fromisoformat(iso).astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    except ValueError:
        return iso


def _clock(iso: str | None) -> str:
    if iso is None:
        return "??:??:??.???"
    try:
        return datetime.fromisoformat(iso).astimezone(UTC).strftime("%H:%M:%S.%f")[:-3]
    except ValueError:
        return iso


def _pairs(mapping: Mapping[str, Any]) -> str:
    return " ".join(f"{key}={_value(value)}" for key, value in mapping.items())


def _value(value: Any) -> str:
    if isinstance(value, str):
        return value if value and " " not in value else json.dumps(value)
    return json.dumps(value, default=str, separators=(",", ":"))


def _one_line(text: str, limit: int) -> str:
    flat = " ".join(str(text).split())
    return flat if len(flat) <= limit else flat[: limit - 3] + "..."
