"""``StoreTransport``: a sentry-sdk transport that writes every envelope to disk first.

The SDK's own transport keeps envelopes in a 100-slot memory queue and drops
them when the queue is full, on a network error, during a rate limit, and at
exit after ``shutdown_timeout``. This one hands each envelope to the
``EventStore`` before ``capture_envelope`` returns, and a background
``Forwarder`` (``store/forwarding.py``) sends it to the DSN; it leaves the
disk only when Sentry acknowledged it. Without a DSN nothing is forwarded:
the store is where events go, and ``python -m asgi_sentry_ctx events`` shows
them.

Use it through ``init_sentry(store=PATH)``, or with the SDK directly::

    sentry_sdk.init(dsn=..., transport=store_transport("events.db"))
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

from sentry_sdk.envelope import Envelope, Item
from sentry_sdk.transport import Transport

from asgi_sentry_ctx._log import logger
from asgi_sentry_ctx.store.event_store import EventStore
from asgi_sentry_ctx.store.forwarding import Forwarder, HttpSender

if TYPE_CHECKING:
    from collections.abc import Callable

    from sentry_sdk._types import EventDataCategory

__all__ = ["StoreTransport", "store_transport"]


class StoreTransport(Transport):
    """Store every envelope in ``store``; forward it to the DSN (if any) in the background.

    ``keep_sent`` keeps acknowledged envelopes as ``sent`` history (evicted
    first when the store is full) instead of deleting them. ``retry_base`` and
    ``retry_max`` (seconds) shape the backoff after a failure; ``poll_interval``
    is how often the store is looked at for envelopes other processes wrote.
    """

    def __init__(
        self,
        options: dict[str, Any] | None = None,
        *,
        store: EventStore | str | os.PathLike[str],
        keep_sent: bool = True,
        retry_base: float = 1.0,
        retry_max: float = 60.0,
        poll_interval: float = 1.0,
    ) -> None:
        super().__init__(options)
        self.store = store if isinstance(store, EventStore) else EventStore(store)
        self._sender: HttpSender | None = None
        self._forwarder: Forwarder | None = None
        if options is not None and self.parsed_dsn is not None:
            self._sender = HttpSender(options)
            self._forwarder = Forwarder(
                self.store,
                self._sender.post,
                keep_sent=keep_sent,
                retry_base=retry_base,
                retry_max=retry_max,
                poll_interval=poll_interval,
                on_dead_letter=self._dead_lettered,
                on_round=self._store_client_report,
            )
            self._forwarder.ensure_started()

    def capture_envelope(self, envelope: Envelope) -> None:
        try:
            evicted = self.store.put(
                envelope.serialize(),
                event_id=envelope.headers.get("event_id"),
                kinds=[item.type or "unknown" for item in envelope.items],
                categories=[item.data_category for item in envelope.items],
                forward=self._forwarder is not None,
            )
        except Exception:
            logger.exception("asgi_sentry_ctx: could not write an envelope to the event store")
            if self._sender is not None:
                # Not on disk: the SDK's in-memory path is still better than nothing.
                self._sender.capture_envelope(envelope)
            return
        for categories in evicted:
            for category in categories:
                self.record_lost_event("cache_overflow", data_category=category)  # type: ignore[arg-type]
        if self._forwarder is not None:
            self._forwarder.ensure_started()  # again in a forked worker
            self._forwarder.wake()

    def flush(self, timeout: float, callback: Callable[[int, float], Any] | None = None) -> None:
        if self._forwarder is not None and timeout > 0:
            self._forwarder.flush(timeout, callback)

    def kill(self) -> None:
        if self._forwarder is not None:
            self._forwarder.stop()
        if self._sender is not None:
            self._sender.kill()
        self.store.close()

    def record_lost_event(
        self,
        reason: str,
        data_category: EventDataCategory | None = None,
        item: Item | None = None,
        *,
        quantity: int = 1,
    ) -> None:
        # The SDK's accounting (spans of a transaction, bytes of logs...), sent
        # as a client report through the store like any other envelope.
        if self._sender is not None:
            self._sender.record_lost_event(reason, data_category, item, quantity=quantity)

    def is_healthy(self) -> bool:
        return True  # the disk absorbs what Sentry cannot take right now

    def _dead_lettered(self, categories: tuple[str, ...]) -> None:
        for category in categories:
            self.record_lost_event("send_error", data_category=category)  # type: ignore[arg-type]

    def _store_client_report(self, force: bool) -> None:
        if self._sender is None:
            return
        item = self._sender._fetch_pending_client_report(force=force, interval=60)
        if item is not None:
            self.capture_envelope(Envelope(items=[item]))


def store_transport(
    store: EventStore | str | os.PathLike[str], **settings: Any
) -> type[StoreTransport]:
    """A [`StoreTransport`][asgi_sentry_ctx.StoreTransport] class bound to ``store``, for
    ``sentry_sdk.init(transport=...)``.

    The SDK instantiates a transport class with its final options (DSN,
    proxies, certificates), which the forwarder needs. ``settings`` are
    [`StoreTransport`][asgi_sentry_ctx.StoreTransport]'s keyword arguments.
    """

    class BoundStoreTransport(StoreTransport):
        def __init__(self, options: dict[str, Any] | None = None) -> None:
            super().__init__(options, store=store, **settings)

    return BoundStoreTransport
