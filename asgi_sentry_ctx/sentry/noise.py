"""The noise filter: drop events nobody needs to triage (404s, auth failures, validation errors).

Errors that are a client's doing, not the service's, fill a Sentry dashboard
and hide the real ones. An event is noise when its exception carries one of
the ignored HTTP status codes, is an instance of an ignored exception type,
or its response context records an ignored status.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from asgi_sentry_ctx._log import logger

__all__ = ["DEFAULT_NOISE_STATUS_CODES", "NoiseFilter", "ignore_exception_types"]

DEFAULT_NOISE_STATUS_CODES = frozenset({401, 403, 404, 422, 429})

BeforeSend = Callable[[dict[str, Any], dict[str, Any]], dict[str, Any] | None]

# Exception types the framework adapters declare as noise (validation errors,
# not-found...). Adapters add to it when they are imported; every NoiseFilter
# reads it at event time, so the order of set-up does not matter.
_registered_types: set[type[BaseException]] = set()


def ignore_exception_types(*types: type[BaseException]) -> None:
    """Declare exception types as noise for every [`NoiseFilter`][asgi_sentry_ctx.NoiseFilter].

    Process-wide and permanent: meant for framework adapters and libraries.
    An application passes ``noise_exception_types`` to
    [`init_sentry`][asgi_sentry_ctx.init_sentry] instead.
    """
    _registered_types.update(types)


class NoiseFilter:
    """A ``before_send`` that drops noise events and keeps everything else.

    ``status_codes`` replaces the default set (401, 403, 404, 422, 429);
    ``exception_types`` adds types to those the adapters registered. An error
    inside the filter keeps the event: better one event too many than a lost one.
    """

    def __init__(
        self,
        *,
        status_codes: Iterable[int] = DEFAULT_NOISE_STATUS_CODES,
        exception_types: Iterable[type[BaseException]] = (),
    ) -> None:
        self.status_codes = frozenset(status_codes)
        self.exception_types = tuple(exception_types)

    def __call__(self, event: dict[str, Any], hint: dict[str, Any]) -> dict[str, Any] | None:
        try:
            return None if self.is_noise(event, hint) else event
        except Exception:
            logger.exception("asgi_sentry_ctx: the noise filter failed; the event is kept")
            return event

    def is_noise(self, event: dict[str, Any], hint: dict[str, Any]) -> bool:
        """Whether ``event`` (with its ``hint``) is noise."""
        exc_info = hint.get("exc_info") if hint else None
        exc = exc_info[1] if exc_info else None
        if exc is not None:
            if isinstance(exc, self.exception_types + tuple(_registered_types)):
                return True
            if _status_of(exc) in self.status_codes:
                return True
        response = (event.get("contexts") or {}).get("response") or {}
        return response.get("status_code") in self.status_codes


def _status_of(exc: BaseException) -> int | None:
    # Starlette, FastAPI and Litestar use ``status_code``; werkzeug (Quart) uses ``code``.
    for attribute in ("status_code", "code", "status"):
        value = getattr(exc, attribute, None)
        if isinstance(value, int) and not isinstance(value, bool) and 100 <= value <= 599:
            return value
    return None
