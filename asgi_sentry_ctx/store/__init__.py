"""Durable delivery: events kept in a local SQLite store before they are sent,
forwarded to Sentry from there, and read back with ``python -m asgi_sentry_ctx
events``. Knows nothing of requests.
"""

from asgi_sentry_ctx.store.event_store import EventStore
from asgi_sentry_ctx.store.transport import StoreTransport, store_transport

__all__ = ["EventStore", "StoreTransport", "store_transport"]
