"""What must hold: every event is exactly its own request's; nothing of a batch is left behind."""

from __future__ import annotations

import gc
import json
import re
import sys
from collections import Counter
from collections.abc import Iterable, Sequence
from typing import Any

import sentry_sdk

from asgi_sentry_ctx import get_request_id
from asgi_sentry_ctx.context.business import current_business_context
from asgi_sentry_ctx.context.state import RequestState
from tests.leakcheck.drivers import Outcome
from tests.leakcheck.interpreter import CRUMB_CATEGORY, RequestRun
from tests.leakcheck.model import ExpectedEvent, RequestModel, TargetTraits
from tests.leakcheck.plan import Names

_CAPTURE = re.compile(r"m\d+x\d+z:(?:msg|log|exc):\d+")
_CRUMB = re.compile(r"m\d+x\d+z:crumb:(\d+)")
_FRESH_ID = re.compile(r"[0-9a-f]{32}")
_TAG_KEY = re.compile(r"[A-Za-z0-9_.:\-]{1,32}")


def capture_text(event: dict[str, Any]) -> str | None:
    """The text of the step that captured ``event`` (message, log line or exception)."""
    logentry = event.get("logentry") or {}
    texts = [event.get("message"), logentry.get("message"), logentry.get("formatted")]
    texts += [v.get("value") for v in (event.get("exception") or {}).get("values") or ()]
    for text in texts:
        if isinstance(text, str) and _CAPTURE.fullmatch(text):
            return text
    return None


def summary(event: dict[str, Any]) -> str:
    return json.dumps(
        {k: event.get(k) for k in ("message", "logentry", "tags", "user", "contexts")},
        ensure_ascii=False,
        default=str,
    )[:2000]


def markers_in(text: str) -> set[str]:
    return {m.group(0) for m in Names.MARKER.finditer(text)}


def request_ids(
    models: Sequence[RequestModel],
    outcomes: Sequence[Outcome],
    events: Sequence[dict[str, Any]],
    runs: Sequence[RequestRun],
    traits: TargetTraits,
) -> list[str | None]:
    """Each request's ID, checked: the valid incoming one, else a fresh one,
    echoed once on the response, the same on every event and probe of the request."""
    tagged: dict[str, set[str]] = {}
    for event in events:
        text = capture_text(event)
        if text is not None:
            tagged.setdefault(text.split(":", 1)[0], set()).add(event["tags"].get("request_id"))
    ids: list[str | None] = []
    for model, outcome, run in zip(models, outcomes, runs, strict=True):
        names = model.names
        seen = set(outcome.request_ids) | tagged.get(names.marker, set())
        seen |= {rid for rid, _ in run.probes.values() if rid is not None}
        assert len(seen) <= 1, f"request {names.marker} has several request IDs: {seen}"
        assert len(outcome.request_ids) <= 1, f"response header: {outcome.request_ids}"
        if outcome.status is not None and (
            traits.app_makes_error_response or not model.plan.raises
        ):
            assert outcome.request_ids, f"no request-ID header on a {outcome.status} response"
        rid = next(iter(seen), None)
        incoming = names.incoming_headers(model.plan.incoming)
        if model.plan.incoming.kind == "valid":
            assert rid in (None, incoming[0].decode()), f"valid incoming ID replaced by {rid!r}"
        elif rid is not None:
            assert _FRESH_ID.fullmatch(rid), f"invalid incoming ID {incoming!r} gave {rid!r}"
        ids.append(rid)
    given = [rid for rid in ids if rid is not None]
    assert len(given) == len(set(given)), "two requests share a request ID"
    return ids


def check_outcomes(models: Sequence[RequestModel], outcomes: Sequence[Outcome]) -> None:
    for model, outcome in zip(models, outcomes, strict=True):
        if model.plan.raises:
            assert outcome.status in (None, 500), outcome
            text = model.names.exception(model.plan.main[-1].n)  # type: ignore[union-attr]
            assert outcome.error in (None, text), outcome
        else:
            assert (outcome.status, outcome.error) == (200, None), outcome


def check_probes(
    models: Sequence[RequestModel], runs: Sequence[RequestRun], ids: Sequence[str | None]
) -> None:
    """Spawned work saw its own request (or, through bare run_in_executor, none)."""
    for model, run, rid in zip(models, runs, ids, strict=True):
        assert set(run.probes) == set(model.probes), "probes that ran differ from the plan"
        for n, businesses in model.probes.items():
            seen = run.probes[n]
            if businesses is None:
                assert seen == (None, {}), f"bare run_in_executor carried context: {seen}"
            else:
                assert seen[0] == rid, f"probe {n} of {model.names.marker}: {seen}"
                assert seen[1] in businesses, (
                    f"probe {n} of {model.names.marker}: {seen}, expected one of {businesses}"
                )


def check_events(
    models: Sequence[RequestModel],
    events: Sequence[dict[str, Any]],
    ids: Sequence[str | None],
    traits: TargetTraits,
) -> None:
    """Every event is one planned capture, received once, carrying exactly its request's context."""
    owner = {text: (i, m) for i, m in enumerate(models) for text in m.events}
    counts: Counter[str] = Counter()
    for event in events:
        text = capture_text(event)
        assert text in owner, f"an event that no request captured: {summary(event)}"
        counts[text] += 1
        index, model = owner[text]
        rid = ids[index]
        assert rid is not None
        try:
            check_event(event, model, model.events[text], rid, traits)
        except AssertionError as exc:
            raise AssertionError(f"{exc}\n  event: {summary(event)}") from None
    assert not [t for t, c in counts.items() if c > 1], "an event was received twice"
    missing = set(owner) - set(counts)
    assert not missing, f"events never received: {sorted(missing)}"


def check_event(
    event: dict[str, Any],
    model: RequestModel,
    expected: ExpectedEvent,
    rid: str,
    traits: TargetTraits,
) -> None:
    names = model.names
    dumped = json.dumps(event, ensure_ascii=False)
    foreign = markers_in(dumped) - {names.marker}
    assert not foreign, f"{expected.text} carries markers of other requests: {sorted(foreign)}"
    _check_no_hostile_id(event, names)

    tags = event.get("tags") or {}
    assert tags.get("request_id") == rid, f"{expected.text}: request_id {tags.get('request_id')!r}"
    user = event.get("user") or None
    business = (event.get("contexts") or {}).get("business")
    # The user and the request's business fields change together: the event
    # carries one version of both.
    allowed = [
        (None if u is None else {"id": u}, fields or None)
        for u, fields in zip(expected.users, expected.businesses, strict=True)
    ]
    assert (user, business) in allowed, (
        f"{expected.text}: user {user!r} and business {business!r}, expected one of {allowed}"
    )
    for key, value in (business or {}).items():
        if key == "request_id":
            continue  # the request's own ID wins (checked above)
        if (
            _TAG_KEY.fullmatch(key)
            and value
            and len(value) <= 200
            and "\n" not in value
            and "\r" not in value
        ):
            assert tags.get(key) == value, f"{expected.text}: tag {key!r} is {tags.get(key)!r}"
        else:
            assert key not in tags, (
                f"{expected.text}: {key!r} is not a valid tag but was sent as one"
            )

    url = (event.get("request") or {}).get("url", "")
    assert url.endswith(names.path), f"{expected.text}: request url {url!r}"
    _check_crumbs(event, model, expected, rid)


def _check_no_hostile_id(event: dict[str, Any], names: Names) -> None:
    """A rejected incoming ID is nowhere in the event: not its ID, a tag, a crumb,
    a context, the request headers or the stack frames' locals."""
    assert names.hostile_token not in json.dumps(event, ensure_ascii=False), "hostile ID sent"


def _check_crumbs(
    event: dict[str, Any], model: RequestModel, expected: ExpectedEvent, rid: str
) -> None:
    names = model.names
    crumbs = (event.get("breadcrumbs") or {}).get("values") or []
    assert crumbs, f"{expected.text}: no breadcrumbs"
    entry = crumbs[0]
    assert (entry.get("category"), entry.get("message")) == ("request", f"GET {names.path}")
    assert entry["data"]["request_id"] == rid
    exits = [c for c in crumbs if c.get("category") == "response"]
    sent = expected.response_sent
    assert sent is not True or exits, f"{expected.text}: no exit crumb after the response"
    assert sent is not False or not exits, f"{expected.text}: exit crumb before the response"
    assert len(exits) <= 1
    for crumb in exits:
        assert crumb["message"] == f"GET {names.path} -> {expected.status}", crumb
    categories = {c.get("category") for c in crumbs}
    assert categories <= {"request", "response", CRUMB_CATEGORY}, categories
    ours = []
    for crumb in crumbs:
        if crumb.get("category") == CRUMB_CATEGORY:
            match = _CRUMB.fullmatch(crumb.get("message", ""))
            assert match, crumb
            ours.append(int(match.group(1)))
    assert len(ours) == len(set(ours)), f"{expected.text}: a crumb appears twice: {ours}"
    unknown = set(ours) - set(model.crumb_frame)
    assert not unknown, f"{expected.text}: crumbs that never ran: {unknown}"
    missing = expected.must_crumbs - set(ours)
    assert not missing, f"{expected.text}: crumbs recorded before it are missing: {sorted(missing)}"
    frames: dict[int, list[int]] = {}
    for n in ours:
        frames.setdefault(model.crumb_frame[n], []).append(n)
    for sequence in frames.values():
        assert sequence == sorted(sequence), f"{expected.text}: crumbs out of order: {ours}"


# ---------------------------------------------------------------- nothing left behind


def scope_fingerprint() -> tuple[int, int, int]:
    """Identity of the caller's isolation scope, its event processors and breadcrumbs."""
    isolation = sentry_sdk.get_isolation_scope()
    return id(isolation), len(isolation._event_processors), len(isolation._breadcrumbs)


def check_clean(markers: Iterable[str], before: tuple[int, int, int]) -> None:
    """The caller's context, sentry-sdk's scopes and the library's module state hold
    nothing of the batch; no per-request object outlives it."""
    markers = set(markers)
    assert get_request_id() is None, "the caller's context kept a request ID"
    assert not current_business_context(), (
        f"the caller's context kept business fields: {dict(current_business_context())}"
    )
    assert scope_fingerprint() == before, "the caller's isolation scope was written to"
    for name, scope in (
        ("global", sentry_sdk.get_global_scope()),
        ("isolation", sentry_sdk.get_isolation_scope()),
        ("current", sentry_sdk.get_current_scope()),
    ):
        found = markers_in(_scope_text(scope)) & markers
        assert not found, f"sentry-sdk's {name} scope holds {sorted(found)}"
    for module_name, module in list(sys.modules.items()):
        if module_name.split(".")[0] == "asgi_sentry_ctx":
            text = repr([_shallow(v) for v in vars(module).values()])
            found = markers_in(text) & markers
            assert not found, f"module state of {module_name} holds {sorted(found)}"


def live_request_states() -> int:
    """How many request states are alive after a full collection.

    A subclass check, not ``type(...) is``: the middleware's states are a
    subclass (``_ServedRequest``), so an exact-type count would always be zero.
    Not ``isinstance`` either: it reads ``__class__``, which some lazy objects
    (Django's settings, imported by sentry-sdk) evaluate, and fail.
    """
    gc.collect()
    return sum(1 for obj in gc.get_objects() if issubclass(type(obj), RequestState))


def _scope_text(scope: Any) -> str:
    fields = (
        "_user",
        "_tags",
        "_contexts",
        "_extras",
        "_breadcrumbs",
        "_fingerprint",
        "_transaction",
        "_attachments",
    )
    values = [getattr(scope, f, None) for f in fields]
    values += [getattr(p, "args", p) for p in scope._event_processors]
    return json.dumps(values, default=_deep_repr, ensure_ascii=False)


def _deep_repr(value: Any) -> Any:
    if isinstance(value, RequestState):
        return {slot: getattr(value, slot, None) for slot in RequestState.__slots__}
    if isinstance(value, set | frozenset | tuple):
        return list(value)
    return repr(value)


def _shallow(value: Any) -> str:
    if isinstance(value, dict | list | set | frozenset | tuple):
        return repr(value)
    return type(value).__name__
