"""Under a real server: uvicorn on one core, wrk on the other, on loopback.

For each app kind, one uvicorn process per configuration is started (pinned
to the server core with ``taskset``); rounds of ``wrk`` runs (pinned to the
load core) are interleaved across those servers, so drift hits every
configuration alike. Reported: medians of requests/s and of wrk's p50 and
p99 latency.
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1e3}


@dataclass(frozen=True)
class WrkResult:
    requests_per_s: float
    p50_ms: float
    p99_ms: float


def drop_pct(requests_per_s: float, bare_requests_per_s: float) -> float:
    """How many percent fewer requests/s than the bare app's."""
    return 100 * (1 - requests_per_s / bare_requests_per_s)


def ensure_wrk(log: Callable[[str], None]) -> tuple[str | None, str]:
    """Return wrk's path (installing Debian's package when missing), or ``None`` and why not."""
    found = shutil.which("wrk")
    if found:
        return found, ""
    apt = shutil.which("apt-get")
    if apt is None:
        return None, "wrk is not installed and apt-get is not available to install it"
    if os.geteuid() != 0:
        return None, "wrk is not installed, and installing it with apt-get needs root"
    log("wrk not found: installing Debian's package with apt-get ...")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    install = [apt, "install", "-y", "-qq", "wrk"]
    done = subprocess.run(install, capture_output=True, text=True, env=env)
    if done.returncode != 0:
        subprocess.run([apt, "update", "-qq"], capture_output=True, text=True, env=env)
        done = subprocess.run(install, capture_output=True, text=True, env=env)
    found = shutil.which("wrk")
    if found:
        return found, ""
    detail = (done.stderr or done.stdout).strip().splitlines()
    return None, "apt-get could not install wrk" + (f" ({detail[-1]})" if detail else "")


def cores() -> tuple[int, int]:
    """The core for the server and the core for wrk (the same one on a single-core machine)."""
    available = sorted(os.sched_getaffinity(0))
    return available[0], available[-1]


def _pinned(core: int, argv: Sequence[str]) -> list[str]:
    taskset = shutil.which("taskset")
    return [taskset, "-c", str(core), *argv] if taskset else list(argv)


def _pin_fallback(core: int) -> Callable[[], None] | None:
    if shutil.which("taskset"):
        return None
    return lambda: os.sched_setaffinity(0, {core})


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _wait_for_port(port: int, process: subprocess.Popen[bytes], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"the server on port {port} exited with {process.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    raise TimeoutError(f"the server on port {port} did not start in {timeout:.0f} s")


@contextmanager
def servers(names: Sequence[str], kind: str, core: int) -> Iterator[dict[str, int]]:
    """Start one pinned uvicorn per configuration; yield their ports by configuration name.

    ``kind`` is the app kind, or ``documented`` when ``names`` are documented set-ups.
    """
    env = {**os.environ, "PYTHONHASHSEED": "0"}
    processes: list[subprocess.Popen[bytes]] = []
    ports: dict[str, int] = {}
    try:
        for name in names:
            port = _free_port()
            argv = [sys.executable, "-m", "benchmarks.serve", name, kind, str(port)]
            process = subprocess.Popen(_pinned(core, argv), env=env, preexec_fn=_pin_fallback(core))
            processes.append(process)
            ports[name] = port
        for process, port in zip(processes, ports.values(), strict=True):
            _wait_for_port(port, process)
        yield ports
    finally:
        for process in processes:
            process.terminate()
        for process in processes:
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def run_wrk(
    wrk: str,
    port: int,
    *,
    core: int,
    duration: float,
    connections: int,
    path: str = "/",
    headers: Mapping[str, str] | None = None,
) -> WrkResult:
    """One wrk run of ``duration`` seconds against ``GET path`` (with ``headers``)."""
    argv = [wrk, "-t1", f"-c{connections}", f"-d{max(1, round(duration))}s", "--latency"]
    for name, value in (headers or {}).items():
        argv += ["-H", f"{name}: {value}"]
    argv.append(f"http://127.0.0.1:{port}{path}")
    done = subprocess.run(
        _pinned(core, argv),
        capture_output=True,
        text=True,
        check=True,
        preexec_fn=_pin_fallback(core),
    )
    return parse_wrk(done.stdout)


def wrk_version(wrk: str) -> str:
    """wrk's version line, without its copyright."""
    done = subprocess.run([wrk, "--version"], capture_output=True, text=True)
    text = (done.stdout or done.stderr).strip().splitlines()
    # "wrk debian/4.1.0-3+b2 [epoll] Copyright (C) 2012 Will Glozer"
    return text[0].split(" Copyright")[0] if text else "wrk (version unknown)"


def parse_wrk(output: str) -> WrkResult:
    """Requests/s and the p50/p99 latencies (ms) of ``wrk --latency`` output."""
    rate = re.search(r"Requests/sec:\s*([\d.]+)", output)
    p50 = re.search(r"^\s*50%\s+([\d.]+)(us|ms|s)\s*$", output, re.MULTILINE)
    p99 = re.search(r"^\s*99%\s+([\d.]+)(us|ms|s)\s*$", output, re.MULTILINE)
    errors = re.search(r"Non-2xx or 3xx responses:\s*(\d+)", output)
    if rate is None or p50 is None or p99 is None:
        raise ValueError(f"unexpected wrk output:\n{output}")
    if errors is not None:
        raise ValueError(f"the server answered {errors.group(1)} requests with errors")
    return WrkResult(
        requests_per_s=float(rate.group(1)),
        p50_ms=float(p50.group(1)) * _UNITS[p50.group(2)],
        p99_ms=float(p99.group(1)) * _UNITS[p99.group(2)],
    )
