"""Thin, optional glue for ASGI frameworks: one module per framework.

Each module installs
[`SentryContextMiddleware`][asgi_sentry_ctx.SentryContextMiddleware] the way
its framework expects and tells the core who the user is. Import the one you
need (``from asgi_sentry_ctx.adapters import starlette``); nothing here imports
a framework, so the core stays usable without any of them. What the modules
need from the core goes through one seam, ``asgi_sentry_ctx.adapters.support``.
"""
