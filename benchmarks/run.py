"""The benchmark run: in-process rounds, scaling, the real-server section, the targets,
then the documented set-ups (``benchmarks.documented_section``; ``--no-documented``
skips them, ``--documented-only`` runs them alone)."""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from contextlib import ExitStack
from dataclasses import dataclass
from importlib.metadata import version
from typing import Any

from asgi_sentry_ctx.testing import SentryIngest
from benchmarks import documented_section, realserver
from benchmarks.apps import APP_KINDS
from benchmarks.configs import BY_NAME, CONFIGS, REFERENCE, Config
from benchmarks.documented_apps import FRAMEWORKS
from benchmarks.documented_section import DocumentedSettings
from benchmarks.report import render
from benchmarks.worker import WorkerProcess

Log = Callable[[str], None]

SCALING: dict[str, tuple[int, ...]] = {
    "business_fields": (0, 10, 50),
    "breadcrumbs": (0, 10, 100),
    "headers": (8, 25, 100),
    "in_flight": (1, 10, 100, 1000),
}
# The event rows and the scaling section need the request to reach our layer
# directly; under a real server they would measure the loopback ingest.
SERVER_EXCLUDED = frozenset({"ours_event", "ours_event_sent"})


@dataclass(frozen=True)
class Settings:
    rounds: int
    requests: int
    in_flight: int
    calls_requests: int
    kinds: tuple[str, ...]
    configs: tuple[Config, ...]
    scaling: bool
    scaling_rounds: int
    server: bool
    server_rounds: int
    server_duration: float
    connections: int
    documented: DocumentedSettings | None  # None: the documented set-ups are skipped
    documented_only: bool

    def as_json(self) -> dict[str, Any]:
        return {
            "rounds": self.rounds,
            "requests_per_round": self.requests,
            "in_flight": self.in_flight,
            "calls_requests": self.calls_requests,
            "apps": list(self.kinds),
            "configurations": [c.name for c in self.configs],
            "scaling_rounds": self.scaling_rounds if self.scaling else 0,
            "server_rounds": self.server_rounds if self.server else 0,
            "server_duration_s": self.server_duration,
            "wrk_connections": self.connections,
            "documented": self.documented.as_json() if self.documented else None,
            "documented_only": self.documented_only,
        }


def worker_key(name: str, kind: str) -> str:
    """Which worker serves configuration ``name`` on app ``kind``.

    One worker per configuration; one per configuration *and app* where
    sentry-sdk's framework integrations are auto-enabled: the Starlette
    integration patches, for the whole process, the class of every middleware
    a Starlette app adds (ours included), which must not follow ours to the
    raw app's row.
    """
    return f"{name}/{kind}" if BY_NAME[name].auto_integrations else name


def _median(values: Sequence[float]) -> float:
    return statistics.median(values)


def _summary(samples: list[float], bare: list[float]) -> dict[str, Any]:
    # Overhead: the median of per-round differences (same round, same drift).
    return {
        "us": _median(samples),
        "overhead_us": _median([s - b for s, b in zip(samples, bare, strict=True)]),
        "samples_us": samples,
    }


def _paired_median(samples: list[float], reference: list[float]) -> float:
    return _median([s - r for s, r in zip(samples, reference, strict=True)])


def in_process(
    settings: Settings, workers: dict[str, WorkerProcess], ingest: SentryIngest | None, log: Log
) -> dict[str, Any]:
    modes = {"sequential": 1, "in_flight": settings.in_flight}
    samples: dict[tuple[str, str, str], list[float]] = {}
    walls: dict[tuple[str, str, str], list[float]] = {}
    names = [c.name for c in settings.configs]
    for round_ in range(settings.rounds):
        log(f"in-process round {round_ + 1}/{settings.rounds}")
        # Rotate (and every other round reverse) the order, so no configuration is always first.
        shift = round_ % len(names)
        order = names[shift:] + names[:shift]
        if round_ % 2:
            order.reverse()
        for mode, in_flight in modes.items():
            for kind in settings.kinds:
                for name in order:
                    if kind not in BY_NAME[name].kinds:
                        continue
                    reply = workers[worker_key(name, kind)].ask(
                        op="time", kind=kind, n=settings.requests, in_flight=in_flight
                    )
                    samples.setdefault((kind, mode, name), []).append(reply["us"])
                    walls.setdefault((kind, mode, name), []).append(reply["wall_us"])
                    if ingest is not None and BY_NAME[name].send_events:
                        ingest.clear()  # keep the ingest's memory flat
    results: dict[str, Any] = {}
    for kind in settings.kinds:
        rows: dict[str, Any] = {}
        for name in names:
            config = BY_NAME[name]
            if kind not in config.kinds:
                continue
            log(f"counting calls and memory: {kind} / {name}")
            row: dict[str, Any] = {"label": config.label}
            for mode in modes:
                row[mode] = _summary(samples[(kind, mode, name)], samples[(kind, mode, "bare")])
                row[mode]["wall_us"] = _median(walls[(kind, mode, name)])
                if name in ("ours_in_sentry", "ours_around_sentry") and "sentry_own" in names:
                    # What our layer adds on top of sentry-sdk's own, paired per round.
                    row[mode]["over_sentry_own_us"] = _paired_median(
                        samples[(kind, mode, name)], samples[(kind, mode, "sentry_own")]
                    )
            worker = workers[worker_key(name, kind)]
            row["calls"] = worker.ask(op="calls", kind=kind, n=settings.calls_requests)["calls"]
            memory = worker.ask(op="memory", kind=kind, in_flight=settings.in_flight)
            row["memory_blocks"] = memory["blocks"]
            row["memory_bytes"] = memory["bytes"]
            rows[name] = row
        bare = rows["bare"]
        reference = rows.get(REFERENCE)
        for row in rows.values():
            row["extra_calls"] = row["calls"] - bare["calls"]
            row["extra_memory_blocks"] = row["memory_blocks"] - bare["memory_blocks"]
            row["extra_memory_bytes"] = row["memory_bytes"] - bare["memory_bytes"]
            for mode in modes:
                ref = reference[mode]["overhead_us"] if reference else None
                over = row[mode]["overhead_us"]
                row[mode]["vs_sentry"] = over / ref if ref and ref > 0 else None
        results[kind] = rows
    return results


def scaling(settings: Settings, workers: dict[str, WorkerProcess], log: Log) -> dict[str, Any]:
    # SentryAsgiMiddleware is measured alongside when it is part of the run, for scale.
    names = [n for n in ("bare_sentry", "ours", REFERENCE) if n in workers]  # raw app only
    samples: dict[tuple[str, int, str], list[float]] = {}
    for round_ in range(settings.scaling_rounds):
        log(f"scaling round {round_ + 1}/{settings.scaling_rounds}")
        for dimension, values in SCALING.items():
            for value in values:
                for name in names if round_ % 2 == 0 else reversed(names):
                    request: dict[str, Any] = {"op": "time", "kind": "raw", "n": settings.requests}
                    if dimension == "in_flight":
                        request["in_flight"] = value
                        # Enough requests for several full windows at every level.
                        request["n"] = max(settings.requests, 3 * value)
                    else:
                        request[dimension] = value
                    reply = workers[name].ask(**request)
                    samples.setdefault((dimension, value, name), []).append(reply["us"])
    results: dict[str, Any] = {}
    for dimension, values in SCALING.items():
        points = []
        for value in values:
            bare = samples[(dimension, value, "bare_sentry")]
            ours = _summary(samples[(dimension, value, "ours")], bare)
            point = {
                "value": value,
                "bare_us": _median(bare),
                "ours_us": ours["us"],
                "overhead_us": ours["overhead_us"],
                "sentry_asgi_overhead_us": None,
            }
            if REFERENCE in names:
                point["sentry_asgi_overhead_us"] = _paired_median(
                    samples[(dimension, value, REFERENCE)], bare
                )
            points.append(point)
        results[dimension] = points
    return results


def real_server(settings: Settings, log: Log) -> dict[str, Any]:
    if not settings.server:
        return {"skipped": "not requested (--no-server)"}
    wrk, why_not = realserver.ensure_wrk(log)
    if wrk is None:
        log(f"real-server section skipped: {why_not}")
        return {"skipped": why_not}
    server_core, load_core = realserver.cores()
    configs = [c for c in settings.configs if c.name not in SERVER_EXCLUDED]
    results: dict[str, Any] = {
        "skipped": None,
        "server_core": server_core,
        "wrk_core": load_core,
        "wrk_version": realserver.wrk_version(wrk),
    }
    for kind in settings.kinds:
        kind_configs = [c for c in configs if kind in c.kinds]
        log(f"real server ({kind}): starting {len(kind_configs)} uvicorn processes")
        runs: dict[str, list[realserver.WrkResult]] = {c.name: [] for c in kind_configs}
        with realserver.servers([c.name for c in kind_configs], kind, server_core) as ports:
            for port in ports.values():  # warm-up: lazy stacks, caches, connections
                realserver.run_wrk(
                    wrk, port, core=load_core, duration=1, connections=settings.connections
                )
            for round_ in range(settings.server_rounds):
                log(f"real server ({kind}) round {round_ + 1}/{settings.server_rounds}")
                names = list(ports)
                shift = round_ % len(names)
                for name in names[shift:] + names[:shift]:
                    runs[name].append(
                        realserver.run_wrk(
                            wrk,
                            ports[name],
                            core=load_core,
                            duration=settings.server_duration,
                            connections=settings.connections,
                        )
                    )
        rows: dict[str, Any] = {}
        for name, results_ in runs.items():
            rows[name] = {
                "label": BY_NAME[name].label,
                "requests_per_s": _median([r.requests_per_s for r in results_]),
                "p50_ms": _median([r.p50_ms for r in results_]),
                "p99_ms": _median([r.p99_ms for r in results_]),
                "samples": [vars(r) for r in results_],
            }
        bare = rows["bare"]
        for row in rows.values():
            row["drop_pct"] = realserver.drop_pct(row["requests_per_s"], bare["requests_per_s"])
            row["p99_vs_bare"] = row["p99_ms"] / bare["p99_ms"]
        results[kind] = rows
    return results


def targets(result: dict[str, Any]) -> list[dict[str, Any]]:
    """The issue's targets, checked against this run's numbers (where this run has them)."""
    checks: list[dict[str, Any]] = []
    raw = result["in_process"].get("raw", {})
    if "ours" in raw and "bare" in raw:
        ours = raw["ours"]
        checks.append(
            _check("raw app: our overhead (µs/request)", ours["sequential"]["overhead_us"], 5.0)
        )
        if ours["sequential"]["vs_sentry"] is not None:
            checks.append(
                _check(
                    "raw app: our overhead / SentryAsgiMiddleware's",
                    ours["sequential"]["vs_sentry"],
                    1 / 15,
                )
            )
        checks.append(_check("raw app: extra Python calls per request", ours["extra_calls"], 20))
    for kind, rows in result["in_process"].items():
        for name in ("ours_in_sentry", "ours_around_sentry"):
            if name in rows and "sentry_own" in rows:
                added = rows[name]["sequential"]["over_sentry_own_us"]
                where = "inside" if name == "ours_in_sentry" else "around"
                checks.append(
                    _check(f"{kind} app: ours {where} sentry-sdk's own (µs added)", added, 3.0)
                )
    server = result.get("server", {})
    raw_server = server.get("raw") if not server.get("skipped") else None
    if raw_server and "ours" in raw_server:
        ours_s = raw_server["ours"]
        if "correlation_id" in raw_server:
            checks.append(
                _check(
                    "real server: our req/s drop vs asgi-correlation-id's (%)",
                    ours_s["drop_pct"],
                    raw_server["correlation_id"]["drop_pct"],
                )
            )
        checks.append(_check("real server: our p99 / bare p99", ours_s["p99_vs_bare"], 1.5))
    return checks


def _check(name: str, value: float, limit: float) -> dict[str, Any]:
    return {"target": name, "value": value, "limit": limit, "met": value <= limit}


def parse_args(argv: Sequence[str] | None) -> tuple[Settings, bool, str | None]:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks",
        description="Per-request overhead of asgi-sentry-ctx, sentry-sdk and peers.",
    )
    parser.add_argument("--rounds", type=int, default=9, help="interleaved in-process rounds")
    parser.add_argument("--requests", type=int, default=2000, help="requests per round and row")
    parser.add_argument("--in-flight", type=int, default=100, help="concurrent requests")
    parser.add_argument(
        "--calls-requests", type=int, default=500, help="requests profiled for call counts"
    )
    parser.add_argument(
        "--apps", default=",".join(APP_KINDS), help="app kinds: raw,starlette,fastapi"
    )
    parser.add_argument(
        "--configs", default="", help="only these configurations (bare is always included)"
    )
    parser.add_argument("--no-scaling", action="store_true", help="skip the scaling section")
    parser.add_argument("--scaling-rounds", type=int, default=5)
    parser.add_argument("--no-server", action="store_true", help="skip uvicorn + wrk")
    parser.add_argument("--server-rounds", type=int, default=5)
    parser.add_argument("--server-duration", type=float, default=3.0, help="seconds per wrk run")
    parser.add_argument("--connections", type=int, default=50, help="wrk connections")
    parser.add_argument(
        "--no-documented", action="store_true", help="skip the documented set-ups section"
    )
    parser.add_argument(
        "--documented-only",
        action="store_true",
        help="run only the documented set-ups section (each framework as its docs set it up)",
    )
    parser.add_argument(
        "--frameworks",
        default=",".join(FRAMEWORKS),
        help="documented set-ups: starlette,fastapi,litestar,quart",
    )
    parser.add_argument(
        "--documented-connections",
        type=int,
        default=32,
        help="wrk connections for the documented set-ups (FastAPI under uvicorn)",
    )
    parser.add_argument("--quick", action="store_true", help="a smoke run: few requests, one round")
    parser.add_argument("--json", action="store_true", help="print JSON instead of tables")
    parser.add_argument("--json-file", default=None, help="also write the JSON to this file")
    args = parser.parse_args(argv)
    kinds = tuple(k for k in args.apps.split(",") if k)
    unknown = set(kinds) - set(APP_KINDS)
    if unknown:
        parser.error(f"unknown app kinds: {', '.join(sorted(unknown))}")
    wanted = {n for n in args.configs.split(",") if n}
    if wanted - set(BY_NAME):
        parser.error(f"unknown configurations: {', '.join(sorted(wanted - set(BY_NAME)))}")
    if wanted:
        wanted |= {"bare"}
        if not args.no_scaling:
            wanted |= {"ours", "bare_sentry"}
    configs = tuple(c for c in CONFIGS if not wanted or c.name in wanted)
    frameworks = tuple(f for f in args.frameworks.split(",") if f)
    if set(frameworks) - set(FRAMEWORKS):
        parser.error(f"unknown frameworks: {', '.join(sorted(set(frameworks) - set(FRAMEWORKS)))}")
    if args.no_documented and args.documented_only:
        parser.error("--no-documented and --documented-only exclude each other")
    if args.quick:
        args.rounds, args.requests, args.calls_requests = 1, 20, 20
        args.scaling_rounds, args.server_rounds, args.server_duration = 1, 1, 1.0
    settings = Settings(
        rounds=args.rounds,
        requests=args.requests,
        in_flight=args.in_flight,
        calls_requests=args.calls_requests,
        kinds=kinds,
        configs=configs,
        scaling=not args.no_scaling,
        scaling_rounds=args.scaling_rounds,
        server=not args.no_server,
        server_rounds=args.server_rounds,
        server_duration=args.server_duration,
        connections=args.connections,
        documented=None
        if args.no_documented
        else DocumentedSettings(
            frameworks=frameworks,
            rounds=args.rounds,
            requests=args.requests,
            calls_requests=args.calls_requests,
            server=not args.no_server,
            server_rounds=args.server_rounds,
            server_duration=args.server_duration,
            connections=args.documented_connections,
        ),
        documented_only=args.documented_only,
    )
    return settings, args.json, args.json_file


def main(argv: Sequence[str] | None = None) -> int:
    settings, as_json, json_file = parse_args(argv)

    def log(message: str) -> None:
        print(f"[bench] {message}", file=sys.stderr, flush=True)

    started = time.time()
    result: dict[str, Any] = {"meta": _meta(settings)}
    durations: dict[str, float] = {}
    if settings.documented_only:
        result.update(in_process={}, scaling=None)
        result["server"] = {"skipped": "not requested (--documented-only)"}
    else:
        mark = time.time()
        configurations(settings, result, log)
        durations["configurations"] = round(time.time() - mark, 1)
        mark = time.time()
        result["server"] = real_server(settings, log)
        durations["real_server"] = round(time.time() - mark, 1)
    result["targets"] = targets(result)
    if settings.documented is not None:
        mark = time.time()
        result["documented"] = documented_section.run(settings.documented, log)
        durations["documented"] = round(time.time() - mark, 1)
    result["meta"]["duration_s"] = round(time.time() - started, 1)
    result["meta"]["section_durations_s"] = durations
    if json_file:
        with open(json_file, "w") as out:
            json.dump(result, out, indent=2)
    if as_json:
        print(json.dumps(result, indent=2))
    else:
        print(render(result))
    return 0


def configurations(settings: Settings, result: dict[str, Any], log: Log) -> None:
    """The configurations' in-process rows and the scaling section, into ``result``."""
    server_core, _ = realserver.cores()
    with ExitStack() as stack:
        ingest = None
        if any(c.send_events for c in settings.configs):
            # The event row posts to it; it lives in this process, off the workers' core.
            ingest = stack.enter_context(SentryIngest())
        keys = {worker_key(c.name, kind): c for c in settings.configs for kind in settings.kinds}
        log(f"starting {len(keys)} worker processes")
        workers = {
            key: WorkerProcess(c.name, server_core, ingest.dsn if ingest else None)
            for key, c in keys.items()
        }
        try:
            for worker in workers.values():
                worker.wait_ready()
            result["in_process"] = in_process(settings, workers, ingest, log)
            result["scaling"] = scaling(settings, workers, log) if settings.scaling else None
            if ingest is not None:
                result["meta"]["event_envelopes_received_by_ingest"] = ingest.requests
        finally:
            for worker in workers.values():
                worker.close()


def _meta(settings: Settings) -> dict[str, Any]:
    versions: dict[str, str | None] = {}
    for package in (
        "asgi-sentry-ctx",
        "sentry-sdk",
        "starlette",
        "fastapi",
        "uvicorn",
        "httptools",
        "uvloop",
        "litestar",
        "quart",
        "quart-auth",
        "asgi-correlation-id",
        "starlette-context",
    ):
        try:
            versions[package] = version(package)
        except Exception:
            versions[package] = None
    return {
        "python": platform.python_version(),
        "implementation": platform.python_implementation(),
        "machine": platform.machine(),
        "cpu": _cpu_model(),
        "cores": len(os.sched_getaffinity(0)),
        "versions": versions,
        "settings": settings.as_json(),
        "started": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
    }


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as info:
            for line in info:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"
