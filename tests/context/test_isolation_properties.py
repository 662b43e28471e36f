"""Property: under any interleaving of concurrent requests, every event carries exactly
its own request's context, and nothing of a batch is left behind (in-process drivers).

See ``tests/leakcheck`` for what is generated and what is checked.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from asgi_sentry_ctx.testing import SentryIngest
from tests.conftest import examples
from tests.leakcheck.plan import batches, handovers
from tests.leakcheck.rig import Rig, sentry_to
from tests.leakcheck.targets import TARGETS, Target


@pytest.fixture(scope="module")
def module_ingest() -> Iterator[SentryIngest]:
    with SentryIngest() as ingest:
        yield ingest


@pytest.fixture(scope="module", params=TARGETS, ids=str)
def rig(request: pytest.FixtureRequest, module_ingest: SentryIngest) -> Iterator[Rig]:
    target: Target = request.param
    with sentry_to(module_ingest):
        rig = Rig(target, module_ingest)
        try:
            yield rig
        finally:
            rig.close("in-process")


@pytest.mark.filterwarnings("error::RuntimeWarning")  # a coroutine never awaited
@settings(max_examples=examples(40))
@given(data=st.data())
def test_every_event_carries_exactly_its_own_requests_context(
    rig: Rig, data: st.DataObject
) -> None:
    rig.check(data.draw(batches(rig.target.hostile), label="batch"))


@pytest.mark.filterwarnings("error::RuntimeWarning")
@settings(max_examples=examples(20))
@given(data=st.data())
def test_a_request_started_in_another_requests_context_carries_only_its_own(
    rig: Rig, data: st.DataObject
) -> None:
    # As uvicorn on the asyncio loop does after a large body or with pipelining:
    # some requests start in a copy of an earlier request's context.
    batch = data.draw(batches(rig.target.hostile, max_requests=16), label="batch")
    rig.check(batch, data.draw(handovers(len(batch)), label="handed_from"))
