"""StoreTransport against the loopback ingest as a healthy, down, failing or refusing Sentry."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
import sentry_sdk

from asgi_sentry_ctx import SentryContextMiddleware
from asgi_sentry_ctx.store.event_store import EventStore
from asgi_sentry_ctx.store.transport import store_transport
from asgi_sentry_ctx.testing import SentryIngest

FAST = {"retry_base": 0.05, "retry_max": 0.5, "poll_interval": 0.1}
WORKER = Path(__file__).with_name("store_worker.py")
ROOT = Path(__file__).resolve().parents[2]

StoreInit = Callable[..., None]


@pytest.fixture
def store_path(tmp_path: Path) -> Path:
    return tmp_path / "events.db"


@pytest.fixture
def store_init(ingest: SentryIngest, store_path: Path) -> Iterator[StoreInit]:
    """Initialise the SDK with a StoreTransport forwarding to ``ingest``, retrying fast."""

    def init(store: EventStore | Path = store_path, **options: Any) -> None:
        transport_settings = {**FAST, **options.pop("transport_settings", {})}
        sentry_sdk.init(
            dsn=ingest.dsn,
            auto_enabling_integrations=False,
            transport=store_transport(store, **transport_settings),
            **options,
        )

    yield init
    sentry_sdk.get_client().close(timeout=1)
    sentry_sdk.init()


def stats(path: Path) -> dict[str, Any]:
    store = EventStore(path)
    try:
        return store.stats()
    finally:
        store.close()


def messages(ingest: SentryIngest) -> list[str]:
    return [event.get("message") or "" for event in ingest.events]


def test_an_envelope_is_on_disk_before_capture_returns(
    ingest: SentryIngest, store_init: StoreInit, store_path: Path
) -> None:
    ingest.down()
    store_init()
    sentry_sdk.capture_message("on disk")
    assert stats(store_path)["pending"] == 1


def test_acknowledged_envelopes_are_kept_as_sent(
    ingest: SentryIngest, store_init: StoreInit, store_path: Path
) -> None:
    store_init()
    sentry_sdk.capture_message("hello")
    ingest.wait_for_events(1)
    sentry_sdk.flush(5)
    assert (stats(store_path)["pending"], stats(store_path)["sent"]) == (0, 1)


def test_acknowledged_envelopes_are_deleted_without_keep_sent(
    ingest: SentryIngest, store_init: StoreInit, store_path: Path
) -> None:
    store_init(transport_settings={"keep_sent": False})
    sentry_sdk.capture_message("hello")
    ingest.wait_for_events(1)
    sentry_sdk.flush(5)
    assert stats(store_path)["envelopes"] == 0


def test_events_captured_while_sentry_is_down_are_delivered_when_it_is_up(
    ingest: SentryIngest, store_init: StoreInit
) -> None:
    ingest.down()
    store_init()
    for index in range(20):
        sentry_sdk.capture_message(f"m{index}")
    ingest.up()
    ingest.wait_for_events(20)
    assert sorted(messages(ingest)) == sorted(f"m{index}" for index in range(20))


def test_sent_at_is_the_time_of_sending_not_of_storing(
    ingest: SentryIngest, store_init: StoreInit
) -> None:
    ingest.down()
    store_init()
    sentry_sdk.capture_message("late")
    up_at = time.time()
    ingest.up()
    ingest.wait_for_events(1)
    sent_at = datetime.fromisoformat(ingest.envelopes[0].header["sent_at"].replace("Z", "+00:00"))
    assert sent_at.timestamp() >= up_at


def test_server_errors_are_retried_until_accepted(
    ingest: SentryIngest, store_init: StoreInit, store_path: Path
) -> None:
    ingest.status = 500
    store_init()
    sentry_sdk.capture_message("retried")
    ingest.wait_for_requests(3)
    ingest.status = 200
    ingest.wait_for_events(1)
    sentry_sdk.flush(5)
    assert stats(store_path)["pending"] == 0
    assert messages(ingest) == ["retried"]


def test_429_holds_every_envelope_back_until_retry_after_then_sends_them(
    ingest: SentryIngest, store_init: StoreInit, store_path: Path
) -> None:
    ingest.status, ingest.headers = 429, {"Retry-After": "2"}
    store_init()
    sentry_sdk.capture_message("first")
    ingest.wait_for_requests(1)
    ingest.status, ingest.headers = 200, {}
    sentry_sdk.capture_message("second")
    sentry_sdk.flush(1)  # returns once idle: nothing may go before the limit ends
    held = stats(store_path)
    assert ingest.requests == 1
    assert held["pending"] == 2
    until = held["rate_limited_until"]["all"]
    ingest.wait_for_events(2)
    assert time.time() >= until
    assert sorted(messages(ingest)) == ["first", "second"]


def test_rate_limit_header_holds_back_only_its_category(
    ingest: SentryIngest, store_init: StoreInit, store_path: Path
) -> None:
    ingest.headers = {"X-Sentry-Rate-Limits": "60:transaction:organization"}
    store_init(traces_sample_rate=1.0)
    sentry_sdk.capture_message("first")
    ingest.wait_for_events(1)
    with sentry_sdk.start_transaction(name="held back"):
        pass
    sentry_sdk.capture_message("second")
    ingest.wait_for_events(2)
    sentry_sdk.flush(5)  # returns once idle: the transaction is due in 60 s only
    held = stats(store_path)
    assert held["pending"] == 1
    assert "transaction" in held["rate_limited_until"]
    assert not [p for env in ingest.envelopes for p in env.payloads("transaction")]


@pytest.mark.parametrize("status", [400, 413])
def test_refused_envelopes_go_to_dead_letters_with_the_reason(
    ingest: SentryIngest, store_init: StoreInit, store_path: Path, status: int
) -> None:
    ingest.status, ingest.body = status, b'{"detail":"envelope exceeds size limit"}'
    store_init()
    refused = sentry_sdk.capture_message("refused")
    ingest.wait_for_requests(1)
    ingest.status, ingest.body = 200, b"{}"
    sentry_sdk.capture_message("marker")
    ingest.wait_for_events(1)
    sentry_sdk.flush(5)
    assert messages(ingest) == ["marker"]
    assert ingest.requests >= 2
    store = EventStore(store_path)
    [dead] = [e for e in store.envelopes() if e.state == "dead"]
    store.close()
    assert dead.event_id == refused
    assert dead.error == f'HTTP {status}: {{"detail":"envelope exceeds size limit"}}'


def test_the_cap_evicts_the_oldest_and_reports_them_lost(
    ingest: SentryIngest, store_init: StoreInit, store_path: Path
) -> None:
    ingest.down()
    store_init(EventStore(store_path, max_envelopes=5))
    for index in range(8):
        sentry_sdk.capture_message(f"m{index}")
    full = stats(store_path)
    assert (full["pending"], full["lost"]) == (5, 3)
    ingest.up()
    ingest.wait_for_events(5)
    sentry_sdk.flush(5)
    assert sorted(messages(ingest)) == [f"m{index}" for index in range(3, 8)]
    reports = [p for env in ingest.envelopes for p in env.payloads("client_report")]
    discarded = [d for report in reports for d in report["discarded_events"]]
    assert {"reason": "cache_overflow", "category": "error", "quantity": 3} in discarded


def test_shutdown_returns_within_its_timeout_and_leaves_the_rest_on_disk(
    ingest: SentryIngest, store_path: Path
) -> None:
    ingest.delay = 60  # hangs
    sentry_sdk.init(dsn=ingest.dsn, transport=store_transport(store_path, **FAST))
    for index in range(5):
        sentry_sdk.capture_message(f"m{index}")
    started = time.monotonic()
    sentry_sdk.get_client().close(timeout=0.5)
    closed_in = time.monotonic() - started
    sentry_sdk.init()
    assert closed_in < 10  # sanity only: it must not wait for the hanging ingest
    assert stats(store_path)["pending"] == 5
    with SentryIngest() as healthy:
        sentry_sdk.init(dsn=healthy.dsn, transport=store_transport(store_path, **FAST))
        try:
            healthy.wait_for_events(5)
            assert sorted(messages(healthy)) == [f"m{index}" for index in range(5)]
        finally:
            sentry_sdk.get_client().close(timeout=1)
            sentry_sdk.init()


def test_requests_complete_while_the_ingest_hangs(
    ingest: SentryIngest, store_init: StoreInit, store_path: Path
) -> None:
    ingest.delay = 60
    store_init()

    async def app(scope: Any, receive: Any, send: Any) -> None:
        raise RuntimeError("boom")

    async def main() -> list[int]:
        transport = httpx.ASGITransport(
            app=SentryContextMiddleware(app), raise_app_exceptions=False
        )
        async with httpx.AsyncClient(transport=transport, base_url="http://app") as client:
            return [(await client.get(f"/{index}")).status_code for index in range(30)]

    assert asyncio.run(main()) == [500] * 30
    assert stats(store_path)["pending"] == 30


def _spawn(
    store_path: Path, dsn: str, count: int, prefix: str, *flags: str
) -> subprocess.Popen[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.Popen(
        [sys.executable, str(WORKER), str(store_path), dsn, str(count), prefix, *flags],
        stdout=subprocess.PIPE,
        text=True,
        env=env,
    )


def test_a_process_killed_mid_burst_loses_nothing_after_restart(
    ingest: SentryIngest, store_path: Path
) -> None:
    ingest.delay = 0.005  # slow enough that sends are in flight when the kill lands
    worker = _spawn(store_path, ingest.dsn, 100_000, "burst")
    assert worker.stdout is not None
    accepted = [worker.stdout.readline().strip() for _ in range(300)]
    ingest.wait_for_requests(1)  # forwarding had started, so the kill lands mid-send
    worker.send_signal(signal.SIGKILL)
    worker.wait()
    accepted += [line.strip() for line in worker.stdout if line.endswith("\n")]
    worker.stdout.close()
    sentry_sdk.init(dsn=ingest.dsn, transport=store_transport(store_path, **FAST))
    try:
        ingest.wait_for(lambda i: set(accepted) <= {e["event_id"] for e in i.events}, timeout=120)
    finally:
        sentry_sdk.get_client().close(timeout=1)
        sentry_sdk.init()
    assert len(accepted) >= 300


def test_several_processes_share_one_store_and_each_event_arrives_once(
    ingest: SentryIngest, store_path: Path
) -> None:
    EventStore(store_path).close()  # created once, as a deployment would
    workers = [_spawn(store_path, ingest.dsn, 150, f"w{n}", "--flush") for n in range(3)]
    accepted: list[str] = []
    for worker in workers:
        out, _ = worker.communicate(timeout=120)
        assert worker.returncode == 0
        accepted += out.split()
    ingest.wait_for_events(450, timeout=60)
    received = [event["event_id"] for event in ingest.events]
    assert sorted(received) == sorted(accepted)
    assert stats(store_path)["pending"] == 0


def test_stock_transport_loses_what_the_store_delivers(
    tmp_path: Path, record_property: Callable[[str, object], None]
) -> None:
    """Side by side: events while Sentry is down, then more once it is up."""
    count = 400
    results = {}
    for name in ("stock HttpTransport", "StoreTransport"):
        with SentryIngest() as ingest:
            options: dict[str, Any] = {"dsn": ingest.dsn, "default_integrations": False}
            if name == "StoreTransport":
                options["transport"] = store_transport(tmp_path / "events.db", **FAST)
            ingest.down()
            sentry_sdk.init(**options)
            for index in range(count // 2):
                sentry_sdk.capture_message(f"down-{index}")
            sentry_sdk.flush(3)  # the stock transport tries (and drops) while down
            ingest.up()
            for index in range(count // 2):
                sentry_sdk.capture_message(f"up-{index}")
            sentry_sdk.flush(30)
            sentry_sdk.get_client().close(timeout=5)
            sentry_sdk.init()
            results[name] = len(ingest.events)
    record_property("delivered", json.dumps(results))
    print(f"\n{count} events, half while the ingest was down: delivered {results}")
    assert results["StoreTransport"] == count
    assert results["stock HttpTransport"] < count
