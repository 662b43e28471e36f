"""Business context: which podcast, which episode, which action an event is about.

Three kinds of fields, merged when an event is built, most specific last:

- Fields set outside any request (``set_business_context`` at start-up, or a
  ``business_context`` block a request runs in) are defaults: a request's own
  fields override them.
- ``set_business_context`` inside a request sets fields for the rest of that
  request, wherever they are set: in the handler, a task it spawned or a
  worker thread (a sync view or dependency). Like ``set_user``, they belong to
  the request, so its unhandled-exception event carries them. Outside any
  request they apply to the current context (a background job's task).
- ``with business_context(...)`` sets fields for a block of code, in a context
  variable: they follow that block (and the tasks and threads it starts), win
  over the request's fields inside it, and are gone when it ends, even when
  concurrent tasks of one request each run their own block.

Every field goes into the event's ``business`` context block as given, and each
field that is a valid Sentry tag also becomes a searchable tag. Where the SDK
streams spans, a request's own fields that are valid tags are also attributes
of the spans it sends from then on (streamed spans carry no tags).
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

from sentry_sdk.scope import _isolation_scope

from asgi_sentry_ctx.context.processors import register_once
from asgi_sentry_ctx.context.state import current_request
from asgi_sentry_ctx.context.tracing_mode import tracing_mode

__all__ = [
    "apply_business",
    "business_context",
    "current_business_context",
    "set_business_context",
    "tag_value",
]

_fields: ContextVar[Mapping[str, Any] | None] = ContextVar("asgi_sentry_ctx.business", default=None)

# Sentry's ingestion rejects tags outside these limits.
_TAG_KEY = re.compile(r"[A-Za-z0-9_.:\-]{1,32}")
_MAX_TAG_VALUE = 200
_TAGGABLE = (str, int, float)


def set_business_context(**fields: Any) -> None:
    """Add fields to the business context of the current request or job.

    ``set_business_context(podcast_id="123", action="upload")`` tags every later
    event of this request with ``podcast_id`` and ``action`` and records both in
    its ``business`` context. A field set to ``None`` is removed. Inside a
    request the fields belong to the request, wherever they are set (a task, a
    worker thread) and end with it; outside one, they apply to the current
    context.
    """
    if not _processor_registered:
        _register_processor()
    state = current_request()
    if state is None:
        _fields.set(_merged(_fields.get(), fields))
    else:
        state.business = _merged(state.business, fields)
        _set_span_attributes(fields)


def _set_span_attributes(fields: Mapping[str, Any]) -> None:
    # Streamed spans (``trace_lifecycle="stream"``) take scope attributes, not
    # tags: the request's fields that are tags become attributes of its spans.
    # The scope's context variable, not ``Scope.get_isolation_scope()``: a
    # request's is always set, and this runs for every field set in a request.
    isolation = _isolation_scope.get()
    if isolation is None or not tracing_mode(isolation).spans_streamed:
        return
    for key, value in fields.items():
        if value is None:
            isolation.remove_attribute(key)
        elif is_valid_tag_key(key) and tag_value(value) is not None:
            isolation.set_attribute(key, value)


@contextmanager
def business_context(**fields: Any) -> Iterator[None]:
    """Apply business fields for a block of code, then restore what was there before.

    Made for background jobs and other code outside a request:

    ```python
    with business_context(podcast_id=podcast.id, action="transcribe"):
        transcribe(episode)
    ```
    """
    if not _processor_registered:
        _register_processor()
    token = _fields.set(_merged(_enclosing_block(), fields))
    try:
        yield
    finally:
        _fields.reset(token)


# Set by the first call that sets fields, or by the set-up step: fields set
# with sentry-sdk initialised by hand, and no middleware, still reach events.
_processor_registered = False


def _register_processor() -> None:
    global _processor_registered
    register_once(apply_business)
    _processor_registered = True


def current_business_context() -> Mapping[str, Any]:
    """The business fields in force here: outside any request's, the request's,
    then the enclosing blocks' inside the request, each overriding the one before."""
    state = current_request()
    block_fields = _fields.get()
    if state is None:
        return block_fields or {}
    base = state.base_business
    request_fields = state.business
    if block_fields is base:
        block_fields = None  # no block entered inside the request
    if not base and not block_fields:
        return request_fields or {}
    return {**(base or {}), **(request_fields or {}), **(block_fields or {})}


def _enclosing_block() -> Mapping[str, Any] | None:
    # Inside a request, a block starts from the blocks entered inside it only:
    # the fields in force outside the request are defaults, under the request's.
    fields = _fields.get()
    state = current_request()
    if state is not None and fields is state.base_business:
        return None
    return fields


def tag_value(value: Any) -> str | None:
    """The tag form of ``value``, or ``None`` when Sentry would reject it as a tag."""
    if isinstance(value, bool) or not isinstance(value, _TAGGABLE):
        return None
    text = str(value)
    if not text or len(text) > _MAX_TAG_VALUE or "\n" in text or "\r" in text:
        return None
    return text


def is_valid_tag_key(key: str) -> bool:
    """Whether Sentry accepts ``key`` as a tag key."""
    return _TAG_KEY.fullmatch(key) is not None


def _merged(
    current: Mapping[str, Any] | None, fields: Mapping[str, Any]
) -> Mapping[str, Any] | None:
    # A new dict every time: a snapshot that another task holds never changes under it.
    merged = dict(current) if current else {}
    for key, value in fields.items():
        if value is None:
            merged.pop(key, None)
        else:
            merged[key] = value
    return merged or None


def apply_business(event: dict[str, Any], hint: dict[str, Any]) -> dict[str, Any]:
    """Global event processor: the business fields in force go into ``event``'s
    ``business`` context, and those that are valid tags into its tags. The
    set-up step (`asgi_sentry_ctx.sentry.hooks.setup_once`) registers it."""
    fields = current_business_context()
    if not fields:
        return event
    event.setdefault("contexts", {})["business"] = dict(fields)
    tags = event.setdefault("tags", {})
    for key, value in fields.items():
        text = tag_value(value)
        if text is not None and is_valid_tag_key(key):
            tags[key] = text
    return event
