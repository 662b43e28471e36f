"""A quick run of ``benchmarks/`` (few requests, no wrk), so that the benchmark never rots.

Only the shape of the output is asserted: every row present, every number
finite and positive where it must be. Timings are never asserted.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from benchmarks.apps import APP_KINDS
from benchmarks.configs import CONFIGS
from benchmarks.realserver import parse_wrk
from benchmarks.report import render
from benchmarks.run import SCALING

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def result() -> dict[str, Any]:
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks", "--quick", "--no-server", "--json"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr
    parsed: dict[str, Any] = json.loads(done.stdout)
    return parsed


def positive(value: Any) -> bool:
    return isinstance(value, int | float) and math.isfinite(value) and value > 0


def finite(value: Any) -> bool:
    return isinstance(value, int | float) and math.isfinite(value)


def test_every_configuration_has_a_row_for_each_of_its_apps(result: dict[str, Any]) -> None:
    in_process = result["in_process"]
    assert set(in_process) == set(APP_KINDS)
    for kind in APP_KINDS:
        expected = [c.name for c in CONFIGS if kind in c.kinds]
        assert list(in_process[kind]) == expected


def test_in_process_rows_hold_positive_times_calls_and_finite_overheads(
    result: dict[str, Any],
) -> None:
    for rows in result["in_process"].values():
        for row in rows.values():
            for mode in ("sequential", "in_flight"):
                assert positive(row[mode]["us"])
                assert positive(row[mode]["wall_us"])
                assert finite(row[mode]["overhead_us"])
                assert all(positive(s) for s in row[mode]["samples_us"])
            assert positive(row["calls"])
            assert positive(row["memory_blocks"])
            assert positive(row["memory_bytes"])
            assert finite(row["extra_calls"])
            assert finite(row["extra_memory_bytes"])


def test_rows_are_compared_with_sentry_asgi_middleware(result: dict[str, Any]) -> None:
    raw = result["in_process"]["raw"]
    assert raw["sentry_asgi"]["sequential"]["vs_sentry"] == 1.0
    assert finite(raw["ours"]["sequential"]["vs_sentry"])
    assert finite(raw["ours_in_sentry"]["sequential"]["over_sentry_own_us"])


def test_the_event_row_really_sends_events_to_the_loopback_ingest(
    result: dict[str, Any],
) -> None:
    assert result["meta"]["event_envelopes_received_by_ingest"] > 0


def test_scaling_covers_every_dimension_and_value(result: dict[str, Any]) -> None:
    scaling = result["scaling"]
    assert set(scaling) == set(SCALING)
    for dimension, values in SCALING.items():
        assert [p["value"] for p in scaling[dimension]] == list(values)
        for point in scaling[dimension]:
            assert positive(point["bare_us"])
            assert positive(point["ours_us"])
            assert finite(point["overhead_us"])
            assert finite(point["sentry_asgi_overhead_us"])


def test_skipped_real_server_section_says_why(result: dict[str, Any]) -> None:
    assert result["server"] == {"skipped": "not requested (--no-server)"}


def test_targets_are_checked_against_the_run(result: dict[str, Any]) -> None:
    names = [t["target"] for t in result["targets"]]
    assert "raw app: our overhead (µs/request)" in names
    assert "raw app: extra Python calls per request" in names
    for target in result["targets"]:
        assert finite(target["value"])
        assert isinstance(target["met"], bool)


def test_table_shows_every_row_label(result: dict[str, Any]) -> None:
    text = render(result)
    for config in CONFIGS:
        if config.kinds:
            assert config.label in text
    assert "REAL SERVER: skipped: not requested (--no-server)" in text


WRK_OUTPUT = """\
Running 3s test @ http://127.0.0.1:8000/
  1 threads and 50 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency     1.45ms  210.00us   5.10ms   90.00%
    Req/Sec    34.50k     1.20k   36.00k    70.00%
  Latency Distribution
     50%  950.00us
     75%    1.52ms
     90%    1.70ms
     99%    2.95ms
  103500 requests in 3.00s, 14.02MB read
Requests/sec:  34500.12
Transfer/sec:      4.67MB
"""


def test_wrk_output_is_parsed_into_rate_and_latency_percentiles() -> None:
    parsed = parse_wrk(WRK_OUTPUT)
    assert parsed.requests_per_s == 34500.12
    assert parsed.p50_ms == pytest.approx(0.95)
    assert parsed.p99_ms == pytest.approx(2.95)


def test_wrk_run_with_error_responses_is_refused() -> None:
    with pytest.raises(ValueError, match="errors"):
        parse_wrk(WRK_OUTPUT + "  Non-2xx or 3xx responses: 12\n")
