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
import logging
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import sentry_sdk
from hypothesis import HealthCheck, Phase, settings
from hypothesis.database import DirectoryBasedExampleDatabase

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
    logging) sending to ``ingest``; fails the test if Sentry stays off."""
    for name in ("SENTRY_ENVIRONMENT", "SENTRY_TRACES_SAMPLE_RATE", "SENTRY_PROFILES_SAMPLE_RATE"):
        monkeypatch.delenv(name, raising=False)

    def init(**options: Any) -> None:
        assert init_sentry(ingest.dsn, **options), "init_sentry left Sentry off"

    yield init
    reset_sdk()


@pytest.fixture(params=[False, True], ids=["sdk-integration-off", "sdk-integration-on"])
def sentry(request: pytest.FixtureRequest, production: ProductionInit) -> ProductionInit:
    """``init_sentry`` sending to the ingest, traces off; a test using it runs
    twice, with and without the SDK's own framework integration."""

    def init(**options: Any) -> None:
        production(
            traces_sample_rate=0.0,
            auto_enabling_integrations=request.param,
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


def pytest_terminal_summary(terminalreporter: Any) -> None:
    from tests.leakcheck.rig import RESULTS

    for line in RESULTS:
        terminalreporter.write_line(line)
