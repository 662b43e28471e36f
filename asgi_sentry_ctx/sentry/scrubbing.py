"""Scrubbing: credentials never leave the process.

Applied to every event just before it is sent: request headers, cookies, body
and query string, breadcrumb data, ``extra``, contexts and the local variables
of every stack frame. Keys are matched by substring (``db_password`` and
``X-Upstream-Token`` too) at any depth, and so are header-like pairs such as the
ASGI scope's ``(b"authorization", b"Bearer ...")``. The ``business`` context is
the app's explicit choice and is sent as given.

When the app gave sentry-sdk's ``data_collection`` option (sentry-sdk 2.7x),
its key-value categories (request headers, cookies, query parameters) and
``user_info`` are applied too, as the SDK's own integrations apply them, on
top of the credential names above: see :func:`data_collection`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache
from typing import Any
from urllib.parse import unquote_plus

import sentry_sdk

__all__ = [
    "FILTERED",
    "PII_USER_FIELDS",
    "DataCollection",
    "KeyValueRule",
    "data_collection",
    "is_sensitive_key",
    "scrub",
    "scrub_event",
]

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
# sentry-sdk's denylist for ``data_collection`` (``_SENSITIVE_DENYLIST`` in
# ``sentry_sdk.data_collection``: private there, so copied): matched as
# case-insensitive substrings, in every mode.
_SDK_DENYLIST = (
    "auth",
    "token",
    "secret",
    "password",
    "passwd",
    "pwd",
    "key",
    "jwt",
    "bearer",
    "sso",
    "saml",
    "csrf",
    "xsrf",
    "credentials",
    "session",
    "sid",
    "identity",
)
# The user's fields Sentry treats as personal data.
PII_USER_FIELDS = ("email", "username", "ip_address")


# Remembered: the same keys (``trace_id``, ``host``, a frame's local names)
# come back in every event, transactions included, and the scan is most of
# scrubbing's cost per event.
@lru_cache(maxsize=4096)
def is_sensitive_key(key: str) -> bool:
    """Whether a field called ``key`` holds a credential."""
    normal = key.lower().replace("-", "_")
    return any(word in normal for word in _SENSITIVE)


@dataclass(frozen=True, slots=True)
class KeyValueRule:
    """One key-value category of ``data_collection``: headers, cookies or query parameters.

    ``mode`` is ``"off"`` (nothing collected), ``"denylist"`` (every key kept,
    the values of sensitive keys and of keys containing one of ``terms``
    masked) or ``"allowlist"`` (only the values of keys containing one of
    ``terms`` kept, every other one masked). In every mode, the values of keys
    on sentry-sdk's sensitive denylist or the library's credential list are masked.
    """

    mode: str = "denylist"
    terms: tuple[str, ...] = ()

    @classmethod
    def from_option(cls, value: Any) -> KeyValueRule:
        """The rule for one category of the resolved option (a denylist if malformed)."""
        if not isinstance(value, Mapping):
            return cls()
        mode = value.get("mode", "denylist")
        terms = value.get("terms") or ()
        return cls(
            mode if mode in ("off", "denylist", "allowlist") else "denylist",
            tuple(term.lower() for term in terms if isinstance(term, str) and term),
        )

    def masks(self, key: str) -> bool:
        """Whether the value of ``key`` is replaced by ``[Filtered]``."""
        lowered = key.lower()
        if is_sensitive_key(lowered) or any(word in lowered for word in _SDK_DENYLIST):
            return True
        listed = any(term in lowered for term in self.terms)
        return not listed if self.mode == "allowlist" else listed

    def apply(self, items: Mapping[str, Any]) -> dict[str, Any] | None:
        """``items`` with the values this rule masks masked; ``None`` when the mode is off."""
        if self.mode == "off":
            return None
        return {
            key: FILTERED if isinstance(key, str) and self.masks(key) else value
            for key, value in items.items()
        }

    def apply_to_query(self, query: str) -> str | None:
        """``query`` with the parameters this rule masks masked; ``None`` when the mode is off."""
        if self.mode == "off":
            return None
        parts = []
        for part in query.split("&"):
            key = part.partition("=")[0]
            parts.append(f"{key}={FILTERED}" if part and self.masks(unquote_plus(key)) else part)
        return "&".join(parts)


@dataclass(frozen=True, slots=True)
class DataCollection:
    """What the library applies itself of sentry-sdk's ``data_collection`` option."""

    user_info: bool
    headers: KeyValueRule
    cookies: KeyValueRule
    query: KeyValueRule


def data_collection() -> DataCollection | None:
    """The ``data_collection`` the app gave sentry-sdk, or ``None`` when it gave none.

    Read from the client's resolved options (sentry-sdk fills in its defaults
    for what the app left out): call it once per event, not per field.
    ``None`` (an SDK without the option, or an app that did not pass it)
    means the library's own rules alone apply.
    """
    resolved = sentry_sdk.get_client().options.get("data_collection")
    if not isinstance(resolved, Mapping) or not resolved.get("provided_by_user"):
        return None
    headers = resolved.get("http_headers")
    return DataCollection(
        user_info=bool(resolved.get("user_info", True)),
        headers=KeyValueRule.from_option(
            headers.get("request") if isinstance(headers, Mapping) else None
        ),
        cookies=KeyValueRule.from_option(resolved.get("cookies")),
        query=KeyValueRule.from_option(resolved.get("url_query_params")),
    )


def scrub_event(event: dict[str, Any], hint: dict[str, Any] | None = None) -> dict[str, Any]:
    """Mask every credential in ``event`` in place and return it (a ``before_send``).

    With the app's ``data_collection``, its rules for headers, cookies, query
    parameters and user fields are applied as well.
    """
    collection = data_collection()
    request = event.get("request")
    if isinstance(request, dict):
        if collection is None:
            _scrub_request(request)
        else:
            _collect_request(request, collection)
    user = event.get("user")
    if collection is not None and not collection.user_info and isinstance(user, dict):
        event["user"] = {k: v for k, v in user.items() if k not in PII_USER_FIELDS}
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


def _scrub_request(request: dict[str, Any]) -> None:
    """Without ``data_collection``: the library's own rules."""
    if request.get("cookies"):
        request["cookies"] = FILTERED
    for key in ("headers", "data", "env"):
        if key in request:
            request[key] = scrub(request[key])
    query = request.get("query_string")
    if isinstance(query, str) and query:
        request["query_string"] = _scrub_query(query)


def _collect_request(request: dict[str, Any], collection: DataCollection) -> None:
    """With ``data_collection``: each category by its rule, credentials masked in every mode."""
    for key, rule in (("headers", collection.headers), ("cookies", collection.cookies)):
        value = request.get(key)
        if value is None:
            continue
        if rule.mode == "off":
            del request[key]
        elif isinstance(value, Mapping):
            request[key] = rule.apply(value)
        elif key == "cookies":  # a raw cookie string: masked whole, as without the option
            request[key] = FILTERED
    query = request.get("query_string")
    if isinstance(query, str):
        kept = collection.query.apply_to_query(query)
        if kept is None:
            del request["query_string"]
        else:
            request["query_string"] = kept
    for key in ("headers", "data", "env"):
        if key in request:
            request[key] = scrub(request[key])


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
