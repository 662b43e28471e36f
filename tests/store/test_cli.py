"""``python -m asgi_sentry_ctx events``: the local store read as a person wants to read it."""

from __future__ import annotations

import asyncio
import io
import json
import os
import queue
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import sentry_sdk

from asgi_sentry_ctx import (
    SentryContextMiddleware,
    add_breadcrumb,
    init_sentry,
    set_business_context,
    set_user,
)
from asgi_sentry_ctx.store.cli import main
from asgi_sentry_ctx.store.event_store import EventStore

ROOT = Path(__file__).resolve().parents[2]


class UploadFailed(Exception):
    pass


async def upload_app(scope: Any, receive: Any, send: Any) -> None:
    set_user("user-123")
    set_business_context(podcast_id="123", action="upload")
    add_breadcrumb("validated upload", category="upload", data={"filename": "ep42.mp3"})
    raise UploadFailed("GCS upload failed: 503 from storage backend")


def fail_one_upload(request_id: str = "req-upload-1") -> str:
    """Drive one failing upload through the middleware; return its request ID."""

    async def run() -> str:
        transport = httpx.ASGITransport(
            app=SentryContextMiddleware(upload_app), raise_app_exceptions=False
        )
        async with httpx.AsyncClient(transport=transport, base_url="http://app") as client:
            await client.post("/api/podcasts/123/upload", headers={"X-Request-ID": request_id})
        return request_id

    return asyncio.run(run())


@pytest.fixture
def store_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A store holding one failed upload, with Sentry on locally (no DSN)."""
    monkeypatch.delenv("SENTRY_DSN", raising=False)
    monkeypatch.delenv("ASGI_SENTRY_CTX_STORE", raising=False)
    path = tmp_path / "events.db"
    assert init_sentry(store=path)
    yield path
    sentry_sdk.get_client().close()
    sentry_sdk.init()


def run(*argv: str) -> tuple[int, str]:
    out = io.StringIO()
    status = main(list(argv), out=out)
    return status, out.getvalue()


def only_event_id(path: Path) -> str:
    store = EventStore(path)
    try:
        [stored] = store.envelopes()
    finally:
        store.close()
    assert stored.event_id is not None
    return stored.event_id


def test_list_shows_one_line_per_event_with_its_request_id_and_user(store_path: Path) -> None:
    request_id = fail_one_upload()
    status, out = run("events", "list", "--store", str(store_path))
    assert status == 0
    [line] = out.splitlines()
    assert f"req={request_id}" in line
    assert "user=user-123" in line
    assert "UploadFailed: GCS upload failed" in line
    assert "[local]" in line


def test_show_prints_the_event_as_a_person_reads_it(store_path: Path) -> None:
    request_id = fail_one_upload()
    event_id = only_event_id(store_path)
    status, out = run("events", "show", event_id[:8], "--store", str(store_path))
    assert status == 0
    assert f"request_id  {request_id}" in out
    assert "user        id=user-123" in out
    assert "business    podcast_id=123 action=upload" in out
    assert "request     POST http://app/api/podcasts/123/upload" in out
    assert "validated upload  filename=ep42.mp3" in out
    assert "exception   UploadFailed: GCS upload failed: 503 from storage backend" in out
    assert 'raise UploadFailed("GCS upload failed: 503 from storage backend")' in out


def test_show_of_an_unknown_event_exits_1(store_path: Path) -> None:
    fail_one_upload()
    assert run("events", "show", "ffffffff", "--store", str(store_path))[0] == 1


def test_json_list_gives_the_triage_fields(store_path: Path) -> None:
    request_id = fail_one_upload()
    status, out = run("events", "list", "--json", "--store", str(store_path))
    [event] = json.loads(out)
    assert status == 0
    assert event["request_id"] == request_id
    assert event["user"] == {"id": "user-123"}
    assert event["business"] == {"podcast_id": "123", "action": "upload"}
    assert event["exceptions"][-1]["type"] == "UploadFailed"
    assert event["state"] == "local"


def test_stats_counts_pending_sent_local_dead_lettered_and_lost(tmp_path: Path) -> None:
    store = EventStore(tmp_path / "events.db", max_envelopes=4)
    for forward in (False, True, True, True, True, True):  # 6 > 4: the 2 oldest are lost
        store.put(b"{}\n", event_id=None, kinds=["event"], categories=["error"], forward=forward)
    first, second, *_ = store.claim("test", limit=2, lease=60)
    store.mark_sent(first.id, keep=True)
    store.dead_letter(second.id, status=413, reason="too large")
    store.close()
    status, out = run("events", "stats", "--json", "--store", str(tmp_path / "events.db"))
    stats = json.loads(out)
    assert status == 0
    counts = [stats[k] for k in ("pending", "sent", "local", "dead_lettered", "lost")]
    assert counts == [2, 1, 0, 1, 2]


def test_the_store_defaults_to_the_environment_variable(
    store_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fail_one_upload()
    monkeypatch.setenv("ASGI_SENTRY_CTX_STORE", str(store_path))
    status, out = run("events", "list")
    assert status == 0
    assert "UploadFailed" in out


def test_a_missing_store_exits_2_and_creates_nothing(tmp_path: Path) -> None:
    assert run("events", "list", "--store", str(tmp_path / "nope.db"))[0] == 2
    assert not (tmp_path / "nope.db").exists()


def test_python_dash_m_tail_prints_each_new_event(store_path: Path) -> None:
    fail_one_upload()
    tail = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "asgi_sentry_ctx",
            "events",
            "tail",
            "-n",
            "1",
            "--interval",
            "0.05",
        ],
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT), "ASGI_SENTRY_CTX_STORE": str(store_path)},
    )
    lines: queue.Queue[str] = queue.Queue()
    assert tail.stdout is not None
    stdout = tail.stdout

    def read() -> None:
        for line in stdout:
            lines.put(line)

    threading.Thread(target=read, daemon=True).start()

    def next_exception_line() -> str:
        while True:
            line = lines.get(timeout=20)
            if line.startswith("  exception"):
                return line

    try:
        assert "UploadFailed" in next_exception_line()  # the event already there
        try:
            raise KeyError("new one")
        except KeyError:
            sentry_sdk.capture_exception()
        assert "KeyError: 'new one'" in next_exception_line()
    finally:
        tail.kill()
        tail.wait()
