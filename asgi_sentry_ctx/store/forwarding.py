"""Forwarding: a background thread that sends stored envelopes to Sentry.

An envelope leaves the store only when Sentry acknowledges it (2xx). What
Sentry's answer means here:

- network error, 5xx, 408: retried, with exponential backoff and jitter (per
  envelope, and for the whole forwarder while Sentry keeps failing);
- 429 and ``X-Sentry-Rate-Limits``: the categories named are held back until
  the time Sentry gave (every process using the file sees the limit), then sent;
- any other 4xx (400 malformed, 413 too large, 401/403...): moved to the
  dead-letter table with Sentry's reason; retrying would never help.

HTTP itself is the SDK's own ``sentry_sdk.transport.HttpTransport``
(its connection pool, proxies, certificates and auth header), and rate-limit
headers are parsed by the SDK's own parser.
"""

from __future__ import annotations

import gzip
import json
import os
import random
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime

import urllib3
from sentry_sdk.consts import EndpointType
from sentry_sdk.transport import HttpTransport, _parse_rate_limits
from sentry_sdk.utils import format_timestamp

from asgi_sentry_ctx._log import logger
from asgi_sentry_ctx.store.delivery import register_live_owner, unregister_live_owner
from asgi_sentry_ctx.store.event_store import EventStore
from asgi_sentry_ctx.store.records import ClaimedEnvelope

__all__ = ["Answer", "Forwarder", "HttpSender"]

_RETRY = urllib3.util.Retry()  # only for its Retry-After parser
_DEFAULT_RETRY_AFTER = 60.0  # what the SDK assumes for a 429 without Retry-After


@dataclass(frozen=True)
class Answer:
    """Sentry's answer to one POST: status, headers (lower-cased names) and body start."""

    status: int
    headers: Mapping[str, str]
    body: bytes = b""


class HttpSender(HttpTransport):
    """The SDK's HTTP transport, used only to POST an already serialized envelope."""

    def post(self, body: bytes) -> Answer:
        headers = {
            "Content-Type": "application/x-sentry-envelope",
            "Content-Encoding": "gzip",
        }
        # User-Agent and X-Sentry-Auth, as the SDK sends them.
        update_headers = getattr(self, "_update_headers", None)
        if update_headers is not None:
            update_headers(headers)
        else:  # older sentry-sdk (2.20) sets the same two inline in its _send_request
            headers["User-Agent"] = str(self._auth.client)
            headers["X-Sentry-Auth"] = str(self._auth.to_header())
        response = self._request("POST", EndpointType.ENVELOPE, gzip.compress(body, 6), headers)
        try:
            return Answer(
                response.status,
                {name.lower(): value for name, value in response.headers.items()},
                bytes(response.data or b"")[:500],
            )
        finally:
            response.close()


Post = Callable[[bytes], Answer]


class Forwarder:
    """Send the store's pending envelopes to Sentry from one daemon thread per process."""

    def __init__(
        self,
        store: EventStore,
        post: Post,
        *,
        keep_sent: bool = True,
        retry_base: float = 1.0,
        retry_max: float = 60.0,
        lease: float = 120.0,
        poll_interval: float = 1.0,
        on_dead_letter: Callable[[tuple[str, ...]], None] | None = None,
        on_round: Callable[[bool], None] | None = None,
    ) -> None:
        self.store = store
        self.post = post
        self.keep_sent = keep_sent
        self.retry_base = retry_base
        self.retry_max = retry_max
        self.lease = lease
        self.poll_interval = poll_interval
        self.on_dead_letter = on_dead_letter
        self.on_round = on_round
        self.owner = EventStore.new_owner()
        store.background_checkpoints = True  # this thread checkpoints, request threads never
        self._next_checkpoint = 0.0
        self._cond = threading.Condition()
        self._thread: threading.Thread | None = None
        self._pid = 0
        self._woken = False
        self._stopping = False
        self._force_report = False
        self._round = 0
        self._idle_round = 0
        self._idle_due: float | None = None
        self._failures = 0  # consecutive: drives the forwarder-wide backoff
        self._backoff_until = 0.0
        self._next_takeover = 0.0

    # -- control ----------------------------------------------------------

    def ensure_started(self) -> None:
        """Start the thread in this process (again after a fork) unless it runs."""
        if self._pid == os.getpid() and self._thread is not None and self._thread.is_alive():
            return
        with self._cond:
            if self._pid == os.getpid() and self._thread is not None and self._thread.is_alive():
                return
            if self._pid != os.getpid():
                self.owner = EventStore.new_owner()  # a forked child is its own owner
            self._stopping = False
            self._pid = os.getpid()
            register_live_owner(self.owner)
            self._thread = threading.Thread(
                target=self._run, name="asgi-sentry-ctx-forwarder", daemon=True
            )
            self._thread.start()

    def wake(self) -> None:
        """Something was stored: look at the store now rather than at the next poll."""
        with self._cond:
            self._woken = True
            self._cond.notify_all()

    def flush(self, timeout: float, callback: Callable[[int, float], object] | None = None) -> bool:
        """Wait until nothing is left to send now, or ``timeout`` seconds; return whether done.

        Envelopes still waiting (Sentry down, rate-limited past the timeout)
        stay on disk and are sent later, by this process or the next.
        """
        self.ensure_started()
        deadline = time.monotonic() + timeout
        if callback is not None:
            pending = self.store.stats()["pending"]
            if pending:
                callback(pending, timeout)
        with self._cond:
            self._woken = True
            self._force_report = True
            asked = self._round
            self._cond.notify_all()
            while True:
                remaining = deadline - time.monotonic()
                if self._idle_round > asked:
                    due = self._idle_due
                    if due is None or due - time.time() >= remaining:
                        return due is None
                if remaining <= 0:
                    return False
                self._cond.wait(remaining)

    def stop(self, timeout: float = 1.0) -> None:
        """Stop after the envelope being sent now; the rest stays on disk."""
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
            thread = self._thread
        # What it still holds (a send that hangs) may be taken over by the next forwarder.
        unregister_live_owner(self.owner)
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout)

    # -- the thread -------------------------------------------------------

    def _take_over_dead_owners(self) -> None:
        self._next_takeover = time.time() + self.lease / 4
        try:
            freed = self.store.release_dead_owners()
        except Exception:
            logger.exception("asgi_sentry_ctx: could not check the store for dead forwarders")
            return
        if freed:
            logger.info("asgi_sentry_ctx: took over %d envelopes of a dead process", freed)

    def _run(self) -> None:
        self._take_over_dead_owners()
        while True:
            with self._cond:
                if self._stopping:
                    return
                self._woken = False
                self._round += 1
                this_round = self._round
                force_report, self._force_report = self._force_report, False
            try:
                due = self._one_round(force_report)
                if time.time() >= self._next_checkpoint:
                    self._next_checkpoint = time.time() + 5.0  # each one fsyncs
                    self.store.checkpoint()
            except Exception:
                logger.exception("asgi_sentry_ctx: forwarding failed; retrying soon")
                due = time.time() + self.poll_interval
            with self._cond:
                self._idle_round, self._idle_due = this_round, due
                self._cond.notify_all()
                if due is not None and due <= time.time():
                    continue  # more is due already: go on
                wait = self.poll_interval if due is None else due - time.time()
                if not self._woken and not self._stopping:
                    # Other processes write to the file too: look again at least every poll.
                    self._cond.wait(max(0.01, min(wait, self.poll_interval)))

    def _one_round(self, force_report: bool) -> float | None:
        """Send what is due; return when the next envelope is due (``None``: nothing pending)."""
        if time.time() >= self._next_takeover:
            self._take_over_dead_owners()  # a worker process killed while we run
        if time.time() >= self._backoff_until:
            # One at a time: a lease covers only the envelope being sent.
            claimed = self.store.claim(self.owner, limit=1, lease=self.lease)
            if claimed:
                with self._cond:
                    self._force_report |= force_report  # kept for the round with nothing to send
                self._send_claimed(claimed[0])
                return time.time() if time.time() >= self._backoff_until else self._backoff_until
        if self.on_round is not None:
            # Between bursts, so that a client report never evicts an envelope waiting to go.
            self.on_round(force_report)
        due = self.store.next_due(self.owner)
        if due is None:
            return None
        # Claimed nothing although something is due: another process holds it; look
        # again a little later rather than spin.
        return max(due, self._backoff_until, time.time() + 0.05)

    def _send_claimed(self, envelope: ClaimedEnvelope) -> None:
        if not self._stopping and self._send(envelope):
            with self._cond:
                self._cond.notify_all()

    def _send(self, envelope: ClaimedEnvelope) -> bool:
        """Send one envelope; return whether to go on with the next one now."""
        try:
            answer = self.post(_with_sent_at(envelope.body))
        except Exception as exc:
            self._failed(envelope, f"network error: {type(exc).__name__}: {exc}")
            return False
        self._apply_rate_limits(answer)
        status = answer.status
        if 200 <= status < 300:
            self.store.mark_sent(envelope.id, keep=self.keep_sent)
            self._failures = 0
            return True
        if status == 429:
            # Held back until the time Sentry gave: the limit is in the store now.
            self.store.release([envelope.id])
            return False
        if 400 <= status < 500 and status != 408:
            reason = answer.body.decode("utf-8", "replace").strip() or "refused"
            self.store.dead_letter(envelope.id, status=status, reason=reason)
            logger.error(
                "asgi_sentry_ctx: Sentry refused an envelope (HTTP %s: %s); it is in the "
                "dead-letter table",
                status,
                reason[:200],
            )
            if self.on_dead_letter is not None:
                self.on_dead_letter(envelope.categories)
            return True
        self._failed(envelope, f"HTTP {status}")
        return False

    def _failed(self, envelope: ClaimedEnvelope, error: str) -> None:
        now = time.time()
        self.store.retry_later(envelope.id, at=now + self._delay(envelope.attempts), error=error)
        self._backoff_until = now + self._delay(self._failures)
        self._failures += 1
        if self._failures == 1:
            logger.warning("asgi_sentry_ctx: sending to Sentry failed (%s); will retry", error)

    def _delay(self, attempts: int) -> float:
        # Exponential, capped, with jitter so that many processes do not retry in step.
        return min(self.retry_max, self.retry_base * 2.0 ** min(attempts, 32)) * random.uniform(
            0.5, 1.0
        )

    def _apply_rate_limits(self, answer: Answer) -> None:
        header = answer.headers.get("x-sentry-rate-limits")
        if header:
            self.store.limit_categories(
                (category, until.timestamp()) for category, until in _parse_rate_limits(header)
            )
        elif answer.status == 429:
            retry_after = answer.headers.get("retry-after")
            try:
                seconds = _RETRY.parse_retry_after(retry_after) if retry_after else None
            except urllib3.exceptions.InvalidHeader:
                seconds = None
            until = time.time() + (_DEFAULT_RETRY_AFTER if seconds is None else seconds)
            self.store.limit_categories([(None, until)])


def _with_sent_at(body: bytes) -> bytes:
    """``body`` with its ``sent_at`` header set to now.

    Sentry corrects event timestamps by the difference between ``sent_at`` and
    when it received the envelope (clock drift): an envelope sent an hour after
    it was stored must not say it was sent an hour ago.
    """
    header_line, newline, rest = body.partition(b"\n")
    try:
        header = json.loads(header_line)
    except ValueError:
        return body
    if not isinstance(header, dict):
        return body
    header["sent_at"] = format_timestamp(datetime.now(UTC))
    return json.dumps(header, separators=(",", ":")).encode() + newline + rest
