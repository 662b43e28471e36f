"""The Celery adapter with real parts: a redis-server broker, a Celery worker and a web app.

The fixtures start a real ``redis-server`` on a free loopback port, a Starlette
app with the middleware under uvicorn (it publishes tasks from requests, with
Sentry initialised and sentry-sdk's ``CeleryIntegration`` on, as it is by
default), and a real worker (``celery -A tests.celery_app worker``, one
process: ``--concurrency=1``) whose Sentry sends to a loopback ingest. Each
test runs on the worker set-ups it names: the prefork pool with the SDK's
``CeleryIntegration`` on and off, and the threads pool. (The SDK's
integration runs each task in a scope of its own, and in the threads pool its
``ThreadingIntegration`` runs each submitted task in Sentry scopes of its own:
either hides a leaked scope of ours. The prefork set-up without the integration is the one that
proves our own clean-up.) Waits are bounded waits for pings, results and
event counts; nothing sleeps.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis
from celery import chain, chord, group  # type: ignore[import-untyped]
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from asgi_sentry_ctx import (
    SentryContextMiddleware,
    business_context,
    init_sentry,
    set_business_context,
)
from asgi_sentry_ctx.testing import SentryIngest
from tests import celery_app
from tests.conftest import reset_sdk
from tests.servers import _free_port, _wait_until, serve

ROOT = Path(__file__).resolve().parents[2]
RESULT_TIMEOUT = 60.0  # seconds: generous, two cores are shared
HEX_ID = re.compile(r"[0-9a-f]{32}")


@dataclass(frozen=True)
class Worker:
    """A running worker: its pool, whether the SDK's CeleryIntegration is on, its name."""

    pool: str
    sdk_celery: bool
    hostname: str


WORKERS = {
    "prefork": ("prefork", True),
    "prefork-without-sdk-celery": ("prefork", False),
    "threads": ("threads", True),
}


@pytest.fixture(scope="module")
def broker() -> Iterator[str]:
    """A real redis-server on a free loopback port, answering pings; stopped after."""
    port = _free_port()
    command = ["redis-server", "--port", str(port), "--bind", "127.0.0.1"]
    command += ["--save", "", "--appendonly", "no"]
    process = subprocess.Popen(
        command,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    client = redis.Redis(host="127.0.0.1", port=port, socket_timeout=1)
    try:
        _wait_until(lambda: _pings(client, process), what="redis-server", timeout=30)
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        client.close()
        _stop(process)


def _pings(client: redis.Redis, process: subprocess.Popen[bytes]) -> bool:
    if process.poll() is not None:
        raise RuntimeError(f"redis-server exited with {process.returncode}")
    try:
        return bool(client.ping())
    except redis.ConnectionError:
        return False


@pytest.fixture(scope="module")
def worker_ingest() -> Iterator[SentryIngest]:
    """The loopback ingest the workers' Sentry sends to."""
    with SentryIngest() as ingest:
        yield ingest


@pytest.fixture(scope="module")
def web_ingest() -> Iterator[SentryIngest]:
    """The loopback ingest the web app's Sentry (this process's) sends to."""
    with SentryIngest() as ingest:
        yield ingest


@pytest.fixture(scope="module")
def results(tmp_path_factory: pytest.TempPathFactory) -> str:
    """Where tasks' results go: files (see ``tests/celery_app.py``), one directory per module."""
    return f"file://{tmp_path_factory.mktemp('celery-results')}"


@pytest.fixture(scope="module")
def publisher(broker: str, results: str, web_ingest: SentryIngest) -> Iterator[Any]:
    """The tests' Celery app, publishing to ``broker``, with Sentry on in this
    process (CeleryIntegration included) as in a web app."""
    celery_app.app.conf.update(broker_url=broker, result_backend=results)
    # No trace headers on the tests' own HTTP calls: a test names the trace a request continues.
    assert init_sentry(
        web_ingest.dsn,
        traces_sample_rate=0.0,
        transport_queue_size=10_000,
        trace_propagation_targets=[],
    )
    try:
        yield celery_app.app
    finally:
        reset_sdk()


@pytest.fixture(scope="module", params=list(WORKERS))
def worker(
    request: pytest.FixtureRequest,
    broker: str,
    results: str,
    worker_ingest: SentryIngest,
    publisher: Any,
) -> Iterator[Worker]:
    """A real worker, one process (``--concurrency=1``), answering a control ping."""
    pool, sdk_celery = WORKERS[request.param]
    hostname = f"{request.param}-{uuid.uuid4().hex[:8]}@asgi-sentry-ctx"
    env = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith(("SENTRY_", "ASGI_SENTRY_CTX_"))
    }
    env.update(
        PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")])),
        TEST_CELERY_WORKER="1",
        TEST_CELERY_BROKER=broker,
        TEST_CELERY_RESULTS=results,
        TEST_CELERY_SDK_INTEGRATION="on" if sdk_celery else "off",
        SENTRY_DSN=worker_ingest.dsn,
    )
    command = [sys.executable, "-m", "celery", "-A", "tests.celery_app", "worker"]
    command += [f"--pool={pool}", "--concurrency=1", f"--hostname={hostname}"]
    command += ["--loglevel=INFO", "--without-gossip", "--without-mingle", "--without-heartbeat"]
    publisher.control.purge()
    process = subprocess.Popen(command, cwd=ROOT, env=env, start_new_session=True)
    try:
        _wait_until(lambda: _answers(publisher, hostname, process), what="the worker", timeout=90)
        yield Worker(pool, sdk_celery, hostname)
    finally:
        _stop(process, group=True)


def _answers(app: Any, hostname: str, process: subprocess.Popen[bytes]) -> bool:
    if process.poll() is not None:
        raise RuntimeError(f"the worker exited with {process.returncode}")
    return bool(app.control.ping(destination=[hostname], timeout=0.5))


def _stop(process: subprocess.Popen[bytes], *, group: bool = False) -> None:
    """Ask ``process`` to stop (a warm shutdown for a worker), then make sure it did."""
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
    try:
        process.wait(30)
    except subprocess.TimeoutExpired:
        if group:
            os.killpg(process.pid, signal.SIGKILL)  # its pool's children too
        else:
            process.kill()
        process.wait(10)


def _publish_endpoint(request: Request) -> JSONResponse:
    """Publish what the path names, as the request's user, with a business field."""
    podcast = request.query_params.get("podcast")
    if podcast:
        set_business_context(podcast_id=podcast)
    what = request.path_params["what"]
    token = request.query_params.get("token", "")
    ids: dict[str, str] = {}
    if what == "fail":
        ids["task"] = celery_app.fail.delay(token).id
    elif what == "fail_as_expected":
        ids["task"] = celery_app.fail_as_expected.delay(token).id
    elif what == "probe":
        ids["task"] = celery_app.probe.delay().id
    elif what == "eager":
        return JSONResponse(celery_app.probe.apply().get())
    elif what == "retry":
        ids["task"] = celery_app.retrying.apply_async(args=[[]]).id
    elif what == "canvas":
        ids["send_task"] = celery_app.app.send_task("tests.celery_app.collect").id
        ids["chain"] = chain(celery_app.collect.s(), celery_app.collect.s()).apply_async().id
        members = group(celery_app.collect.s(), celery_app.collect.s()).apply_async()
        ids["group"] = ",".join(member.id for member in members.results)
        body = celery_app.collect_all.s()
        ids["chord"] = (
            chord([celery_app.collect.s(), celery_app.collect.s()], body).apply_async().id
        )
    return JSONResponse(ids)


@pytest.fixture(scope="module")
def web(publisher: Any) -> Iterator[str]:
    """A Starlette app with the middleware under uvicorn; the user comes from ``X-User``."""

    def user_from_header(scope: Any) -> str | None:
        for name, value in scope["headers"]:
            if name == b"x-user":
                return str(value.decode())
        return None

    app = Starlette(routes=[Route("/publish/{what}", _publish_endpoint)])
    with serve(SentryContextMiddleware(app, user_extractor=user_from_header)) as url:
        yield url


def publish(
    web: str, what: str, *, user: str | None = None, trace: str | None = None, **query: str
) -> dict[str, Any]:
    """Have the web app publish ``what`` in a request (as ``user``, continuing the
    ``sentry-trace`` ``trace``); its answer and request ID."""
    headers = {"X-User": user} if user else {}
    if trace:
        headers["sentry-trace"] = trace
    response = httpx.get(f"{web}/publish/{what}", params=query, headers=headers, timeout=30)
    response.raise_for_status()
    return {**response.json(), "request_id": response.headers["X-Request-ID"]}


def result(task_id: str) -> Any:
    """The result of the task ``task_id``, waited for."""
    return celery_app.app.AsyncResult(task_id).get(timeout=RESULT_TIMEOUT)


def events_until_marker(ingest: SentryIngest) -> list[dict[str, Any]]:
    """Every event the worker's process sent before a marker task's message arrived.

    One process runs every task (``--concurrency=1``) and its transport sends
    in order: an event of an earlier task arrives before the marker, or never.
    """
    text = f"marker-{uuid.uuid4().hex}"
    celery_app.marker.delay(text).get(timeout=RESULT_TIMEOUT)
    ingest.wait_for(lambda found: any(e.get("message") == text for e in found.events), 60)
    return [event for event in ingest.events if event.get("message") != text]


def failure_events(ingest: SentryIngest, token: str) -> list[dict[str, Any]]:
    """The events of the failure of ``fail(token)``, once they all arrived."""
    return [
        event
        for event in events_until_marker(ingest)
        if any(value.get("value") == token for value in _exceptions(event))
    ]


def _exceptions(event: dict[str, Any]) -> list[dict[str, Any]]:
    return list(event.get("exception", {}).get("values", []))


def _tags(event: dict[str, Any]) -> dict[str, Any]:
    tags = event.get("tags", {})
    return dict(tags) if isinstance(tags, dict) else dict(tags or [])


def _crumbs(event: dict[str, Any]) -> list[str]:
    return [str(c.get("message")) for c in event.get("breadcrumbs", {}).get("values", [])]


def new_token() -> str:
    return f"token-{uuid.uuid4().hex[:12]}"


class TestFailures:
    def test_a_failing_task_reports_its_requests_id_user_and_business(
        self, worker: Worker, web: str, worker_ingest: SentryIngest
    ) -> None:
        """A task a request enqueued fails: the event has that request's ID, user and business."""
        token = new_token()
        sent = publish(web, "fail", user="user-42", token=token, podcast="pod-7")
        [event] = failure_events(worker_ingest, token)
        assert _tags(event)["request_id"] == sent["request_id"]
        assert event["user"]["id"] == "user-42"
        assert event["contexts"]["business"]["podcast_id"] == "pod-7"
        assert _tags(event)["podcast_id"] == "pod-7"

    def test_a_failure_is_one_event_with_or_without_the_sdks_celery_integration(
        self, worker: Worker, web: str, worker_ingest: SentryIngest
    ) -> None:
        """One event per failure, whichever of the SDK's integration and ours reports it."""
        token = new_token()
        publish(web, "fail", user="user-1", token=token)
        [event] = failure_events(worker_ingest, token)
        # The SDK's integration tags what it reported; without it, ours reported.
        assert ("celery_task_id" in _tags(event)) is worker.sdk_celery
        assert event["exception"]["values"][-1]["mechanism"]["type"] == "celery"

    @pytest.mark.parametrize("worker", ["prefork", "prefork-without-sdk-celery"], indirect=True)
    def test_an_exception_the_task_declares_as_expected_is_not_reported(
        self, worker: Worker, web: str, worker_ingest: SentryIngest
    ) -> None:
        """An exception in the task's ``throws`` reaches no one, as in the SDK's integration."""
        token = new_token()
        sent = publish(web, "fail_as_expected", token=token)
        outcome = celery_app.app.AsyncResult(sent["task"]).get(timeout=60, propagate=False)
        assert isinstance(outcome, celery_app.Expected)  # it ran, and failed
        assert failure_events(worker_ingest, token) == []

    def test_a_failing_task_continues_its_requests_trace(
        self, worker: Worker, web: str, worker_ingest: SentryIngest
    ) -> None:
        """The worker's event is in the trace the publishing request continued."""
        token, trace_id = new_token(), uuid.uuid4().hex
        publish(web, "fail", token=token, trace=f"{trace_id}-{uuid.uuid4().hex[:16]}")
        [event] = failure_events(worker_ingest, token)
        assert event["contexts"]["trace"]["trace_id"] == trace_id


class TestIsolation:
    def test_two_requests_tasks_on_one_process_carry_nothing_of_each_other(
        self, worker: Worker, web: str, worker_ingest: SentryIngest
    ) -> None:
        """Two tasks of two requests run back to back by one process: each event is its own."""
        first, second = new_token(), new_token()
        sent_a = publish(web, "fail", user="user-a", token=first, podcast="pod-a")
        sent_b = publish(web, "fail", user="user-b", token=second)
        [event_a] = failure_events(worker_ingest, first)
        [event_b] = failure_events(worker_ingest, second)
        tags_a, tags_b = _tags(event_a), _tags(event_b)
        assert tags_a["worker_pid"] == tags_b["worker_pid"]  # one process ran both
        assert (tags_a["request_id"], tags_b["request_id"]) == (
            sent_a["request_id"],
            sent_b["request_id"],
        )
        assert (event_a["user"]["id"], event_b["user"]["id"]) == ("user-a", "user-b")
        assert event_b["contexts"]["business"] == {"task_token": second}
        assert "podcast_id" not in tags_b
        assert f"seen_{first}" not in tags_b
        assert tags_b["task_token"] == second
        assert f"crumb {first}" in _crumbs(event_a)
        assert f"crumb {first}" not in _crumbs(event_b)

    def test_a_task_sees_its_requests_context_in_its_code_and_log_records(
        self, worker: Worker, web: str
    ) -> None:
        """In the task, get_request_id(), user, business and log records are the request's."""
        sent = publish(web, "probe", user="user-9", podcast="pod-9")
        seen = result(sent["task"])
        assert seen["request_id"] == sent["request_id"]
        assert seen["user"] == {"id": "user-9"}
        assert seen["business"] == {"podcast_id": "pod-9"}
        assert seen["log"] == f"{sent['request_id']} user-9 probing"

    def test_the_next_task_of_the_process_starts_with_nothing_of_the_last(
        self, worker: Worker, web: str
    ) -> None:
        """A task published outside any request, after a request's, sees none of it."""
        sent = publish(web, "probe", user="user-5", podcast="pod-5")
        first = result(sent["task"])
        after = celery_app.probe.delay().get(timeout=RESULT_TIMEOUT)
        assert after["pid"] == first["pid"]
        assert after["request_id"] != sent["request_id"]
        assert after["user"] is None
        assert after["business"] == {}


@pytest.mark.parametrize("worker", ["prefork"], indirect=True)
class TestPublishing:
    def test_a_task_published_outside_any_request_gets_an_id_of_its_own(
        self, worker: Worker
    ) -> None:
        """Each task published outside a request runs with a new, valid request ID."""
        first = celery_app.probe.delay().get(timeout=RESULT_TIMEOUT)
        second = celery_app.probe.delay().get(timeout=RESULT_TIMEOUT)
        assert HEX_ID.fullmatch(first["request_id"])
        assert HEX_ID.fullmatch(second["request_id"])
        assert first["request_id"] != second["request_id"]
        assert first["log"] == f"{first['request_id']} None probing"

    def test_a_malformed_carried_context_is_not_trusted(self, worker: Worker) -> None:
        """An invalid carried request ID is replaced, a malformed user id left out."""
        hostile = {
            "request_id": "evil\r\nX-Injected: 1",
            "user_id": ["not", "an", "id"],
            "business": {"podcast_id": "p-1"},  # well-formed: restored
        }
        sent = celery_app.app.send_task(
            "tests.celery_app.probe", headers={"asgi_sentry_ctx": hostile}
        )
        seen = sent.get(timeout=RESULT_TIMEOUT)
        assert seen["business"] == {"podcast_id": "p-1"}  # the worker read this header
        assert HEX_ID.fullmatch(seen["request_id"])
        assert seen["user"] is None

    def test_a_message_without_the_context_runs_as_a_task_of_its_own(self, worker: Worker) -> None:
        """A message whose context header is empty (another publisher) gets a new ID."""
        with business_context(podcast_id="publisher-side"):  # kept out: the app's header wins
            sent = celery_app.app.send_task(
                "tests.celery_app.probe", headers={"asgi_sentry_ctx": None}
            )
        seen = sent.get(timeout=RESULT_TIMEOUT)
        assert HEX_ID.fullmatch(seen["request_id"])
        assert (seen["user"], seen["business"]) == (None, {})

    def test_retries_keep_the_request_id(self, worker: Worker, web: str) -> None:
        """A task retried twice runs all three attempts with its request's ID."""
        sent = publish(web, "retry")
        assert result(sent["task"]) == [sent["request_id"]] * 3

    def test_send_task_and_canvas_carry_the_request_id(self, worker: Worker, web: str) -> None:
        """send_task, every link of a chain, a group's and a chord's tasks carry the ID."""
        sent = publish(web, "canvas")
        request_id = sent["request_id"]
        assert result(sent["send_task"]) == [request_id]
        assert result(sent["chain"]) == [request_id] * 2
        assert [result(member) for member in sent["group"].split(",")] == [[request_id]] * 2
        assert result(sent["chord"]) == [request_id] * 3


def test_a_task_run_eagerly_runs_in_its_callers_context(web: str) -> None:
    """A task applied eagerly in a request (apply(), task_always_eager) sees that request."""
    response = httpx.get(
        f"{web}/publish/eager", params={"podcast": "pod-3"}, headers={"X-User": "u3"}
    )
    seen = response.json()
    assert seen["request_id"] == response.headers["X-Request-ID"]
    assert seen["user"] == {"id": "u3"}
    assert seen["business"] == {"podcast_id": "pod-3"}


def test_installing_twice_connects_each_signal_once() -> None:
    """install() is idempotent: one receiver per signal, however often it is called."""
    from celery import signals

    from asgi_sentry_ctx.adapters.celery import install

    install()
    install()
    for sig in (signals.before_task_publish, signals.task_prerun, signals.task_postrun):
        assert sum(1 for key, _ in sig.receivers if key[0] == "asgi_sentry_ctx") == 1
