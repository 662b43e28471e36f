"""Scrubbing: credentials never leave the process.

Applied to every event just before it is sent: request headers, cookies, body
and query string, breadcrumb data, ``extra``, contexts and the local variables
of every stack frame. Keys are matched by substring (``db_password`` and
``X-Upstream-Token`` too) at any depth, and so are header-like pairs such as the
ASGI scope's ``(b"authorization", b"Bearer ...")``. The ``business`` context is
the app's explicit choice and is sent as given.
"""

from __future__ import annotations

from typing import Any

__all__ = ["FILTERED", "is_sensitive_key", "scrub", "scrub_event"]

FILTERED = "[Filtered]"

# Matched as substrings of the key, lowercased, with "-" read as "_".
_SENSITIVE = (
    "authorization",
    "cookie",
    "password",
    "passwd",
    "secret",
    "token",
    "api_key",
    "apikey",
    "credential",
    "session",
    "csrf",
    "private_key",
    "signature",
)
_MAX_DEPTH = 20


def is_sensitive_key(key: str) -> bool:
    """Whether a field called ``key`` holds a credential."""
    normal = key.lower().replace("-", "_")
    return any(word in normal for word in _SENSITIVE)


def scrub_event(event: dict[str, Any], hint: dict[str, Any] | None = None) -> dict[str, Any]:
    """Mask every credential in ``event`` in place and return it (a ``before_send``)."""
    request = event.get("request")
    if isinstance(request, dict):
        if request.get("cookies"):
            request["cookies"] = FILTERED
        for key in ("headers", "data", "env"):
            if key in request:
                request[key] = scrub(request[key])
        query = request.get("query_string")
        if isinstance(query, str) and query:
            request["query_string"] = _scrub_query(query)
    crumbs = event.get("breadcrumbs")
    values = crumbs.get("values") if isinstance(crumbs, dict) else crumbs
    if isinstance(values, list):
        for crumb in values:
            if isinstance(crumb, dict) and "data" in crumb:
                crumb["data"] = scrub(crumb["data"])
    if "extra" in event:
        event["extra"] = scrub(event["extra"])
    contexts = event.get("contexts")
    if isinstance(contexts, dict):
        for name, block in contexts.items():
            if name != "business":
                contexts[name] = scrub(block)
    for section in ("exception", "threads"):
        container = event.get(section)
        entries = container.get("values") if isinstance(container, dict) else None
        for entry in entries if isinstance(entries, list) else ():
            frames = (
                (entry.get("stacktrace") or {}).get("frames") if isinstance(entry, dict) else None
            )
            for frame in frames if isinstance(frames, list) else ():
                if isinstance(frame, dict) and "vars" in frame:
                    frame["vars"] = scrub(frame["vars"])
    return event


def scrub(value: Any, depth: int = 0) -> Any:
    """A copy of ``value`` with credential-named fields and header pairs masked."""
    if depth > _MAX_DEPTH:
        return value
    if isinstance(value, dict):
        return {
            key: FILTERED
            if isinstance(key, str) and is_sensitive_key(key) and value[key] is not None
            else scrub(value[key], depth + 1)
            for key in value
        }
    if isinstance(value, list | tuple):
        if len(value) == 2 and _is_sensitive_name(value[0]):
            return [value[0], FILTERED]
        return [scrub(item, depth + 1) for item in value]
    if isinstance(value, str) and "=" in value and ("&" in value or value.count("=") == 1):
        return _scrub_query(value) if _looks_like_query(value) else value
    return value


def _is_sensitive_name(name: Any) -> bool:
    if isinstance(name, bytes):
        name = name.decode("latin-1")
    if not isinstance(name, str):
        return False
    # Serialized bytes look like "b'authorization'".
    if name[:2] in ("b'", 'b"') and name[-1:] in ("'", '"'):
        name = name[2:-1]
    return is_sensitive_key(name)


def _looks_like_query(text: str) -> bool:
    return " " not in text and all("=" in part for part in text.split("&") if part)


def _scrub_query(query: str) -> str:
    parts = []
    for part in query.split("&"):
        key, sep, _ = part.partition("=")
        parts.append(f"{key}={FILTERED}" if sep and is_sensitive_key(key) else part)
    return "&".join(parts)
