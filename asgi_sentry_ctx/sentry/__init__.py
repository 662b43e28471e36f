"""How the library plugs into sentry-sdk: ``init_sentry``, the noise filter,
scrubbing, and the set-up step that registers the request-context processors.

Holds no request state itself.
"""
