"""Property, end to end: concurrent HTTP connections to a real uvicorn server.

The same batches and checks as the in-process property, with what only a
real server brings: its own event loop and thread, one task per connection,
real sockets, and HTTP's limits on what a hostile header can hold.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from asgi_sentry_ctx.testing import SentryIngest
from tests.conftest import examples
from tests.leakcheck.plan import HTTP_SAFE_HOSTILE, batches
from tests.leakcheck.rig import Rig, sentry_to
from tests.leakcheck.targets import TARGETS, Target


@pytest.fixture(scope="module")
def module_ingest() -> Iterator[SentryIngest]:
    with SentryIngest() as ingest:
        yield ingest


@pytest.fixture(scope="module", params=TARGETS, ids=str)
def served(request: pytest.FixtureRequest, module_ingest: SentryIngest) -> Iterator[Rig]:
    target: Target = request.param
    with sentry_to(module_ingest):
        rig = Rig(target, module_ingest, over_http=True)
        try:
            yield rig
        finally:
            rig.close("uvicorn")


@settings(max_examples=examples(6))
@given(data=st.data())
def test_every_event_carries_exactly_its_own_requests_context_under_uvicorn(
    served: Rig, data: st.DataObject
) -> None:
    hostile = tuple(h for h in served.target.hostile if h in HTTP_SAFE_HOSTILE)
    served.check(data.draw(batches(hostile), label="batch"))
