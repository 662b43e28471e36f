"""Overhead of asgi-sentry-ctx per request, side by side with sentry-sdk and peers.

Run ``make bench`` (or ``python -m benchmarks --help``). Every configuration runs in
its own worker process, so that one configuration's Sentry set-up (or the
monkeypatching of sentry-sdk's auto-enabled Starlette integration) cannot leak
into another's numbers; rounds are interleaved across the workers so that
machine drift cancels out. The documented set-ups section
(``benchmarks.documented``) times each framework's app as its page in
``docs/`` sets it up, against sentry-sdk as its own docs set it up.
"""
