"""What a batch of concurrent requests does, as data, and the Hypothesis strategies for it.

A plan carries no marker: markers (which make every request's values unique
and recognisable in any event) are derived from the batch's nonce and the
request's index when the batch runs (:class:`Names`). Numbered steps (crumbs,
captures, probes...) get ids unique within their request, in program order,
so that an event names the step that produced it and a frame's own steps
appear in increasing order.
"""

from __future__ import annotations

import dataclasses
import functools
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Literal

from hypothesis import strategies as st

Fields = tuple[tuple[str, str | None], ...]
"""Business fields to set: key, and a value suffix (``None`` removes the key)."""

SpawnMode = Literal["await", "gather", "detach"]
ThreadVia = Literal["to_thread", "threadpool", "bound_executor"]
Frame = Literal["main", "child", "after", "thread", "main_thread"]
"""Where steps run: the handler; a spawned task; the streaming body or the
background task (after the handler returned); a worker thread; a worker
thread the handler waits for (like a sync FastAPI dependency: it may set
the user)."""


@dataclass(frozen=True)
class Yield:
    """``await asyncio.sleep(0)`` ``turns`` times: the schedule of the interleaving."""

    turns: int


@dataclass(frozen=True)
class Nap:
    """A short real sleep (1 ms): timer-driven interleaving, outside the schedule."""


@dataclass(frozen=True)
class Crumb:
    n: int = 0


@dataclass(frozen=True)
class SetBusiness:
    fields: Fields


@dataclass(frozen=True)
class WithBusiness:
    fields: Fields
    body: Program


@dataclass(frozen=True)
class SetUser:
    n: int = 0


@dataclass(frozen=True)
class ClearUser:
    pass


@dataclass(frozen=True)
class Capture:
    """``capture_message``."""

    n: int = 0


@dataclass(frozen=True)
class LogError:
    """``logger.error``: an event through the SDK's logging integration."""

    n: int = 0


@dataclass(frozen=True)
class Probe:
    """Record ``get_request_id()`` and the business context in force here."""

    n: int = 0


@dataclass(frozen=True)
class RawExecutor:
    """A probe run by bare ``loop.run_in_executor``, which copies no context."""

    n: int = 0


@dataclass(frozen=True)
class Spawn:
    """Child tasks: one awaited, several gathered, or one left running past the response."""

    mode: SpawnMode
    bodies: tuple[Program, ...]


@dataclass(frozen=True)
class InThread:
    """Sync steps in a worker thread, awaited: ``asyncio.to_thread``, the framework's
    threadpool, or ``loop.run_in_executor`` with ``bind_context``."""

    via: ThreadVia
    body: Program


@dataclass(frozen=True)
class Raise:
    n: int = 0


Step = (
    Yield
    | Nap
    | Crumb
    | SetBusiness
    | WithBusiness
    | SetUser
    | ClearUser
    | Capture
    | LogError
    | Probe
    | RawExecutor
    | Spawn
    | InThread
    | Raise
)
Program = tuple[Step, ...]

HostileKind = Literal["crlf", "control", "huge", "non_ascii", "spaces", "repeated", "too_long"]
HTTP_SAFE_HOSTILE: tuple[HostileKind, ...] = ("huge", "non_ascii", "spaces", "repeated", "too_long")
"""Hostile IDs an HTTP client can put on the wire (CR, LF and NUL cannot be sent)."""


@dataclass(frozen=True)
class IncomingId:
    kind: Literal["valid", "absent", "hostile"]
    valid_suffix: str = ""
    hostile: HostileKind = "crlf"


@dataclass(frozen=True)
class RequestPlan:
    incoming: IncomingId
    authenticated: bool
    start_turns: int
    main: Program
    stream: Program | None = None
    """Steps run between the chunks of a streaming response (``None``: a plain response)."""
    background: Program | None = None
    """Steps of a background task run after the response."""

    @property
    def raises(self) -> bool:
        return bool(self.main) and isinstance(self.main[-1], Raise)


Batch = tuple[RequestPlan, ...]


class Names:
    """The recognisable values of request ``index`` in batch ``nonce``.

    A marker looks like ``m12x3z``: the letters delimit the numbers, so no
    marker is a substring of another and a leak names its source.
    """

    MARKER = re.compile(r"m(\d+)x(\d+)z")
    HOSTILE = re.compile(r"h\d+x\d+z")

    def __init__(self, nonce: int, index: int) -> None:
        self.nonce = nonce
        self.index = index
        self.marker = f"m{nonce}x{index}z"
        self.hostile_token = f"h{nonce}x{index}z"
        self.path = f"/r/{self.marker}"
        self.auth_user = f"{self.marker}auth"

    def crumb(self, n: int) -> str:
        return f"{self.marker}:crumb:{n}"

    def message(self, n: int) -> str:
        return f"{self.marker}:msg:{n}"

    def log(self, n: int) -> str:
        return f"{self.marker}:log:{n}"

    def exception(self, n: int) -> str:
        return f"{self.marker}:exc:{n}"

    def user(self, n: int) -> str:
        return f"{self.marker}u{n}"

    def value(self, suffix: str) -> str:
        return f"{self.marker}{suffix}"

    def fields(self, fields: Fields) -> dict[str, str | None]:
        return {key: None if v is None else self.value(v) for key, v in fields}

    def incoming_headers(self, incoming: IncomingId) -> list[bytes]:
        """The values of the request-ID headers this request sends."""
        token = self.hostile_token.encode()
        if incoming.kind == "absent":
            return []
        if incoming.kind == "valid":
            return [f"{self.marker}{incoming.valid_suffix}".encode()[:128]]
        return {
            "crlf": [token + b"\r\nx-injected: 1"],
            "control": [token + b"\x00\x07\x1b[31m"],
            "huge": [token + b"a" * 10_000],
            "non_ascii": [token + "-ünïcødé-✓".encode()],
            "spaces": [token + b" " + token],
            "repeated": [token + b"a", token + b"b"],
            "too_long": [token + b"a" * (129 - len(token))],
        }[incoming.hostile]


# ---------------------------------------------------------------- numbering


def numbered(plan: RequestPlan) -> RequestPlan:
    """``plan`` with its numbered steps given ids 1, 2, 3... in program order."""
    counter = iter(range(1, 1_000_000))
    main = _number(plan.main, counter)
    stream = None if plan.stream is None else _number(plan.stream, counter)
    background = None if plan.background is None else _number(plan.background, counter)
    return dataclasses.replace(plan, main=main, stream=stream, background=background)


def _number(program: Program, counter: Iterator[int]) -> Program:
    out: list[Step] = []
    for step in program:
        if isinstance(step, Crumb | SetUser | Capture | LogError | Probe | RawExecutor | Raise):
            out.append(dataclasses.replace(step, n=next(counter)))
        elif isinstance(step, WithBusiness):
            out.append(WithBusiness(step.fields, _number(step.body, counter)))
        elif isinstance(step, Spawn):
            out.append(Spawn(step.mode, tuple(_number(b, counter) for b in step.bodies)))
        elif isinstance(step, InThread):
            out.append(InThread(step.via, _number(step.body, counter)))
        else:
            out.append(step)
    return tuple(out)


def walk(program: Program) -> Iterator[Step]:
    """Every step of ``program``, nested ones included, in program order."""
    for step in program:
        yield step
        if isinstance(step, WithBusiness | InThread):
            yield from walk(step.body)
        elif isinstance(step, Spawn):
            for body in step.bodies:
                yield from walk(body)


# ---------------------------------------------------------------- strategies

# Keys every request uses (a leak would overwrite its neighbour's value),
# keys Sentry rejects as tags, and keys that collide with the library's own tag.
SHARED_KEYS = (
    "podcast_id",
    "episode_id",
    "action",
    "request_id",
    "user",
    "bad key",
    "ü",
    "a_key_longer_than_the_32_characters_sentry_allows",
)

_keys = st.one_of(st.sampled_from(SHARED_KEYS), st.text(max_size=12))
# Values: arbitrary text, padded to straddle Sentry's 200-character tag limit
# (padding is cheap for Hypothesis where 200 drawn characters are not).
_suffixes = st.builds(
    lambda text, pad: text + "." * pad, st.text(max_size=12), st.sampled_from([0, 0, 0, 186, 200])
)
_fields: st.SearchStrategy[Fields] = st.lists(
    st.tuples(_keys, st.one_of(st.none(), _suffixes)), min_size=1, max_size=4
).map(tuple)


@functools.cache
def programs(frame: Frame, depth: int = 2, max_size: int = 6) -> st.SearchStrategy[Program]:
    """Programs for ``frame``: the kinds of step allowed there, nested ``depth`` deep.

    The request's user and ``set_business_context`` fields change in the
    handler only (and threads it waits for); other tasks and the code that
    runs after the handler (streaming body, background task) change business
    fields inside ``with business_context`` blocks only: then what an event
    must carry is fixed by the program, whatever the timing of concurrent
    tasks and threads. (That a child task's or a thread's
    ``set_business_context`` reaches the request is pinned by
    tests/context/test_business.py.)
    """
    return st.lists(_step(frame, depth), max_size=max_size).map(tuple)


def _step(frame: Frame, depth: int) -> st.SearchStrategy[Step]:
    steps: list[st.SearchStrategy[Step]] = [
        st.builds(Crumb),
        st.builds(Capture),
        st.builds(LogError),
        st.builds(Probe),
    ]
    if frame not in ("thread", "main_thread"):
        steps += [
            st.builds(Yield, st.integers(0, 4)),
            st.builds(Yield, st.integers(0, 4)),
            st.just(Nap()),
            st.builds(RawExecutor),
        ]
    if frame in ("main", "main_thread"):
        steps += [st.builds(SetBusiness, _fields), st.builds(SetUser), st.just(ClearUser())]
    if depth > 0:
        # A block's fields end with the block, whoever opens it.
        body: Frame = "child" if frame == "after" else frame
        steps.append(st.builds(WithBusiness, _fields, programs(body, depth - 1, max_size=4)))
        if frame not in ("thread", "main_thread"):
            thread: Frame = "main_thread" if frame == "main" else "thread"
            steps.append(st.builds(InThread, _vias, programs(thread, depth - 1, max_size=4)))
            child = programs("child", depth - 1, max_size=4)
            steps += [
                st.builds(Spawn, st.just("await"), st.tuples(child)),
                st.builds(Spawn, st.just("detach"), st.tuples(child)),
                st.builds(
                    Spawn, st.just("gather"), st.lists(child, min_size=1, max_size=3).map(tuple)
                ),
            ]
    return st.one_of(steps)


_vias: st.SearchStrategy[ThreadVia] = st.sampled_from(["to_thread", "threadpool", "bound_executor"])
_valid_suffix = st.text(
    alphabet="abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.:", max_size=24
)


def incoming_ids(hostile: tuple[HostileKind, ...]) -> st.SearchStrategy[IncomingId]:
    return st.one_of(
        st.builds(IncomingId, st.just("valid"), _valid_suffix),
        st.just(IncomingId("absent")),
        st.builds(IncomingId, st.just("hostile"), hostile=st.sampled_from(hostile)),
    )


@st.composite
def request_plans(draw: st.DrawFn, hostile: tuple[HostileKind, ...]) -> RequestPlan:
    incoming = draw(incoming_ids(hostile))
    authenticated = draw(st.booleans())
    start_turns = draw(st.integers(0, 3))
    main = draw(programs("main"))
    raises: bool = draw(st.booleans())
    if main and raises:
        # Raising at step k: the handler's k-th step raises; nothing is streamed.
        return numbered(RequestPlan(incoming, authenticated, start_turns, (*main, Raise())))
    stream = draw(st.none() | programs("after", max_size=4))
    background = draw(st.none() | programs("after", max_size=4))
    return numbered(RequestPlan(incoming, authenticated, start_turns, main, stream, background))


def batches(
    hostile: tuple[HostileKind, ...] = HTTP_SAFE_HOSTILE, max_requests: int = 64
) -> st.SearchStrategy[Batch]:
    """2 to ``max_requests`` concurrent requests (often many: leaks need neighbours)."""
    sizes = st.one_of(st.integers(2, max_requests), st.sampled_from([8, 16, 32, max_requests]))
    return sizes.flatmap(
        lambda size: st.lists(request_plans(hostile), min_size=size, max_size=size).map(tuple)
    )


def handovers(size: int) -> st.SearchStrategy[tuple[int | None, ...]]:
    """For each of ``size`` requests, ``None`` or the index of an earlier request
    whose context it starts in a copy of (the first request starts in none)."""
    earlier = [st.none() | st.integers(0, i - 1) for i in range(1, size)]
    return st.tuples(st.none(), *earlier)
