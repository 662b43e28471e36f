"""``python -m asgi_sentry_ctx events ...``: see :mod:`asgi_sentry_ctx.cli`."""

from asgi_sentry_ctx.cli import main

raise SystemExit(main())
