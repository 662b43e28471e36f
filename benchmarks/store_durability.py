"""The local event store side by side with sentry-sdk's own transport, in one run.

    .venv/bin/python benchmarks/store_durability.py [--events 10000] [--requests 500] [--json]

1. Write cost: what ``StoreTransport.capture_envelope`` (serialize + SQLite
   insert) adds on the calling thread, per envelope.
2. Delivery: N events while the loopback ingest is down, half of them, then up
   for the other half: how many each transport delivered, how many it lost.
3. Request latency: an ASGI app that reports one error per request, with the
   ingest healthy and with it hanging (it never answers): p50/p99 per transport.

Everything runs on 127.0.0.1 with the real SDK; numbers depend on the machine.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import sentry_sdk
from sentry_sdk.envelope import Envelope
from sentry_sdk.transport import Transport

from asgi_sentry_ctx import (
    EventStore,
    SentryContextMiddleware,
    StoreTransport,
    set_business_context,
    set_user,
    store_transport,
)
from asgi_sentry_ctx.testing import SentryIngest

FAST_RETRY: dict[str, Any] = {"retry_base": 0.2, "retry_max": 2.0, "poll_interval": 0.2}


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * fraction))]


def write_cost(workdir: Path, count: int = 3000) -> dict[str, float]:
    """µs per envelope on the calling thread: StoreTransport.capture_envelope, nothing sent."""
    envelopes: list[Envelope] = []

    class Collect(Transport):
        def capture_envelope(self, envelope: Envelope) -> None:
            envelopes.append(envelope)

    sentry_sdk.init(transport=Collect(), default_integrations=False)  # real events, kept
    for index in range(count):
        with sentry_sdk.new_scope() as scope:
            scope.set_tag("request_id", f"{index:032x}")
            scope.set_context("business", {"podcast_id": "123", "action": "upload"})
            try:
                raise RuntimeError(f"upload {index} failed")
            except RuntimeError:
                sentry_sdk.capture_exception()
    sentry_sdk.init()
    with SentryIngest() as ingest:
        ingest.down()  # the forwarder only backs off: what is measured is the write
        transport = StoreTransport(
            {**_client_options(ingest.dsn)}, store=workdir / "write-cost.db", **FAST_RETRY
        )
        timings = []
        for envelope in envelopes:
            started = time.perf_counter()
            transport.capture_envelope(envelope)
            timings.append((time.perf_counter() - started) * 1e6)
        transport.kill()
    return {
        "mean_us": statistics.fmean(timings),
        "p50_us": percentile(timings, 0.50),
        "p99_us": percentile(timings, 0.99),
        "bytes": float(len(envelopes[0].serialize())),
    }


def _client_options(dsn: str) -> dict[str, Any]:
    # The options the SDK would hand a transport class.
    client = sentry_sdk.Client(dsn=dsn, default_integrations=False)
    options = dict(client.options)
    client.close(timeout=0)
    return options


def delivery(workdir: Path, events: int) -> dict[str, dict[str, Any]]:
    """Half the events while the ingest is down, half once it is up again."""
    results: dict[str, dict[str, Any]] = {}
    for name in ("stock HttpTransport", "StoreTransport"):
        with SentryIngest() as ingest:
            options: dict[str, Any] = {"dsn": ingest.dsn, "default_integrations": False}
            if name == "StoreTransport":
                options["transport"] = store_transport(workdir / "delivery.db", **FAST_RETRY)
            ingest.down()
            sentry_sdk.init(**options)
            started = time.monotonic()
            for index in range(events // 2):
                sentry_sdk.capture_message(f"down-{index}")
            down_for = time.monotonic() - started
            sentry_sdk.flush(2)
            ingest.up()
            for index in range(events - events // 2):
                sentry_sdk.capture_message(f"up-{index}")
            if name == "StoreTransport":
                ingest.wait_for_events(events, timeout=600)
            sentry_sdk.flush(30)
            sentry_sdk.get_client().close(timeout=5)
            sentry_sdk.init()
            delivered = len({event["event_id"] for event in ingest.events})
            results[name] = {
                "delivered": delivered,
                "lost": events - delivered,
                "seconds": round(time.monotonic() - started, 1),
                "down_for_s": round(down_for, 1),
            }
    return results


def latency(workdir: Path, requests: int) -> dict[str, dict[str, float]]:
    """Per-request latency (ms) of an app reporting one error per request."""

    async def app(scope: Any, receive: Any, send: Any) -> None:
        set_user("user-123")
        set_business_context(podcast_id="123", action="upload")
        raise RuntimeError("upload failed")

    async def drive() -> list[float]:
        transport = httpx.ASGITransport(
            app=SentryContextMiddleware(app), raise_app_exceptions=False
        )
        timings = []
        async with httpx.AsyncClient(transport=transport, base_url="http://app") as client:
            for index in range(requests):
                started = time.perf_counter()
                await client.post(f"/upload/{index}")
                timings.append((time.perf_counter() - started) * 1e3)
        return timings

    results: dict[str, dict[str, float]] = {}
    for name in ("stock HttpTransport", "StoreTransport"):
        for state in ("healthy", "hanging"):
            with SentryIngest() as ingest:
                if state == "hanging":
                    ingest.delay = 3600
                options: dict[str, Any] = {"dsn": ingest.dsn, "default_integrations": False}
                if name == "StoreTransport":
                    path = workdir / f"latency-{state}.db"
                    options["transport"] = store_transport(path, **FAST_RETRY)
                sentry_sdk.init(**options)
                timings = asyncio.run(drive())
                sentry_sdk.get_client().close(timeout=0.5 if state == "hanging" else 10)
                sentry_sdk.init()
                results[f"{name}, ingest {state}"] = {
                    "p50_ms": percentile(timings, 0.50),
                    "p99_ms": percentile(timings, 0.99),
                    "delivered": float(len(ingest.events)),
                }
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--events", type=int, default=10_000)
    parser.add_argument("--requests", type=int, default=500)
    parser.add_argument("--json", action="store_true", help="print JSON instead of tables")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        report: dict[str, Any] = {
            "write_cost": write_cost(workdir),
            "delivery": delivery(workdir, args.events),
            "latency": latency(workdir, args.requests),
        }
        report["delivery_store_stats"] = EventStore(workdir / "delivery.db").stats()
    if args.json:
        print(json.dumps(report, indent=2))
        return
    cost = report["write_cost"]
    print(f"\nWrite cost per envelope ({cost['bytes']:.0f} bytes, an exception event):")
    print(
        f"  mean {cost['mean_us']:.0f} µs   p50 {cost['p50_us']:.0f} µs"
        f"   p99 {cost['p99_us']:.0f} µs"
    )
    print(f"\n{args.events} events, the first half while the ingest is down:")
    print(f"  {'transport':<22}{'delivered':>10}{'lost':>8}{'seconds':>9}")
    for name, row in report["delivery"].items():
        print(f"  {name:<22}{row['delivered']:>10}{row['lost']:>8}{row['seconds']:>9}")
    print(f"\n{args.requests} requests, each reporting one error (latency in ms):")
    print(f"  {'transport, ingest':<34}{'p50':>8}{'p99':>8}{'delivered':>11}")
    for name, row in report["latency"].items():
        print(f"  {name:<34}{row['p50_ms']:>8.2f}{row['p99_ms']:>8.2f}{row['delivered']:>11.0f}")


if __name__ == "__main__":
    main()
