"""Serve an ASGI app with a real server on 127.0.0.1 for a test.

``serve(app, server=...)`` knows these set-ups:

- ``"uvicorn"``: uvicorn as installed picks its loop and HTTP parser (uvloop and
  httptools here, since ``uvicorn[standard]`` brings both);
- ``"uvicorn-asyncio-h11"``, ``"uvicorn-asyncio-httptools"``,
  ``"uvicorn-uvloop-httptools"``: uvicorn with that event loop and HTTP parser
  forced (a plain ``pip install uvicorn`` runs on the asyncio loop);
- ``"hypercorn"``: hypercorn on the asyncio loop;
- ``"granian"``: granian (a Rust server) with ``--interface asgi`` in a
  subprocess. It imports the app itself, so ``app`` is its import path
  (``"module:attr"``, or a factory with ``factory=True``), and the app process
  sets itself up (Sentry included) from ``env``.

uvicorn and hypercorn run in a thread of the test process, each on a free
loopback port; everything stops when the ``with`` block ends.
"""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import uvicorn

UVICORN_SETUPS: dict[str, tuple[str, str]] = {
    # server name: (uvicorn's ``loop``, uvicorn's ``http``)
    "uvicorn": ("auto", "auto"),
    "uvicorn-asyncio-h11": ("asyncio", "h11"),
    "uvicorn-asyncio-httptools": ("asyncio", "httptools"),
    "uvicorn-uvloop-httptools": ("uvloop", "httptools"),
}
SERVERS = (*UVICORN_SETUPS, "hypercorn", "granian")

_REPO = Path(__file__).resolve().parent.parent


@contextmanager
def serve(
    app: Any,
    *,
    server: str = "uvicorn",
    env: Mapping[str, str] | None = None,
    factory: bool = False,
) -> Iterator[str]:
    """Serve ``app`` with ``server``; yield its base URL; stop the server on exit.

    ``env`` and ``factory`` are for ``"granian"`` only, whose ``app`` is an import path.
    """
    if server == "granian":
        if not isinstance(app, str):
            raise TypeError("granian imports the app itself: pass it as 'module:attr'")
        yield from _granian(app, env or {}, factory=factory)
        return
    if isinstance(app, str) or env is not None or factory:
        raise TypeError(f"{server} serves an app object of this process; env is for granian")
    if server in UVICORN_SETUPS:
        loop, http = UVICORN_SETUPS[server]
        yield from _uvicorn(app, loop=loop, http=http)
    elif server == "hypercorn":
        yield from _hypercorn(app, _free_port())
    else:
        raise ValueError(f"unknown server {server!r}; one of {SERVERS}")


def _uvicorn(app: Any, *, loop: str, http: str) -> Iterator[str]:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    config = uvicorn.Config(
        app, loop=loop, http=http, lifespan="on", log_level="warning", access_log=False
    )
    instance = uvicorn.Server(config)
    thread = threading.Thread(target=instance.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    _wait_until(lambda: instance.started, what="uvicorn to start")
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        instance.should_exit = True
        thread.join(10)
        sock.close()


def _hypercorn(app: Any, port: int) -> Iterator[str]:
    from hypercorn.asyncio import serve as hypercorn_serve
    from hypercorn.config import Config

    config = Config()
    config.bind = [f"127.0.0.1:{port}"]
    config.loglevel = "WARNING"
    loop = asyncio.new_event_loop()
    stop = asyncio.Event()

    def run() -> None:
        asyncio.set_event_loop(loop)
        loop.run_until_complete(hypercorn_serve(app, config, shutdown_trigger=stop.wait))

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    _wait_until(lambda: _accepts(port), what="hypercorn to start")
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        loop.call_soon_threadsafe(stop.set)
        thread.join(10)
        loop.close()


def _granian(target: str, env: Mapping[str, str], *, factory: bool) -> Iterator[str]:
    port = _free_port()
    command = [
        sys.executable,
        "-m",
        "granian",
        "--interface",
        "asgi",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--workers",
        "1",
        "--loop",
        "asyncio",
        "--log-level",
        "warning",
        "--no-access-log",
        *(["--factory"] if factory else []),
        target,
    ]
    python_path = os.pathsep.join(filter(None, [str(_REPO), os.environ.get("PYTHONPATH")]))
    with tempfile.TemporaryFile() as output:
        process = subprocess.Popen(
            command,
            cwd=_REPO,
            env={**os.environ, "PYTHONPATH": python_path, **env},
            stdout=output,
            stderr=subprocess.STDOUT,
        )
        try:

            def answers() -> bool:
                if process.poll() is not None:
                    output.seek(0)
                    log = output.read().decode(errors="replace")
                    raise RuntimeError(f"granian exited with {process.returncode}:\n{log}")
                return _answers_http(port)

            # Its listener accepts before the worker has imported the app: wait for an answer.
            _wait_until(answers, what="granian to answer", timeout=30)
            yield f"http://127.0.0.1:{port}"
        finally:
            process.terminate()
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(5)


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _accepts(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.2):
            return True
    except OSError:
        return False


def _answers_http(port: int) -> bool:
    """Whether an HTTP request to ``/`` gets any response (whatever its status)."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1) as sock:
            sock.sendall(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
            return sock.recv(16).startswith(b"HTTP/1.1 ")
    except OSError:
        return False


def _wait_until(predicate: Callable[[], bool], *, what: str, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out waiting for {what}")
        time.sleep(0.01)
