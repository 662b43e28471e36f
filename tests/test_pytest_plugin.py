"""The ``sentry_events`` fixture, as an app's own test suite gets it.

The behaviours are specified by a user's test file, run by pytest in a fresh
process with no conftest: the plugin is found through its ``pytest11`` entry
point, as in an app that installed the package. (docs/testing.md's test file
runs the same way, from tests/test_docs_examples.py.)
"""

from __future__ import annotations

import pytest

USERS_TESTS = """
import logging

import pytest
import sentry_sdk

from asgi_sentry_ctx import capture_message

USER_CLIENT = []


def test_1_an_app_initialised_sentry_itself():
    sentry_sdk.init(dsn="http://key@127.0.0.1:9/1", default_integrations=False)
    USER_CLIENT.append(sentry_sdk.get_client())


def test_2_the_fixture_initialises_sentry_against_its_ingest(sentry_events):
    assert sentry_sdk.get_client() is not USER_CLIENT[0]
    assert str(sentry_sdk.get_client().dsn) == sentry_events.dsn
    capture_message("hello")
    [event] = sentry_events.wait(1)
    assert event["message"] == "hello"
    assert event["environment"] == "test"


def test_3_the_apps_client_is_back_after_the_fixture():
    assert sentry_sdk.get_client() is USER_CLIENT[0]


def test_nothing_captured_settles_to_no_event(sentry_events):
    assert sentry_events.settle() == []


def test_events_are_found_by_message_and_by_exception_type(sentry_events):
    capture_message("first")
    try:
        raise KeyError("missing")
    except KeyError:
        sentry_sdk.capture_exception()
    assert [e["message"] for e in sentry_events.find(message="first")] == ["first"]
    assert len(sentry_events.find(exception=KeyError)) == 1
    assert len(sentry_events.find(exception="KeyError")) == 1
    assert sentry_events.find(exception=ValueError) == []


def test_one_fails_with_what_was_received(sentry_events):
    capture_message("only this")
    with pytest.raises(AssertionError, match="found 0; received: .*only this"):
        sentry_events.one(message="something else")


def test_a_response_without_a_request_id_fails_clearly(sentry_events):
    class Response:
        headers = {}

    with pytest.raises(AssertionError, match="no X-Request-ID header"):
        sentry_events.request_id_of(Response())


def test_waiting_for_more_events_than_arrive_times_out(sentry_events):
    capture_message("one")
    with pytest.raises(TimeoutError, match="expected 2 events, received 1"):
        sentry_events.wait(2, timeout=0.5)


def test_init_applies_the_apps_own_options(sentry_events):
    sentry_events.init(before_send=lambda event, hint: None)
    capture_message("dropped by the app's before_send")
    assert sentry_events.settle() == []


def test_the_noise_filter_is_the_productions(sentry_events):
    logging.getLogger("app").warning("disk almost full")
    [event] = sentry_events.wait(1)
    assert event["logentry"]["message"] == "disk almost full"
"""


def test_the_fixture_behaves_as_documented(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_users_app=USERS_TESTS)
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-p", "no:randomly")
    result.assert_outcomes(passed=USERS_TESTS.count("\ndef test_"))
