"""Fixtures that start real things: a loopback Sentry ingest and the SDK pointed at it.

Hypothesis profiles (property tests in ``tests/context/test_isolation_*.py``):

- ``ci``, the default: derandomized, so every run tests the same examples and
  a failure reproduces on every run and machine (no flaky landings); no
  deadline (two shared cores make timings meaningless). A failure prints the
  shrunk example and a ``@reproduce_failure`` blob.
- ``nightly`` (``pytest --hypothesis-profile=nightly``): 10x the examples, new
  random ones each run; failing examples are saved under
  ``.hypothesis/examples/`` (git-ignored: a local replay cache, not a
  fixture) and replayed first on the next run.

Property tests scale their example counts with :func:`examples`.
"""

from __future__ import annotations

import contextlib
import contextvars
import inspect
import logging
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import sentry_sdk
import sentry_sdk.tracing_utils
import sentry_sdk.worker
from hypothesis import HealthCheck, Phase, settings
from hypothesis.database import DirectoryBasedExampleDatabase
from sentry_sdk.consts import DEFAULT_OPTIONS

from asgi_sentry_ctx import init_sentry
from asgi_sentry_ctx.testing import SentryIngest

# ``pytester``: the docs' test files and the library's pytest plugin run in a fresh pytest.
pytest_plugins = ["pytester"]

SentryInit = Callable[..., None]
ProductionInit = Callable[..., None]


@contextlib.contextmanager
def _logging_restored() -> Iterator[None]:
    manager = logging.root.manager
    levels = {
        name: logger.level
        for name, logger in manager.loggerDict.items()
        if isinstance(logger, logging.Logger)
    }
    root_level, root_handlers = logging.root.level, list(logging.root.handlers)
    yield
    logging.root.setLevel(root_level)
    logging.root.handlers[:] = root_handlers
    for name, logger in list(manager.loggerDict.items()):
        if isinstance(logger, logging.Logger):
            logger.setLevel(levels.get(name, logging.NOTSET))
            logger.disabled = False


@pytest.fixture(autouse=True)
def restore_logging() -> Iterator[None]:
    """Frameworks configure logging when an app is built (Litestar sets the root
    level to INFO); undo it so no test sees another test's log levels."""
    with _logging_restored():
        yield


@pytest.fixture(autouse=True, scope="module")
def restore_logging_after_module() -> Iterator[None]:
    """The same for apps a module-scoped fixture builds: set up before any
    function's snapshot, they would otherwise leave INFO on the root logger
    (and httpx's INFO records in later tests' breadcrumbs)."""
    with _logging_restored():
        yield


_CI_EXAMPLES = 100
settings.register_profile(
    "ci",
    max_examples=_CI_EXAMPLES,
    derandomize=True,
    deadline=None,
    print_blob=True,
    # The explain phase replays a failing batch a hundred more times to say
    # which lines only failures run: minutes, for little.
    phases=[Phase.explicit, Phase.reuse, Phase.generate, Phase.target, Phase.shrink],
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
settings.register_profile(
    "nightly",
    parent=settings.get_profile("ci"),
    max_examples=10 * _CI_EXAMPLES,
    derandomize=False,
    database=DirectoryBasedExampleDatabase(
        Path(__file__).resolve().parent.parent / ".hypothesis" / "examples"
    ),
)
settings.load_profile("ci")  # ``--hypothesis-profile`` overrides this


def examples(count: int) -> int:
    """``count`` examples under the ``ci`` profile, scaled for the profile in force."""
    current = settings.default
    assert current is not None
    return max(1, count * current.max_examples // _CI_EXAMPLES)


def _threads_share_their_starters_scope() -> bool:
    """Whether the SDK's ThreadingIntegration runs a new thread in the very
    isolation scope of the code that started it (sentry-sdk 2.20) rather than
    in a fork of it (later releases). Probed with a client that sends nothing."""
    client = sentry_sdk.Client(dsn="", auto_enabling_integrations=False)
    seen: list[sentry_sdk.Scope] = []
    try:
        with sentry_sdk.isolation_scope() as scope:
            scope.set_client(client)
            thread = threading.Thread(target=lambda: seen.append(sentry_sdk.get_isolation_scope()))
            thread.start()
            thread.join()
    finally:
        client.close()
    return seen[0] is scope


@pytest.fixture(autouse=True, scope="session")
def framework_integrations_set_up() -> None:
    """Set sentry-sdk's framework integrations up once, before any test.

    The SDK sets an integration up (patches its framework) at the first
    ``init`` that enables it, and never again: one that a first ``init_sentry``
    disabled stays off for the whole process, whatever later inits ask. A
    process initialises Sentry once; the tests switch between
    ``framework_integrations=False`` (the integrations step aside) and ``True``,
    so they are all set up first.
    """
    sentry_sdk.init(dsn="", auto_enabling_integrations=True)
    reset_sdk()


@pytest.fixture(autouse=True, scope="session")
def sdk_worker_outside_requests() -> Iterator[None]:
    """On an SDK whose threads share their starter's scope, start the SDK's
    transport thread in a context of its own, as later releases in effect do.

    The SDK starts that thread at the first event it sends, usually inside a
    request; sharing that request's scope, its POSTs to the loopback ingest
    become ``httplib`` breadcrumbs of requests (the SDK's check for its own
    DSN, ``is_sentry_url``, misses a DSN with a port, as only a test's has).
    Production DSNs have no port, so only the tests see this.
    """
    if not _threads_share_their_starters_scope():
        yield
        return
    start = sentry_sdk.worker.BackgroundWorker.start

    def start_outside_requests(self: sentry_sdk.worker.BackgroundWorker) -> None:
        contextvars.Context().run(start, self)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(sentry_sdk.worker.BackgroundWorker, "start", start_outside_requests)
        yield


@pytest.fixture
def ingest() -> Iterator[SentryIngest]:
    with SentryIngest() as server:
        yield server


@pytest.fixture
def sentry_init(ingest: SentryIngest) -> Iterator[SentryInit]:
    """Initialise the real SDK, with its real HTTP transport, sending to ``ingest``.

    Framework integrations stay off unless a test turns them on; the transport
    queue is large so that a burst of events is never dropped.
    """

    def init(**options: Any) -> None:
        settings: dict[str, Any] = {
            "dsn": ingest.dsn,
            "auto_enabling_integrations": False,
            "transport_queue_size": 10_000,
            **options,
        }
        sentry_sdk.init(**settings)

    yield init
    reset_sdk()


@pytest.fixture
def production(ingest: SentryIngest, monkeypatch: pytest.MonkeyPatch) -> Iterator[ProductionInit]:
    """``init_sentry(**options)`` (our production set-up: noise filter, scrubbing,
    logging) sending to ``ingest``, traces at rate 0 unless given; fails the
    test if Sentry stays off."""
    for name in ("SENTRY_ENVIRONMENT", "SENTRY_TRACES_SAMPLE_RATE", "SENTRY_PROFILES_SAMPLE_RATE"):
        monkeypatch.delenv(name, raising=False)

    def init(**options: Any) -> None:
        # No sampling by chance: a test that wants transactions asks for a rate.
        options.setdefault("traces_sample_rate", 0.0)
        assert init_sentry(ingest.dsn, **options), "init_sentry left Sentry off"

    yield init
    reset_sdk()


@pytest.fixture(params=[False, True], ids=["sdk-integration-off", "sdk-integration-on"])
def sentry(request: pytest.FixtureRequest, production: ProductionInit) -> ProductionInit:
    """``init_sentry`` sending to the ingest, traces off; a test using it runs
    twice: as documented (the SDK's framework integrations off, the middleware
    owning the request), and with them kept (``framework_integrations=True``)."""

    def init(**options: Any) -> None:
        production(
            traces_sample_rate=0.0,
            framework_integrations=request.param,
            transport_queue_size=10_000,
            **options,
        )

    return init


def reset_sdk() -> None:
    """Send what is queued, then go back to a disabled client for the next test.

    Not ``sentry_sdk.init()``: it would read SENTRY_DSN from the environment,
    and set every integration up again (tens of milliseconds per test).
    """
    sentry_sdk.flush(5)
    sentry_sdk.get_client().close()
    sentry_sdk.get_global_scope().set_client(None)


# ``@pytest.mark.sdk_feature(name)``: the test needs a sentry-sdk feature that
# older supported releases lack (`make sdk-range` runs the suite on the oldest).
# Each is found by probing the installed SDK, never by comparing versions: an
# option the SDK's ``init`` accepts is in ``DEFAULT_OPTIONS``.
def _reference_integrations() -> bool:
    from sentry_sdk.integrations.asgi import SentryAsgiMiddleware
    from sentry_sdk.integrations.litestar import LitestarIntegration

    asgi = inspect.signature(SentryAsgiMiddleware.__init__).parameters
    litestar = inspect.signature(LitestarIntegration.__init__).parameters
    return "root_path_in_path" in asgi and "failed_request_status_codes" in litestar


SDK_FEATURES: dict[str, Callable[[], bool]] = {
    # The successor of ``send_default_pii`` (sentry-sdk 2.7x).
    "data_collection": lambda: "data_collection" in DEFAULT_OPTIONS,
    # Sentry structured logs: ``sentry_sdk.logger``, ``enable_logs``, ``before_send_log``.
    "logs": lambda: {"enable_logs", "before_send_log"} <= DEFAULT_OPTIONS.keys(),
    # A trace's ``sample_rand`` (2.2x): one sampling decision across services.
    "sample_rand": lambda: hasattr(sentry_sdk.tracing_utils, "_generate_sample_rand"),
    # sentry-sdk's framework integrations as the parity tests compare with: a
    # mounted app's URL built once (the ASGI middleware's ``root_path_in_path``)
    # and Litestar's errors reported by status (``failed_request_status_codes``).
    # 2.20's doubled mounted URLs and reported 401s, not 503s.
    "reference_integrations": _reference_integrations,
    # Span streaming: ``trace_lifecycle="stream"`` and ``sentry_sdk.traces``.
    "span_streaming": lambda: "trace_lifecycle" in DEFAULT_OPTIONS,
}
_SDK_FEATURES_LACKING = pytest.StashKey[dict[str, int]]()  # feature: tests deselected


def _sdk_feature(item: pytest.Item) -> str | None:
    marker = item.get_closest_marker("sdk_feature")
    if marker is None:
        return None
    if len(marker.args) != 1 or marker.kwargs or marker.args[0] not in SDK_FEATURES:
        raise pytest.UsageError(
            f"{item.nodeid}: sdk_feature takes one of {sorted(SDK_FEATURES)}, "
            f"got {marker.args!r} {marker.kwargs!r}"
        )
    name: str = marker.args[0]
    return name


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Deselect the tests of the sentry-sdk features the installed release lacks."""
    lacking = {name: 0 for name, probe in SDK_FEATURES.items() if not probe()}
    config.stash[_SDK_FEATURES_LACKING] = lacking
    kept, deselected = [], []
    for item in items:
        feature = _sdk_feature(item)
        if feature in lacking:
            deselected.append(item)
            lacking[feature] += 1
        else:
            kept.append(item)
    if deselected:
        config.hook.pytest_deselected(items=deselected)
        items[:] = kept


def pytest_terminal_summary(terminalreporter: Any) -> None:
    from tests.leakcheck.rig import RESULTS

    for line in RESULTS:
        terminalreporter.write_line(line)
    lacking = terminalreporter.config.stash.get(_SDK_FEATURES_LACKING, {})
    for feature, count in sorted(lacking.items()):
        terminalreporter.write_line(
            f"sdk_feature {feature}: {count} tests deselected, "
            f"sentry-sdk {sentry_sdk.VERSION} lacks it"
        )
