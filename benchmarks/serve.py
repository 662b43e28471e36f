"""Serve one configuration's app with uvicorn: ``python -m benchmarks.serve CONFIG KIND PORT``.

One worker, the httptools HTTP parser and uvloop, no access log: uvicorn as
it is deployed for throughput. With ``KIND`` ``documented``, ``CONFIG`` is a
documented set-up (``fastapi/ours``), served with its lifespan as uvicorn's
default runs it.
"""

from __future__ import annotations

import sys
from typing import Literal

import uvicorn

from benchmarks import documented
from benchmarks.configs import BY_NAME, init_sentry_for


def main() -> None:
    name, kind, port = sys.argv[1], sys.argv[2], int(sys.argv[3])
    lifespan: Literal["auto", "off"]
    if kind == "documented":
        app, lifespan = documented.start(name).app, "auto"
    else:
        config = BY_NAME[name]
        init_sentry_for(config)
        app, lifespan = config.build(kind), "off"
    uvicorn.run(
        app,
        host="127.0.0.1",
        port=port,
        http="httptools",
        loop="uvloop",
        lifespan=lifespan,
        access_log=False,
        log_level="warning",
    )


if __name__ == "__main__":
    main()
