"""Users: set explicitly or resolved lazily by an extractor; personal data only when allowed."""

from __future__ import annotations

import contextlib
import logging
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any

import msgspec
import pydantic
import pytest
import sentry_sdk
from sentry_sdk.consts import DEFAULT_OPTIONS
from sentry_sdk.integrations.asgi import SentryAsgiMiddleware

from asgi_sentry_ctx import (
    SentryContextMiddleware,
    capture_message,
    clear_user,
    current_user,
    set_user,
    user_from,
)
from asgi_sentry_ctx.context.users import bind_request_user
from asgi_sentry_ctx.testing import SentryIngest
from tests.asgi import ok, request
from tests.conftest import SentryInit
from tests.events import events_before_marker


def capturing(*messages: str, before: Any = None) -> Any:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        if before is not None:
            before(scope)
        for message in messages:
            capture_message(message)
        await ok(scope, receive, send)

    return app


# Personal data allowed: ``data_collection`` where sentry-sdk has it (``send_default_pii``
# is deprecated there), ``send_default_pii`` on older releases (2.20).
PII_ALLOWED: dict[str, Any] = (
    {"data_collection": {"user_info": True}}
    if "data_collection" in DEFAULT_OPTIONS
    else {"send_default_pii": True}
)


def send_default_pii_warning() -> AbstractContextManager[Any]:
    """Where ``send_default_pii`` is tested on purpose: sentry-sdk 2.7x warns that it
    is deprecated (it still honours it), older releases do not."""
    if "data_collection" in DEFAULT_OPTIONS:
        return pytest.warns(DeprecationWarning, match="send_default_pii")
    return contextlib.nullcontext()


class TestAUserSetOutsideAnyRequest:
    """Belongs to events outside requests, never to a request's."""

    async def test_is_not_the_user_of_a_requests_events(
        self, sentry_init: SentryInit, ingest: SentryIngest
    ) -> None:
        sentry_init()
        with sentry_sdk.isolation_scope():  # the start-up's scope, this test's alone
            set_user("worker-user")
            await request(SentryContextMiddleware(capturing("in the request")))
        [event] = ingest.wait_for_events(1)
        assert "user" not in event

    async def test_is_the_user_of_events_outside_requests(
        self, sentry_init: SentryInit, ingest: SentryIngest
    ) -> None:
        sentry_init()
        with sentry_sdk.isolation_scope():
            set_user("worker-user")
            await request(SentryContextMiddleware(capturing("in the request")))
            capture_message("outside")
        _, outside = ingest.wait_for_events(2)
        assert outside["user"] == {"id": "worker-user"}

    async def test_is_not_the_user_of_a_requests_events_inside_the_sdks_middleware(
        self, sentry_init: SentryInit, ingest: SentryIngest
    ) -> None:
        sentry_init()
        with sentry_sdk.isolation_scope():
            set_user("worker-user")
            await request(SentryAsgiMiddleware(SentryContextMiddleware(capturing("in it"))))
        [event] = ingest.wait_for_events(1)
        assert "user" not in event

    async def test_yields_to_the_requests_extractor(
        self, sentry_init: SentryInit, ingest: SentryIngest
    ) -> None:
        sentry_init()
        with sentry_sdk.isolation_scope():
            set_user("worker-user")
            app = SentryContextMiddleware(
                capturing("in the request"), user_extractor=lambda scope: "from-auth"
            )
            await request(app)
        [event] = ingest.wait_for_events(1)
        assert event["user"] == {"id": "from-auth"}


class TestSetUser:
    async def test_set_user_attaches_id_and_extra_fields(
        self, sentry_init: SentryInit, ingest: SentryIngest
    ) -> None:
        sentry_init()
        app = capturing("m", before=lambda scope: set_user(42, plan="pro"))
        await request(SentryContextMiddleware(app))
        [event] = ingest.wait_for_events(1)
        assert event["user"] == {"id": "42", "plan": "pro"}

    async def test_email_and_username_are_dropped_without_pii(
        self, sentry_init: SentryInit, ingest: SentryIngest
    ) -> None:
        sentry_init()
        app = capturing("m", before=lambda s: set_user("u-1", email="a@b.c", username="ann"))
        await request(SentryContextMiddleware(app))
        [event] = ingest.wait_for_events(1)
        assert event["user"] == {"id": "u-1"}

    @pytest.mark.parametrize(
        "options",
        [
            pytest.param({"send_default_pii": True}, id="send_default_pii"),
            pytest.param(
                {"data_collection": {"user_info": True}},
                id="data_collection",
                marks=pytest.mark.sdk_feature("data_collection"),
            ),
        ],
    )
    async def test_email_and_username_are_sent_when_pii_is_allowed(
        self, options: dict[str, Any], sentry_init: SentryInit, ingest: SentryIngest
    ) -> None:
        if "send_default_pii" in options:
            with send_default_pii_warning():
                sentry_init(**options)
        else:
            sentry_init(**options)
        app = capturing("m", before=lambda s: set_user("u-1", email="a@b.c", username="ann"))
        await request(SentryContextMiddleware(app))
        [event] = ingest.wait_for_events(1)
        assert event["user"] == {"id": "u-1", "email": "a@b.c", "username": "ann"}

    @pytest.mark.sdk_feature("data_collection")
    async def test_data_collection_without_user_info_drops_pii_even_with_send_default_pii(
        self, sentry_init: SentryInit, ingest: SentryIngest
    ) -> None:
        with pytest.warns(DeprecationWarning, match="send_default_pii"):
            sentry_init(send_default_pii=True, data_collection={"user_info": False})
        set_user("u-1", email="a@b.c")
        capture_message("m")
        clear_user()
        [event] = ingest.wait_for_events(1)
        assert event["user"] == {"id": "u-1"}

    async def test_clear_user_removes_the_user_from_later_events(
        self, sentry_init: SentryInit, ingest: SentryIngest
    ) -> None:
        sentry_init()

        async def app(scope: Any, receive: Any, send: Any) -> None:
            set_user("u-1")
            capture_message("logged in")
            clear_user()
            capture_message("logged out")
            await ok(scope, receive, send)

        await request(SentryContextMiddleware(app, user_extractor=lambda scope: "from-extractor"))
        logged_in, logged_out = ingest.wait_for_events(2)
        assert logged_in["user"] == {"id": "u-1"}
        assert "user" not in logged_out

    async def test_set_user_wins_over_the_extractor(
        self, sentry_init: SentryInit, ingest: SentryIngest
    ) -> None:
        sentry_init()
        calls: list[Any] = []

        def extractor(scope: Any) -> str:
            calls.append(scope)
            return "from-extractor"

        app = capturing("m", before=lambda scope: set_user("explicit"))
        await request(SentryContextMiddleware(app, user_extractor=extractor))
        [event] = ingest.wait_for_events(1)
        assert event["user"] == {"id": "explicit"}
        assert calls == []


class TestUserExtractor:
    async def test_extractor_is_not_called_for_a_request_that_captures_nothing(
        self, sentry_init: SentryInit
    ) -> None:
        sentry_init()
        calls: list[Any] = []

        def extractor(scope: Any) -> str:
            calls.append(scope)
            return "u-1"

        app = SentryContextMiddleware(capturing(), user_extractor=extractor)
        for _ in range(3):
            await request(app)
        assert calls == []

    async def test_extractor_is_called_when_an_event_is_built_and_sees_later_auth(
        self, sentry_init: SentryInit, ingest: SentryIngest
    ) -> None:
        sentry_init()
        calls: list[Any] = []

        def extractor(scope: Any) -> Any:
            calls.append(scope["path"])
            return scope.get("user")

        def authenticate(scope: Any) -> None:
            # Auth deeper in the stack runs after the middleware started.
            scope["user"] = {"id": "u-7", "email": "x@y.z"}

        app = capturing("m", before=authenticate)
        await request(SentryContextMiddleware(app, user_extractor=extractor), "/me")
        [event] = ingest.wait_for_events(1)
        assert event["user"] == {"id": "u-7"}
        assert calls == ["/me"]

    async def test_a_raising_extractor_logs_once_and_the_event_is_still_sent(
        self,
        sentry_init: SentryInit,
        ingest: SentryIngest,
        caplog: pytest.LogCaptureFixture,
    ) -> None:
        sentry_init()

        def extractor(scope: Any) -> Any:
            raise RuntimeError("auth backend down")

        app = SentryContextMiddleware(capturing("still sent"), user_extractor=extractor)
        with caplog.at_level(logging.DEBUG):
            response = await request(app)
        assert response.status == 200
        [event] = events_before_marker(ingest)
        assert event["message"] == "still sent"
        assert "user" not in event
        ours = [r for r in caplog.records if r.name == "asgi_sentry_ctx"]
        assert len(ours) == 1
        assert "user_extractor raised" in ours[0].getMessage()
        assert ours[0].exc_info is not None

    async def test_an_extractor_returning_none_means_no_user(
        self, sentry_init: SentryInit, ingest: SentryIngest
    ) -> None:
        sentry_init()
        app = SentryContextMiddleware(capturing("anonymous"), user_extractor=lambda scope: None)
        await request(app)
        [event] = ingest.wait_for_events(1)
        assert "user" not in event


class TestCurrentUserInARequest:
    """``current_user()`` resolves a request's user exactly as its events do."""

    @pytest.mark.parametrize(
        ("before", "expected"),
        [
            (lambda scope: None, {"id": "from-extractor"}),
            (lambda scope: set_user("explicit"), {"id": "explicit"}),
            (lambda scope: clear_user(), None),
            (lambda scope: bind_request_user({"id": "bound"}), {"id": "bound"}),
        ],
        ids=["extractor", "set-user", "cleared", "bound"],
    )
    async def test_is_the_user_the_event_carries(
        self,
        before: Any,
        expected: dict[str, Any] | None,
        sentry_init: SentryInit,
        ingest: SentryIngest,
    ) -> None:
        sentry_init()
        seen: list[Any] = []

        def look(scope: Any) -> None:
            before(scope)
            seen.append(current_user())

        app = capturing("m", before=look)
        await request(SentryContextMiddleware(app, user_extractor=lambda scope: "from-extractor"))
        [event] = ingest.wait_for_events(1)
        assert seen == [expected]
        assert event.get("user") == expected

    async def test_a_raising_extractor_is_no_user_and_is_logged(
        self, sentry_init: SentryInit, caplog: pytest.LogCaptureFixture
    ) -> None:
        sentry_init()
        seen: list[Any] = []

        def extractor(scope: Any) -> Any:
            raise RuntimeError("auth backend down")

        app = capturing(before=lambda scope: seen.append(current_user()))
        with caplog.at_level(logging.DEBUG):
            await request(SentryContextMiddleware(app, user_extractor=extractor))
        assert seen == [None]
        ours = [r for r in caplog.records if r.name == "asgi_sentry_ctx"]
        assert ["user_extractor raised" in r.getMessage() for r in ours] == [True]


class MutableUser:
    """A user whose id changes after it was bound: shows when it is read."""

    def __init__(self, id: str) -> None:
        self.id = id


class UnreadableUser(dict[str, Any]):
    """A mapping that raises something else than ``KeyError`` when read."""

    def __getitem__(self, key: str) -> Any:
        raise RuntimeError("session closed")


class TestBindRequestUser:
    """The core of the adapters' user binding (FastAPI's ``bind_user``, Quart's async getter)."""

    async def test_binds_lazily_in_a_request_and_replaces_the_extractor(
        self, sentry_init: SentryInit, ingest: SentryIngest
    ) -> None:
        sentry_init()
        calls: list[Any] = []

        def extractor(scope: Any) -> str:
            calls.append(scope)
            return "from-extractor"

        def bind(scope: Any) -> None:
            user = MutableUser("u-1")
            bind_request_user(user)
            user.id = "u-2"  # read when the event is built, not now

        app = capturing("m", before=bind)
        await request(SentryContextMiddleware(app, user_extractor=extractor))
        [event] = ingest.wait_for_events(1)
        assert event["user"] == {"id": "u-2"}
        assert calls == []

    async def test_not_lazily_reads_the_user_now(
        self, sentry_init: SentryInit, ingest: SentryIngest
    ) -> None:
        sentry_init()

        def bind(scope: Any) -> None:
            user = MutableUser("u-1")
            bind_request_user(user, lazily=False)
            user.id = "u-2"

        await request(SentryContextMiddleware(capturing("m", before=bind)))
        [event] = ingest.wait_for_events(1)
        assert event["user"] == {"id": "u-1"}

    @pytest.mark.parametrize("lazily", [True, False])
    async def test_a_later_set_user_or_clear_user_wins(
        self, lazily: bool, sentry_init: SentryInit, ingest: SentryIngest
    ) -> None:
        sentry_init()

        async def app(scope: Any, receive: Any, send: Any) -> None:
            bind_request_user({"id": "bound"}, lazily=lazily)
            set_user("explicit")
            capture_message("set")
            bind_request_user({"id": "bound"}, lazily=lazily)
            clear_user()
            capture_message("cleared")
            await ok(scope, receive, send)

        await request(SentryContextMiddleware(app))
        explicit, cleared = ingest.wait_for_events(2)
        assert explicit["user"] == {"id": "explicit"}
        assert "user" not in cleared

    @pytest.mark.parametrize("lazily", [True, False])
    async def test_none_binds_nothing(
        self, lazily: bool, sentry_init: SentryInit, ingest: SentryIngest
    ) -> None:
        sentry_init()
        app = capturing("m", before=lambda scope: bind_request_user(None, lazily=lazily))
        await request(SentryContextMiddleware(app, user_extractor=lambda scope: "from-auth"))
        [event] = ingest.wait_for_events(1)
        assert event["user"] == {"id": "from-auth"}

    async def test_outside_a_request_it_sets_the_scopes_user(self, sentry_init: SentryInit) -> None:
        sentry_init()
        with sentry_sdk.isolation_scope():
            bind_request_user(MutableUser("worker-user"))
            assert current_user() == {"id": "worker-user"}

    async def test_an_unreadable_user_is_logged_and_never_raises(
        self, sentry_init: SentryInit, caplog: pytest.LogCaptureFixture
    ) -> None:
        sentry_init()
        with sentry_sdk.isolation_scope(), caplog.at_level(logging.ERROR):
            bind_request_user(UnreadableUser(), lazily=False)
            assert current_user() is None
        ours = [r for r in caplog.records if r.name == "asgi_sentry_ctx"]
        assert ["could not bind the user" in r.getMessage() for r in ours] == [True]


@dataclass
class DataclassUser:
    id: int
    email: str
    name: str


class PydanticUser(pydantic.BaseModel):
    user_id: str
    email: str
    username: str


class MsgspecUser(msgspec.Struct):
    sub: str
    email: str


class PlainUser:
    def __init__(self) -> None:
        self.pk = 5
        self.login = "ann"


class RaisingIdentity:
    """Like Starlette's ``SimpleUser``: ``identity`` raises, the id is elsewhere."""

    @property
    def identity(self) -> str:
        raise NotImplementedError

    @property
    def id(self) -> str:
        raise RuntimeError("lazy load failed")

    auth_id = "auth-3"


class OnlyRaising:
    @property
    def identity(self) -> str:
        raise NotImplementedError


class MethodId:
    def id(self) -> str:
        return "a method is not an id"


class TestUserFrom:
    @pytest.mark.parametrize(
        ("given", "expected"),
        [
            ({"id": 1, "email": "a@b.c", "username": "ann"}, {"id": "1"}),
            (DataclassUser(id=2, email="a@b.c", name="ann"), {"id": "2"}),
            (PydanticUser(user_id="u-3", email="a@b.c", username="ann"), {"id": "u-3"}),
            (MsgspecUser(sub="sub-4", email="a@b.c"), {"id": "sub-4"}),
            (PlainUser(), {"id": "5"}),
            ("u-6", {"id": "u-6"}),
            (7, {"id": "7"}),
            (RaisingIdentity(), {"id": "auth-3"}),
            (None, None),
            (True, None),
            (OnlyRaising(), None),
            (MethodId(), None),
            ({"email": "no-id@b.c"}, None),
            ({"id": ""}, None),
        ],
        ids=[
            "dict",
            "dataclass",
            "pydantic",
            "msgspec",
            "plain-object",
            "str",
            "int",
            "raising-identity",
            "none",
            "bool",
            "only-raising",
            "method-id",
            "no-id",
            "empty-id",
        ],
    )
    def test_user_shapes_without_pii(self, given: Any, expected: Any) -> None:
        assert user_from(given) == expected

    @pytest.mark.parametrize(
        ("given", "expected"),
        [
            (
                {"id": 1, "email": "a@b.c", "username": "ann"},
                {"id": "1", "email": "a@b.c", "username": "ann"},
            ),
            (
                DataclassUser(id=2, email="a@b.c", name="ann"),
                {"id": "2", "email": "a@b.c", "username": "ann"},
            ),
            (
                PydanticUser(user_id="u-3", email="a@b.c", username="ann"),
                {"id": "u-3", "email": "a@b.c", "username": "ann"},
            ),
            (MsgspecUser(sub="sub-4", email="a@b.c"), {"id": "sub-4", "email": "a@b.c"}),
            (PlainUser(), {"id": "5", "username": "ann"}),
        ],
        ids=["dict", "dataclass", "pydantic", "msgspec", "plain-object"],
    )
    def test_user_shapes_with_pii(self, given: Any, expected: Any, sentry_init: SentryInit) -> None:
        sentry_init(**PII_ALLOWED)
        assert user_from(given) == expected
