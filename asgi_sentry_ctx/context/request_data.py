"""The ``request`` block of an event, read from the ASGI scope with secrets masked."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from asgi_sentry_ctx.sentry.scrubbing import (
    FILTERED,
    DataCollection,
    data_collection,
    is_sensitive_key,
)

__all__ = ["request_data"]

_DEFAULT_PORTS = {"http": 80, "https": 443, "ws": 80, "wss": 443}


def request_data(scope: Mapping[str, Any]) -> dict[str, Any]:
    """Method, URL, query string and headers of the request in ``scope``.

    Credentials (authorization, cookies, API keys, tokens) are masked here,
    before the data ever reaches an event. When the app gave sentry-sdk's
    ``data_collection`` option, headers, cookies and the query string follow
    its rules, as the SDK's own integrations do (read once, here: the block is
    built only when an event is).
    """
    collection = data_collection()
    if collection is not None:
        return _collected(scope, collection)
    headers: dict[str, str] = {}
    for raw_name, raw_value in scope.get("headers") or ():
        name = raw_name.decode("latin-1").lower()
        value = FILTERED if is_sensitive_key(name) else raw_value.decode("latin-1")
        headers[name] = f"{headers[name]}, {value}" if name in headers else value
    data: dict[str, Any] = {"url": _url(scope, headers.get("host")), "headers": headers}
    query = (scope.get("query_string") or b"").decode("latin-1")
    if query:  # absent when empty, as in the SDK's own request block
        data["query_string"] = query
    if scope["type"] == "http":
        data["method"] = scope.get("method", "GET")
    return data


def _collected(scope: Mapping[str, Any], collection: DataCollection) -> dict[str, Any]:
    """The request block under ``data_collection``: absent categories are left out."""
    headers: dict[str, str] = {}
    cookie_headers: list[str] = []
    for raw_name, raw_value in scope.get("headers") or ():
        name, value = raw_name.decode("latin-1").lower(), raw_value.decode("latin-1")
        headers[name] = f"{headers[name]}, {value}" if name in headers else value
        if name == "cookie":
            cookie_headers.append(value)
    data: dict[str, Any] = {"url": _url(scope, headers.get("host"))}
    query = collection.query.apply_to_query((scope.get("query_string") or b"").decode("latin-1"))
    if query:
        data["query_string"] = query
    kept_headers = collection.headers.apply(headers)
    if kept_headers is not None:
        data["headers"] = kept_headers
    cookies = collection.cookies.apply(_cookies(cookie_headers))
    if cookies:
        data["cookies"] = cookies
    if scope["type"] == "http":
        data["method"] = scope.get("method", "GET")
    return data


def _cookies(cookie_headers: list[str]) -> dict[str, str]:
    """Name to value, from ``Cookie`` headers (one per header line under HTTP/2)."""
    cookies: dict[str, str] = {}
    for header in cookie_headers:
        for chunk in header.split(";"):
            name, _, value = chunk.partition("=")
            if name.strip():
                cookies[name.strip()] = value.strip()
    return cookies


def _url(scope: Mapping[str, Any], host: str | None) -> str:
    scheme = scope.get("scheme") or ("http" if scope["type"] == "http" else "ws")
    # ASGI's "path" already includes "root_path".
    path = scope.get("path", "")
    if host is None:
        server = scope.get("server")
        if server and server[0]:
            hostname, port = server[0], server[1]
            host = hostname if port in (None, _DEFAULT_PORTS.get(scheme)) else f"{hostname}:{port}"
        else:
            host = "localhost"
    return f"{scheme}://{host}{path}"
