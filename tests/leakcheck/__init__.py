"""Property-based proof that no request's context leaks into another's events.

Hypothesis generates batches of concurrent requests (:mod:`.plan`), each with
an incoming request ID, a user, business fields and a program of steps. A
*target* (:mod:`.targets`: the raw core, Starlette, FastAPI, Litestar, Quart)
runs the programs inside a real app wrapped in the middleware
(:mod:`.interpreter`); a *driver* (:mod:`.drivers`) sends the batch in-process
or through uvicorn; an independent model (:mod:`.model`) says what every event
must carry, and :mod:`.checks` compares it with what the loopback ingest
received, then checks that nothing of the batch is left anywhere.

Replaying failures: the default ("ci") profile is derandomized, so a failure
comes back on every run with the same code; Hypothesis prints the shrunk
batch and a ``@reproduce_failure`` blob. The ``nightly`` profile
(``pytest --hypothesis-profile=nightly``) explores new examples at 10x the
count and saves failures in ``.hypothesis/examples/`` (git-ignored), which it
replays first on the next run. Profiles are registered in ``tests/conftest.py``.
"""
