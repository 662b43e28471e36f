"""The documented set-ups section of ``python -m benchmarks``: in-process rounds, uvicorn + wrk.

Per framework, one worker process per row of ``benchmarks.documented`` (the
SDK's integrations patch framework classes process-wide), all pinned to the
server core. A round asks every row's worker, in an order that rotates and
reverses from round to round, for the CPU time of N authenticated requests;
the overhead of a row is the median over the rounds of (row - bare) in the
same round, its spread the smallest and largest of those differences. Then
FastAPI's bare, sentry-sdk (traces 0.1) and ours (traces 0.1) set-ups are
served by uvicorn and driven by wrk in interleaved rounds. The targets of
issue 13 are checked on the medians.
"""

from __future__ import annotations

import statistics
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from benchmarks import realserver
from benchmarks.documented import ROW_BY_NAME, ROWS, setup_name
from benchmarks.documented_apps import PATH, TOKEN
from benchmarks.worker import WorkerProcess

Log = Callable[[str], None]

# (name, ours, sentry-sdk's, limit): our overhead over the SDK's, at the same sample rate.
OVERHEAD_TARGETS = (
    ("traces off", "ours_off", "sdk_off", 1 / 10),
    ("traces 0.1", "ours", "sdk", 1 / 5),
)
OVERHEAD_LIMITS = {target: limit for target, _, _, limit in OVERHEAD_TARGETS}
SERVER_FRAMEWORK = "fastapi"
SERVER_ROWS = ("bare", "sdk", "ours")
DROP_LIMIT = 1 / 3  # our req/s drop over sentry-sdk's
P99_LIMIT = 1.5  # our p99 over the bare app's
MIN_ROUNDS = 5  # a target holds on the medians of at least this many interleaved rounds


@dataclass(frozen=True)
class DocumentedSettings:
    """How much of the section to run, and how long."""

    frameworks: tuple[str, ...]
    rounds: int
    requests: int
    calls_requests: int
    server: bool
    server_rounds: int
    server_duration: float
    connections: int

    def as_json(self) -> dict[str, Any]:
        return {
            "frameworks": list(self.frameworks),
            "rows": [row.name for row in ROWS],
            "rounds": self.rounds,
            "requests_per_round": self.requests,
            "calls_requests": self.calls_requests,
            "server_framework": SERVER_FRAMEWORK if self.server else None,
            "server_rounds": self.server_rounds if self.server else 0,
            "server_duration_s": self.server_duration,
            "wrk_connections": self.connections,
        }


def run(settings: DocumentedSettings, log: Log) -> dict[str, Any]:
    """The whole section: every framework in process, FastAPI under uvicorn, the targets."""
    in_process = {fw: _framework(fw, settings, log) for fw in settings.frameworks}
    server = _server(settings, log)
    return {
        "settings": settings.as_json(),
        "in_process": in_process,
        "server": server,
        "targets": targets(in_process, server, settings.rounds, settings.server_rounds),
        "server_floor": server_floor(in_process, server),
    }


def _framework(framework: str, settings: DocumentedSettings, log: Log) -> dict[str, Any]:
    """One framework's rows: interleaved timing rounds, then calls per request."""
    core, _ = realserver.cores()
    log(f"documented set-ups ({framework}): starting {len(ROWS)} worker processes")
    workers = {row.name: WorkerProcess(setup_name(framework, row.name), core) for row in ROWS}
    try:
        for worker in workers.values():
            worker.wait_ready()
        described = {name: worker.ask(op="describe") for name, worker in workers.items()}
        samples = _rounds(framework, workers, settings, log)
        calls = {
            name: worker.ask(op="calls", n=settings.calls_requests)["calls"]
            for name, worker in workers.items()
        }
    finally:
        for worker in workers.values():
            worker.close()
    result = summarise(samples, calls)
    for name, description in described.items():
        result["rows"][name]["set_up"] = description
    return result


def _rounds(
    framework: str, workers: dict[str, WorkerProcess], settings: DocumentedSettings, log: Log
) -> dict[str, list[float]]:
    """CPU µs per request of every row, one sample per round, rows in a rotating order."""
    names = list(workers)
    samples: dict[str, list[float]] = {name: [] for name in names}
    for round_ in range(settings.rounds):
        log(f"documented set-ups ({framework}): round {round_ + 1}/{settings.rounds}")
        shift = round_ % len(names)
        order = names[shift:] + names[:shift]
        if round_ % 2:
            order.reverse()
        for name in order:
            samples[name].append(workers[name].ask(op="time", n=settings.requests)["us"])
    return samples


def summarise(samples: dict[str, list[float]], calls: dict[str, float]) -> dict[str, Any]:
    """Per row: median and spread of µs/request and of the paired overhead; calls; the ratios."""
    bare = samples["bare"]
    rows: dict[str, Any] = {}
    for name, values in samples.items():
        overheads = [v - b for v, b in zip(values, bare, strict=True)]
        rows[name] = {
            "label": ROW_BY_NAME[name].label,
            "us": statistics.median(values),
            "us_min": min(values),
            "us_max": max(values),
            "overhead_us": statistics.median(overheads),
            "overhead_min_us": min(overheads),
            "overhead_max_us": max(overheads),
            "samples_us": values,
            "calls": calls[name],
            "extra_calls": calls[name] - calls["bare"],
        }
    ratios = {target: _ratio(rows, samples, ours, sdk) for target, ours, sdk, _ in OVERHEAD_TARGETS}
    return {"rows": rows, "ratios": ratios, "transactions_floor": _transactions_floor(rows)}


def _transactions_floor(rows: dict[str, Any]) -> dict[str, Any]:
    """What sentry-sdk's sampled transactions alone cost per request, and their share of
    its traces-0.1 overhead: the lowest traces-0.1 ratio any layer that sends the SDK's
    transactions through its client can reach (its own work counted as nothing)."""
    sdk_over = rows["sdk"]["overhead_us"]
    cost = sdk_over - rows["sdk_off"]["overhead_us"]
    return {"us": cost, "ratio": cost / sdk_over if sdk_over > 0 else None}


def _ratio(
    rows: dict[str, Any], samples: dict[str, list[float]], ours: str, sdk: str
) -> dict[str, Any]:
    """Our overhead over sentry-sdk's: of the medians, and the range of the per-round ratios."""
    sdk_over = rows[sdk]["overhead_us"]
    value = rows[ours]["overhead_us"] / sdk_over if sdk_over > 0 else None
    bare = samples["bare"]
    per_round = [
        (o - b) / (s - b)
        for o, s, b in zip(samples[ours], samples[sdk], bare, strict=True)
        if s - b > 0
    ]
    return {
        "ours": ours,
        "sentry_sdk": sdk,
        "value": value,
        "min": min(per_round) if per_round else None,
        "max": max(per_round) if per_round else None,
    }


def _server(settings: DocumentedSettings, log: Log) -> dict[str, Any]:
    """FastAPI's bare, sentry-sdk and our set-ups under uvicorn, wrk on the other core."""
    if not settings.server:
        return {"skipped": "not requested (--no-server)"}
    if SERVER_FRAMEWORK not in settings.frameworks:
        return {"skipped": f"{SERVER_FRAMEWORK} not among --frameworks"}
    wrk, why_not = realserver.ensure_wrk(log)
    if wrk is None:
        log(f"documented set-ups, real server: skipped: {why_not}")
        return {"skipped": why_not}
    server_core, load_core = realserver.cores()
    names = [setup_name(SERVER_FRAMEWORK, row) for row in SERVER_ROWS]
    runs: dict[str, list[realserver.WrkResult]] = {row: [] for row in SERVER_ROWS}
    wrk_run = _wrk_runner(wrk, load_core, settings)
    log(f"documented set-ups, real server: starting {len(names)} uvicorn processes")
    with realserver.servers(names, "documented", server_core) as ports:
        for port in ports.values():  # warm-up: lazy stacks, caches, connections
            wrk_run(port, 1.0)
        for round_ in range(settings.server_rounds):
            log(f"documented set-ups, real server: round {round_ + 1}/{settings.server_rounds}")
            shift = round_ % len(SERVER_ROWS)
            for row in SERVER_ROWS[shift:] + SERVER_ROWS[:shift]:
                port = ports[setup_name(SERVER_FRAMEWORK, row)]
                runs[row].append(wrk_run(port, settings.server_duration))
    return {
        "skipped": None,
        "framework": SERVER_FRAMEWORK,
        "server_core": server_core,
        "wrk_core": load_core,
        "wrk_version": realserver.wrk_version(wrk),
        "rows": summarise_server(runs),
    }


def _wrk_runner(
    wrk: str, core: int, settings: DocumentedSettings
) -> Callable[[int, float], realserver.WrkResult]:
    """wrk against ``GET /me`` with the bearer token, pinned to ``core``."""

    def run_wrk(port: int, duration: float) -> realserver.WrkResult:
        return realserver.run_wrk(
            wrk,
            port,
            core=core,
            duration=duration,
            connections=settings.connections,
            path=PATH,
            headers={"Authorization": f"Bearer {TOKEN}"},
        )

    return run_wrk


def summarise_server(runs: dict[str, list[realserver.WrkResult]]) -> dict[str, Any]:
    """Per row: medians and spreads of requests/s and p99, the drop and p99 ratio vs bare."""
    rows: dict[str, Any] = {}
    for name, results in runs.items():
        rates = [r.requests_per_s for r in results]
        p99s = [r.p99_ms for r in results]
        rows[name] = {
            "label": ROW_BY_NAME[name].label,
            "requests_per_s": statistics.median(rates),
            "requests_per_s_min": min(rates),
            "requests_per_s_max": max(rates),
            "p50_ms": statistics.median([r.p50_ms for r in results]),
            "p99_ms": statistics.median(p99s),
            "p99_min_ms": min(p99s),
            "p99_max_ms": max(p99s),
            "samples": [vars(r) for r in results],
        }
    bare = rows["bare"]
    for row in rows.values():
        row["drop_pct"] = realserver.drop_pct(row["requests_per_s"], bare["requests_per_s"])
        row["p99_vs_bare"] = row["p99_ms"] / bare["p99_ms"]
    return rows


def targets(
    in_process: dict[str, Any], server: dict[str, Any], rounds: int, server_rounds: int
) -> list[dict[str, Any]]:
    """Issue 13's targets, checked on this run's medians (where this run has the numbers).

    A target is met only when its medians come from at least ``MIN_ROUNDS`` rounds.
    """
    checks: list[dict[str, Any]] = []
    for framework, result in in_process.items():
        for target, _, _, limit in OVERHEAD_TARGETS:
            ratio = result["ratios"][target]
            name = f"{framework}: our overhead / sentry-sdk's, {target}"
            spread = (ratio["min"], ratio["max"])
            checks.append(_check(name, ratio["value"], limit, rounds, spread))
    rows = server.get("rows") if not server.get("skipped") else None
    if rows:
        ours = rows["ours"]
        drop_ratio = _drop_ratio(ours["drop_pct"], rows)
        name = f"{SERVER_FRAMEWORK} under uvicorn: our req/s drop / sentry-sdk's"
        checks.append(_check(name, drop_ratio, DROP_LIMIT, server_rounds))
        name = f"{SERVER_FRAMEWORK} under uvicorn: our p99 / bare p99"
        checks.append(_check(name, ours["p99_vs_bare"], P99_LIMIT, server_rounds))
    return checks


def server_floor(in_process: dict[str, Any], server: dict[str, Any]) -> dict[str, Any] | None:
    """The req/s drop target's floor, estimated: the bare app's server time per request
    (1 / its req/s) plus the CPU time sentry-sdk's sampled transactions add per request
    in process, and that drop over sentry-sdk's. None without both measurements."""
    rows = server.get("rows") if not server.get("skipped") else None
    measured = in_process.get(SERVER_FRAMEWORK)
    if not rows or measured is None:
        return None
    transactions_us = measured["transactions_floor"]["us"]
    bare_us = 1e6 / rows["bare"]["requests_per_s"]
    rate = 1e6 / (bare_us + transactions_us)
    drop_pct = realserver.drop_pct(rate, rows["bare"]["requests_per_s"])
    return {
        "bare_us": bare_us,
        "transactions_us": transactions_us,
        "requests_per_s": rate,
        "drop_pct": drop_pct,
        "drop_ratio": _drop_ratio(drop_pct, rows),
    }


def _drop_ratio(drop_pct: float, rows: dict[str, Any]) -> float | None:
    """``drop_pct`` over sentry-sdk's drop (None when sentry-sdk's is none)."""
    sdk_drop = rows["sdk"]["drop_pct"]
    return drop_pct / sdk_drop if sdk_drop > 0 else None


def _check(
    name: str,
    value: float | None,
    limit: float,
    rounds: int,
    spread: Sequence[float | None] = (None, None),
) -> dict[str, Any]:
    """A target: met when the median-based value is known, within the limit, from enough rounds."""
    return {
        "target": name,
        "value": value,
        "limit": limit,
        "spread": list(spread),
        "rounds": rounds,
        "met": value is not None and value <= limit and rounds >= MIN_ROUNDS,
    }
