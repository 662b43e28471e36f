"""A worker process for the store tests: capture messages into a shared event store.

    python tests/store/store_worker.py STORE DSN COUNT PREFIX [--flush]

Prints each event id once ``capture_message`` returned (the envelope is on
disk by then), so the parent knows exactly what was accepted before it kills
this process. With ``--flush`` it waits for delivery and exits normally.
"""

from __future__ import annotations

import sys

import sentry_sdk

from asgi_sentry_ctx.store.transport import store_transport


def main() -> None:
    path, dsn, count, prefix = sys.argv[1:5]
    sentry_sdk.init(
        dsn=dsn,
        transport=store_transport(path, retry_base=0.05, retry_max=0.5, poll_interval=0.1),
        default_integrations=False,
    )
    for index in range(int(count)):
        event_id = sentry_sdk.capture_message(f"{prefix}-{index}")
        print(event_id, flush=True)
    if "--flush" in sys.argv:
        sentry_sdk.get_client().close(timeout=60)


if __name__ == "__main__":
    main()
