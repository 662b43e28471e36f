"""Thin, optional framework adapters: each installs the middleware the way its framework expects.

Import the one for your framework (``asgi_sentry_ctx.adapters.quart``...); each
imports its framework lazily and is installed with its extra
(``pip install "asgi-sentry-ctx[quart]"``).
"""
