"""``python -m asgi_sentry_ctx events ...``: see ``asgi_sentry_ctx.store.cli``."""

from asgi_sentry_ctx.store.cli import main

raise SystemExit(main())
