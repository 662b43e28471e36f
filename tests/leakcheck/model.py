"""The oracle: what each event and probe of a request must carry, computed from its plan.

It knows nothing of the library. It follows the semantics a user is promised:
the user and the fields of ``set_business_context`` belong to the request
(only the handler, and threads it waits for, change them, so what an event
carries is exact wherever the handler waits for the code that captures it, and
one of the handler's later versions in a task left running); the fields of a
``with business_context`` block live in a context variable (a task or thread
sees a snapshot of its spawner's blocks; the block's fields win over the
request's inside it, and are gone when it ends); a
breadcrumb that happened before a capture (earlier in the same task, or in a
task or thread that was awaited, or before the task was spawned) is on its
event, in order.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from tests.leakcheck.plan import (
    Capture,
    ClearUser,
    Crumb,
    InThread,
    LogError,
    Names,
    Probe,
    Program,
    Raise,
    RawExecutor,
    RequestPlan,
    SetBusiness,
    SetUser,
    Spawn,
    WithBusiness,
)

EventKind = Literal["message", "log", "exception"]


@dataclass(frozen=True)
class TargetTraits:
    """How a framework orders things, where that decides what an event carries."""

    background_after_response: bool
    """Background tasks start after the response was sent (else: concurrently)."""
    response_before_report: bool
    """An exception's 500 response is sent before the exception is reported."""
    app_makes_error_response: bool = True
    """The app answers an exception with a 500 (else it escapes to the server,
    whose 500 no middleware sees, so it carries no request-ID header)."""


@dataclass(frozen=True)
class ExpectedEvent:
    kind: EventKind
    text: str
    businesses: tuple[dict[str, str], ...]
    """The business fields the event may carry, each with the user at the same index."""
    users: tuple[str | None, ...]
    """The users the event may carry (exactly one where the timing cannot matter)."""
    must_crumbs: frozenset[int]
    """Crumbs that happened before the capture: all of them must be on the event."""
    response_sent: bool | None
    """Whether the exit crumb is on the event (``None``: depends on timing)."""
    status: int


@dataclass
class RequestModel:
    names: Names
    plan: RequestPlan
    events: dict[str, ExpectedEvent] = field(default_factory=dict)
    probes: dict[int, tuple[dict[str, str], ...] | None] = field(default_factory=dict)
    """Probe id -> the business fields it may see (``None``: it must see no request at all)."""
    crumb_frame: dict[int, int] = field(default_factory=dict)
    """Crumb id -> the task or thread that records it."""


@dataclass
class _Frame:
    id: int
    business: dict[str, str]
    """The fields of the ``with business_context`` blocks in force (the context variable)."""
    before: set[int]
    response_sent: bool | None
    user_at: int
    user_exact: bool


def model(plan: RequestPlan, names: Names, traits: TargetTraits) -> RequestModel:
    """Everything request ``names.index`` must produce when it runs ``plan``."""
    return _Walker(plan, names, traits).run()


class _Walker:
    def __init__(self, plan: RequestPlan, names: Names, traits: TargetTraits) -> None:
        self.result = RequestModel(names, plan)
        self.names = names
        self.traits = traits
        # The request's (user, business fields), one version per change.
        self.versions: list[tuple[str | None, dict[str, str]]] = [
            (names.auth_user if plan.authenticated else None, {})
        ]
        self.frames = 0
        self.pending: list[tuple[str, EventKind, _Frame]] = []
        self.pending_probes: list[tuple[int, _Frame]] = []

    def run(self) -> RequestModel:
        plan = self.result.plan
        main = self._frame(None, {}, set(), response_sent=False, exact=True)
        self._walk(plan.main, main)
        after = main
        if plan.stream is not None:
            after = self._frame(main, main.business, main.before, response_sent=True, exact=True)
            self._walk(plan.stream, after)
        if plan.background is not None:
            ordered = self.traits.background_after_response
            start = after if ordered else main
            background = self._frame(
                main,
                start.business,
                start.before,
                response_sent=True if ordered else None,
                exact=True,
            )
            self._walk(plan.background, background)
        # The status in the exit crumb: the request's, whenever the event is built.
        status = 500 if plan.raises else 200
        for n, frame in self.pending_probes:
            self.result.probes[n] = tuple(business for _, business in self._versions_of(frame))
        for text, kind, frame in self.pending:
            versions = self._versions_of(frame)
            self.result.events[text] = ExpectedEvent(
                kind,
                text,
                tuple(business for _, business in versions),
                tuple(user for user, _ in versions),
                frozenset(frame.before),
                frame.response_sent,
                status,
            )
        return self.result

    def _versions_of(self, frame: _Frame) -> list[tuple[str | None, dict[str, str]]]:
        """The (user, business fields) ``frame`` may see: the request's, under its blocks'."""
        at = frame.user_at
        versions = self.versions[at:] if not frame.user_exact else [self.versions[at]]
        return [(user, {**fields, **frame.business}) for user, fields in versions]

    def _frame(
        self,
        parent: _Frame | None,
        business: dict[str, str],
        before: set[int],
        *,
        response_sent: bool | None,
        exact: bool,
    ) -> _Frame:
        self.frames += 1
        user_at = len(self.versions) - 1
        if parent is not None and not parent.user_exact:
            user_at, exact = parent.user_at, False
        return _Frame(self.frames, dict(business), set(before), response_sent, user_at, exact)

    def _walk(self, program: Program, frame: _Frame) -> None:
        names = self.names
        for step in program:
            if isinstance(step, Crumb):
                frame.before.add(step.n)
                self.result.crumb_frame[step.n] = frame.id
            elif isinstance(step, SetBusiness):
                user, fields = self.versions[-1]
                self.versions.append((user, _merged(fields, names.fields(step.fields))))
                frame.user_at = len(self.versions) - 1
            elif isinstance(step, WithBusiness):
                saved = frame.business
                frame.business = _merged(saved, names.fields(step.fields))
                self._walk(step.body, frame)
                frame.business = saved
            elif isinstance(step, SetUser):
                self.versions.append((names.user(step.n), self.versions[-1][1]))
                frame.user_at = len(self.versions) - 1
            elif isinstance(step, ClearUser):
                self.versions.append((None, self.versions[-1][1]))
                frame.user_at = len(self.versions) - 1
            elif isinstance(step, Capture):
                self._capture(names.message(step.n), "message", frame, frame.response_sent)
            elif isinstance(step, LogError):
                self._capture(names.log(step.n), "log", frame, frame.response_sent)
            elif isinstance(step, Raise):
                # Reported where the framework catches it: the handler's own
                # context, with the response sent or not yet.
                sent = self.traits.response_before_report
                self._capture(names.exception(step.n), "exception", frame, sent)
            elif isinstance(step, Probe):
                self.pending_probes.append((step.n, self._snapshot(frame)))
            elif isinstance(step, RawExecutor):
                self.result.probes[step.n] = None
            elif isinstance(step, InThread):
                thread = self._frame(
                    frame,
                    frame.business,
                    frame.before,
                    response_sent=frame.response_sent,
                    exact=True,
                )
                self._walk(step.body, thread)
                frame.before |= thread.before
                if frame.user_exact:
                    # Awaited, so whatever user it set is the handler's from now on.
                    frame.user_at = len(self.versions) - 1
            elif isinstance(step, Spawn):
                detached = step.mode == "detach"
                # A task left running may outlive the response.
                child_sent = frame.response_sent if not detached or frame.response_sent else None
                children = [
                    self._frame(
                        frame,
                        frame.business,
                        frame.before,
                        response_sent=child_sent,
                        exact=not detached,
                    )
                    for _ in step.bodies
                ]
                for child, body in zip(children, step.bodies, strict=True):
                    self._walk(body, child)
                if not detached:
                    for child in children:
                        frame.before |= child.before

    def _capture(
        self,
        text: str,
        kind: EventKind,
        frame: _Frame,
        response_sent: bool | None,
    ) -> None:
        self.pending.append((text, kind, self._snapshot(frame, response_sent)))

    @staticmethod
    def _snapshot(frame: _Frame, response_sent: bool | None = None) -> _Frame:
        return _Frame(
            frame.id,
            dict(frame.business),
            set(frame.before),
            response_sent,
            frame.user_at,
            frame.user_exact,
        )


def _merged(current: dict[str, str], fields: dict[str, str | None]) -> dict[str, str]:
    merged = dict(current)
    for key, value in fields.items():
        if value is None:
            merged.pop(key, None)
        else:
            merged[key] = value
    return merged
