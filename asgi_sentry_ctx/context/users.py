"""The user an event belongs to: set explicitly, or resolved lazily from the request."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import sentry_sdk

from asgi_sentry_ctx._log import logger
from asgi_sentry_ctx.context.state import current_request
from asgi_sentry_ctx.sentry.scrubbing import PII_USER_FIELDS

if TYPE_CHECKING:
    from asgi_sentry_ctx.context.state import RequestState

__all__ = [
    "bind_request_user",
    "clear_user",
    "current_user",
    "request_user",
    "set_user",
    "user_from",
]

_ID_FIELDS = ("id", "user_id", "identity", "pk", "sub", "auth_id")
_USERNAME_FIELDS = ("username", "display_name", "name", "login")


def set_user(
    id: str | int,
    *,
    email: str | None = None,
    username: str | None = None,
    **extra: Any,
) -> None:
    """Attach a user to every event of the current request (or background job).

    ``email`` and ``username`` are personal data: they are sent only when the
    SDK was initialised with a ``data_collection`` whose ``user_info`` is on
    (its default), or, without ``data_collection``, with the deprecated
    ``send_default_pii=True``. An explicit user wins over one an extractor
    would resolve.
    """
    user: dict[str, Any] = {"id": str(id), **extra}
    if email is not None:
        user["email"] = email
    if username is not None:
        user["username"] = username
    user = _without_pii(user)
    sentry_sdk.set_user(user)
    state = current_request()
    if state is not None:
        state.user = user
        state.user_cleared = False


def clear_user() -> None:
    """Forget the user for the rest of the current request (or job), e.g. on logout."""
    sentry_sdk.set_user(None)
    state = current_request()
    if state is not None:
        state.user = None
        state.user_cleared = True


def bind_request_user(user: Any, *, lazily: bool = True) -> None:
    """Make ``user``, whatever an auth layer calls a user, the current request's user.

    For adapters: the user a framework hands over after the middleware started
    (a dependency's result, an awaited getter's). Any shape
    [`user_from`][asgi_sentry_ctx.user_from] reads; ``None`` (anonymous)
    binds nothing.

    Inside a request and ``lazily`` (the default), ``user`` is kept as it is
    and read only when an event is built, so a request that reports nothing
    never pays for the conversion; it replaces the middleware's
    ``user_extractor`` for the rest of the request, and a later
    [`set_user`][asgi_sentry_ctx.set_user] or
    [`clear_user`][asgi_sentry_ctx.clear_user] still wins. With
    ``lazily=False``, or outside a request (no middleware), it is read now,
    while it can still be (an ORM object whose session closes before the
    request ends, say), and set as with ``set_user``. Never raises: a user
    that cannot be read is logged and the request goes on without one.
    """
    if user is None:
        return
    state = current_request()
    if state is not None and lazily:
        # Read by the event processor when (if ever) an event is built:
        # turning a pydantic model into Sentry's user costs more than the
        # rest of the binding.
        state.user_extractor = lambda _scope: user
        state.user = None
        state.user_cleared = False
        return
    try:
        found = user_from(user)
        if found is not None:
            set_user(**found)
    except Exception:
        # A user missing from events beats a failed request.
        logger.exception("asgi_sentry_ctx: could not bind the user; events go without a user")


def current_user() -> dict[str, Any] | None:
    """The user an event captured here would carry, or ``None``.

    In a request: the user given to [`set_user`][asgi_sentry_ctx.set_user],
    else the one the middleware's ``user_extractor`` resolves now (``None`` if
    it raises). Outside a request (a background job): the user set on the
    Sentry scope.
    """
    state = current_request()
    if state is not None and (
        state.user_cleared or state.user is not None or state.user_extractor is not None
    ):
        return request_user(state)
    user = sentry_sdk.get_isolation_scope()._user  # the SDK has no public reader
    return dict(user) if user else None


def request_user(state: RequestState) -> dict[str, Any] | None:
    """The user of ``state``'s request: ``None`` once cleared, else the one set,
    else the one its ``user_extractor`` resolves now (``None`` if it raises: logged)."""
    if state.user_cleared:
        return None
    if state.user is not None or state.user_extractor is None:
        return state.user
    try:
        return user_from(state.user_extractor(state.asgi_scope))
    except Exception:
        logger.exception("asgi_sentry_ctx: user_extractor raised; going on without a user")
        return None


def user_from(obj: Any) -> dict[str, Any] | None:
    """Turn whatever an auth layer calls a user into Sentry's user dict.

    Accepts a mapping, a dataclass, a pydantic model, a msgspec struct or any
    object with an id-like attribute (``id``, ``user_id``, ``identity``, ``pk``,
    ``sub``, ``auth_id``), a bare ``str``/``int`` id, or ``None``. Returns
    ``None`` when no id can be found: an anonymous user is no user. PII fields
    are dropped unless the SDK allows PII.
    """
    if obj is None or isinstance(obj, bool):
        return None
    if isinstance(obj, str | int):
        return {"id": str(obj)}
    fields = _fields_of(obj)
    user_id = _first(fields, _ID_FIELDS)
    if user_id is None or isinstance(user_id, bool) or user_id == "":
        return None
    user: dict[str, Any] = {"id": str(user_id)}
    email = fields.get("email")
    if isinstance(email, str) and email:
        user["email"] = email
    username = _first(fields, _USERNAME_FIELDS)
    if isinstance(username, str) and username:
        user["username"] = username
    return _without_pii(user)


def _fields_of(obj: Any) -> Mapping[str, Any]:
    # Dataclasses, pydantic models and msgspec structs all expose their fields
    # as attributes, so one attribute reader covers them.
    return obj if isinstance(obj, Mapping) else _Attributes(obj)


class _Attributes(Mapping[str, Any]):
    """Read an arbitrary object's attributes as a mapping, tolerating raising properties."""

    __slots__ = ("_obj",)

    def __init__(self, obj: Any) -> None:
        self._obj = obj

    def __getitem__(self, key: str) -> Any:
        try:
            value = getattr(self._obj, key)
        except Exception as exc:  # e.g. Starlette's SimpleUser.identity raises
            raise KeyError(key) from exc
        if callable(value):
            raise KeyError(key)
        return value

    def __iter__(self) -> Any:
        return iter(())

    def __len__(self) -> int:
        return 0


def _first(fields: Mapping[str, Any], names: tuple[str, ...]) -> Any:
    for name in names:
        try:
            value = fields[name]
        except KeyError:
            continue
        if value is not None:
            return value
    return None


def _pii_allowed() -> bool:
    # One read of the options, cheap: ``set_user`` runs on the request path.
    options = sentry_sdk.get_client().options
    # sentry-sdk 2.7x: ``data_collection``, when the app gave it, supersedes
    # ``send_default_pii`` (which it then ignores).
    collection = options.get("data_collection")
    if isinstance(collection, dict) and collection.get("provided_by_user"):
        return bool(collection.get("user_info"))
    return bool(options.get("send_default_pii"))


def _without_pii(user: dict[str, Any]) -> dict[str, Any]:
    if _pii_allowed():
        return user
    return {k: v for k, v in user.items() if k not in PII_USER_FIELDS}
