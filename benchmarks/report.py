"""Render a run's results as plain-text tables a person can read."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from benchmarks.documented_section import (
    DROP_LIMIT,
    MIN_ROUNDS,
    OVERHEAD_LIMITS,
    SERVER_FRAMEWORK,
)


def table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """Left-align the first column, right-align the others."""
    widths = [max(len(r[i]) for r in [headers, *rows]) for i in range(len(headers))]
    lines = []
    for row in [headers, *rows]:
        cells = [
            cell.ljust(widths[i]) if i == 0 else cell.rjust(widths[i]) for i, cell in enumerate(row)
        ]
        lines.append("  ".join(cells).rstrip())
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def _us(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def _signed(value: float, digits: int = 1) -> str:
    return f"{value:+.{digits}f}"


def _ratio(value: float | None) -> str:
    """``0.065`` -> ``1/15.4``: how many times smaller than SentryAsgiMiddleware's overhead."""
    if value is None:
        return "-"
    if value <= 0:
        return "~0"
    return f"1/{1 / value:.1f}" if value < 1 else f"{value:.2f}x"


def in_process_table(kind: str, rows: dict[str, Any], in_flight: int) -> str:
    headers = [
        f"{kind} app",
        "µs/req",
        "+µs",
        "vs Sentry",
        f"µs/req@{in_flight}",
        f"+µs@{in_flight}",
        "calls",
        "+calls",
        "+blocks",
        "+KiB",
    ]
    body = []
    for name, row in rows.items():
        seq, conc = row["sequential"], row["in_flight"]
        bare = name == "bare"
        body.append(
            [
                row["label"],
                _us(seq["us"]),
                "" if bare else _us(seq["overhead_us"]),
                "" if bare else _ratio(seq["vs_sentry"]),
                _us(conc["us"]),
                "" if bare else _us(conc["overhead_us"]),
                f"{row['calls']:.0f}",
                "" if bare else _signed(row["extra_calls"]),
                "" if bare else _signed(row["extra_memory_blocks"]),
                "" if bare else _signed(row["extra_memory_bytes"] / 1024, 2),
            ]
        )
    return table(headers, body)


def scaling_table(points: dict[str, Any]) -> str:
    # "bare" is the bare app with Sentry initialised: the app's own SDK calls
    # (breadcrumbs) cost the same with and without a middleware.
    headers = ["dimension", "value", "bare µs/req", "ours µs/req", "ours +µs", "SentryAsgi +µs"]
    body = []
    for dimension, series in points.items():
        for point in series:
            body.append(
                [
                    dimension,
                    str(point["value"]),
                    _us(point["bare_us"]),
                    _us(point["ours_us"]),
                    _us(point["overhead_us"]),
                    _us(point["sentry_asgi_overhead_us"]),
                ]
            )
    return table(headers, body)


def server_table(kind: str, rows: dict[str, Any]) -> str:
    headers = [f"{kind} app", "req/s", "drop", "p50 ms", "p99 ms", "p99/bare"]
    body = []
    for name, row in rows.items():
        bare = name == "bare"
        body.append(
            [
                row["label"],
                f"{row['requests_per_s']:,.0f}",
                "" if bare else f"{-row['drop_pct']:+.1f}%",
                f"{row['p50_ms']:.2f}",
                f"{row['p99_ms']:.2f}",
                "" if bare else f"{row['p99_vs_bare']:.2f}x",
            ]
        )
    return table(headers, body)


def _range(low: float | None, high: float | None, digits: int = 1) -> str:
    if low is None or high is None:
        return "-"
    return f"{low:.{digits}f}..{high:.{digits}f}"


def documented_table(framework: str, rows: dict[str, Any]) -> str:
    """One framework's documented set-ups: µs/request, overhead vs bare, their spreads, calls."""
    headers = [f"{framework}", "µs/req", "min..max", "+µs", "min..max", "calls", "+calls"]
    body = []
    for name, row in rows.items():
        bare = name == "bare"
        body.append(
            [
                row["label"],
                f"{row['us']:.1f}",
                _range(row["us_min"], row["us_max"]),
                "" if bare else f"{row['overhead_us']:+.1f}",
                "" if bare else _range(row["overhead_min_us"], row["overhead_max_us"]),
                f"{row['calls']:.0f}",
                "" if bare else _signed(row["extra_calls"], 0),
            ]
        )
    return table(headers, body)


def documented_server_table(framework: str, rows: dict[str, Any]) -> str:
    """FastAPI's documented set-ups under uvicorn: requests/s and p99, medians and spreads."""
    headers = [f"{framework}", "req/s", "min..max", "drop", "p50 ms", "p99 ms", "min..max", "/bare"]
    body = []
    for name, row in rows.items():
        bare = name == "bare"
        body.append(
            [
                row["label"],
                f"{row['requests_per_s']:,.0f}",
                _range(row["requests_per_s_min"], row["requests_per_s_max"], 0),
                "" if bare else f"{-row['drop_pct']:+.1f}%",
                f"{row['p50_ms']:.2f}",
                f"{row['p99_ms']:.2f}",
                _range(row["p99_min_ms"], row["p99_max_ms"], 2),
                "" if bare else f"{row['p99_vs_bare']:.2f}x",
            ]
        )
    return table(headers, body)


def _target_line(check: dict[str, Any]) -> str:
    mark = "PASS" if check["met"] else "MISS"
    value = "n/a" if check["value"] is None else f"{check['value']:.3g}"
    low, high = check.get("spread") or (None, None)
    spread = "" if low is None or high is None else f", rounds {low:.3g}..{high:.3g}"
    return f"  [{mark}] {check['target']}: {value} (limit {check['limit']:.3g}{spread})"


def render_documented(section: dict[str, Any]) -> list[str]:
    """The documented set-ups section: a table per framework, the server table, the targets."""
    settings = section["settings"]
    parts = [
        "",
        "DOCUMENTED SET-UPS (each framework's authenticated JSON route, GET /me, with Sentry "
        "set up as the docs show it; envelopes discarded;",
        f"in-process, µs/req = CPU time per request, median of {settings['rounds']} interleaved "
        f"rounds of {settings['requests_per_round']} requests, min..max over the rounds;",
        "+µs = overhead vs bare, paired per round; calls = Python function calls per request)",
    ]
    for framework, result in section["in_process"].items():
        parts += ["", documented_table(framework, result["rows"])]
    server = section["server"]
    parts.append("")
    if server.get("skipped"):
        parts.append(f"DOCUMENTED SET-UPS, REAL SERVER: skipped: {server['skipped']}")
    else:
        parts += [
            f"DOCUMENTED SET-UPS, REAL SERVER (uvicorn httptools+uvloop, 1 worker on core "
            f"{server['server_core']}; {server['wrk_version']} on core {server['wrk_core']}, "
            f"{settings['wrk_connections']} connections, {settings['server_duration_s']:.0f} s "
            f"runs; medians of {settings['server_rounds']} interleaved rounds)",
            "",
            documented_server_table(server["framework"], server["rows"]),
        ]
    parts += ["", "TARGETS (documented set-ups; value from the medians, rounds = per-round range)"]
    if any(check["rounds"] < MIN_ROUNDS for check in section["targets"]):
        parts.append(f"  (fewer than {MIN_ROUNDS} rounds: indicative only, no target can hold)")
    parts += [_target_line(check) for check in section["targets"]]
    return parts + _floor_lines(section)


def _floor_lines(section: dict[str, Any]) -> list[str]:
    """What sentry-sdk's sampled transactions alone cost, whoever sends them: the lowest
    value the traces-0.1 and the req/s drop targets can take through the SDK's client."""
    parts = [
        "",
        "FLOORS (sentry-sdk's sampled transactions alone, whoever sends them: its traces-0.1 "
        "row minus its traces-off row)",
    ]
    limit = OVERHEAD_LIMITS["traces 0.1"]
    for framework, result in section["in_process"].items():
        floor = result["transactions_floor"]
        ratio = "n/a" if floor["ratio"] is None else f"{floor['ratio']:.3g}"
        parts.append(
            f"  {framework}: {floor['us']:.1f} µs/request, {ratio} of sentry-sdk's traces-0.1 "
            f"overhead (limit for all of ours {limit:.3g})"
        )
    server = section.get("server_floor")
    if server is not None:
        ratio = "n/a" if server["drop_ratio"] is None else f"{server['drop_ratio']:.3g}"
        parts.append(
            f"  {SERVER_FRAMEWORK} under uvicorn, estimated: the bare app's "
            f"{server['bare_us']:.0f} µs/request plus those {server['transactions_us']:.1f} µs: "
            f"{server['requests_per_s']:,.0f} req/s, a drop of {server['drop_pct']:.1f} %, "
            f"{ratio} of sentry-sdk's (limit for all of ours {DROP_LIMIT:.3g})"
        )
    return parts


def render(result: dict[str, Any]) -> str:
    meta = result["meta"]
    versions = meta["versions"]
    parts = [
        f"asgi-sentry-ctx {versions['asgi-sentry-ctx']} benchmark: Python {meta['python']}, "
        f"sentry-sdk {versions['sentry-sdk']}, {meta['cpu']} ({meta['cores']} cores)",
    ]
    if not meta["settings"].get("documented_only"):
        parts += render_configurations(result)
    if result.get("documented"):
        parts += render_documented(result["documented"])
    sections = ", ".join(f"{k} {v:.0f} s" for k, v in meta.get("section_durations_s", {}).items())
    parts += ["", f"({meta.get('duration_s', '?')} s{': ' + sections if sections else ''})"]
    return "\n".join(parts)


def render_configurations(result: dict[str, Any]) -> list[str]:
    """The configurations' in-process tables, the scaling table and the real-server tables."""
    settings = result["meta"]["settings"]
    parts = [
        "",
        f"IN-PROCESS (fake ASGI server; µs/req = CPU time per request, median of "
        f"{settings['rounds']} interleaved rounds of {settings['requests_per_round']} requests;",
        "+µs = overhead vs bare in the same round; vs Sentry = overhead / SentryAsgiMiddleware's "
        "(traces off);",
        f"calls = Python function calls per request; +blocks/+KiB = memory a request holds while "
        f"{settings['in_flight']} are in flight, vs bare)",
    ]
    in_flight = settings["in_flight"]
    for kind, rows in result["in_process"].items():
        parts += ["", in_process_table(kind, rows, in_flight)]
    if result.get("scaling"):
        parts += [
            "",
            "SCALING (raw app, Sentry on with traces off in both columns; the app sets that many "
            "business fields / adds that many breadcrumbs per request; sequential unless "
            "in_flight; nothing captured)",
            "",
            scaling_table(result["scaling"]),
        ]
    server = result.get("server") or {}
    parts.append("")
    if server.get("skipped"):
        parts.append(f"REAL SERVER: skipped: {server['skipped']}")
    else:
        parts.append(
            f"REAL SERVER (uvicorn httptools+uvloop, 1 worker on core {server['server_core']}; "
            f"{server['wrk_version']} on core {server['wrk_core']}, "
            f"{settings['wrk_connections']} connections, {settings['server_duration_s']:.0f} s "
            f"runs; medians of {settings['server_rounds']} interleaved rounds)"
        )
        for kind in settings["apps"]:
            if kind in server:
                parts += ["", server_table(kind, server[kind])]
    if result.get("targets"):
        parts += ["", "TARGETS"]
        for check in result["targets"]:
            mark = "met" if check["met"] else "MISSED"
            parts.append(
                f"  [{mark}] {check['target']}: {check['value']:.3g} (limit {check['limit']:.3g})"
            )
    return parts
