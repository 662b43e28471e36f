"""Serve one configuration's app with uvicorn: ``python -m benchmarks.serve CONFIG KIND PORT``.

One worker, the httptools HTTP parser and uvloop, no access log: uvicorn as
it is deployed for throughput.
"""

from __future__ import annotations

import sys

import uvicorn

from benchmarks.configs import BY_NAME, init_sentry_for


def main() -> None:
    config = BY_NAME[sys.argv[1]]
    kind = sys.argv[2]
    port = int(sys.argv[3])
    init_sentry_for(config)
    uvicorn.run(
        config.build(kind),
        host="127.0.0.1",
        port=port,
        http="httptools",
        loop="uvloop",
        lifespan="off",
        access_log=False,
        log_level="warning",
    )


if __name__ == "__main__":
    main()
