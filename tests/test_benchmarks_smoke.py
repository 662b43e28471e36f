"""A quick run of ``benchmarks/`` (few requests, no wrk), so that the benchmark never rots.

Only the shape of the output is asserted: every row present, every number
finite and positive where it must be. Timings are never asserted. The
configurations and the documented set-ups run as two separate quick runs.
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
from benchmarks.documented import ROWS
from benchmarks.documented_apps import FRAMEWORKS
from benchmarks.documented_section import server_floor, summarise, summarise_server, targets
from benchmarks.realserver import WrkResult, parse_wrk
from benchmarks.report import render
from benchmarks.run import SCALING

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def result() -> dict[str, Any]:
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks", "--quick", "--no-server", "--no-documented", "--json"],
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


@pytest.fixture(scope="module")
def documented() -> dict[str, Any]:
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "benchmarks",
            "--documented-only",
            "--quick",
            "--no-server",
            "--json",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr
    parsed: dict[str, Any] = json.loads(done.stdout)
    return parsed


class TestDocumentedSetUps:
    """The documented set-ups section: every framework, every row, as the docs set it up."""

    def test_every_framework_has_every_row_in_order(self, documented: dict[str, Any]) -> None:
        """Each framework's table lists bare, sentry-sdk, ours and asgi-correlation-id rows."""
        in_process = documented["documented"]["in_process"]
        assert list(in_process) == list(FRAMEWORKS)
        for result in in_process.values():
            assert list(result["rows"]) == [row.name for row in ROWS]

    def test_rows_hold_positive_times_and_calls_and_finite_spreads(
        self, documented: dict[str, Any]
    ) -> None:
        """Times and calls are positive; overheads and their min..max spreads are finite."""
        for result in documented["documented"]["in_process"].values():
            for row in result["rows"].values():
                assert all(positive(row[key]) for key in ("us", "us_min", "us_max", "calls"))
                assert row["us_min"] <= row["us"] <= row["us_max"]
                assert all(
                    finite(row[key])
                    for key in ("overhead_us", "overhead_min_us", "overhead_max_us", "extra_calls")
                )
                assert len(row["samples_us"]) == documented["documented"]["settings"]["rounds"]

    def test_each_row_is_the_set_up_its_label_names(self, documented: dict[str, Any]) -> None:
        """Authenticated 200s; Sentry off only in bare; the SDK's framework integration in the
        sentry-sdk rows; a request ID on the responses of ours and asgi-correlation-id."""
        for framework, result in documented["documented"]["in_process"].items():
            rows = result["rows"]
            for row in rows.values():
                assert row["set_up"]["status"] == 200
            assert not rows["bare"]["set_up"]["sentry_active"]
            for name in ("sdk", "sdk_off", "correlation_id"):
                assert framework in rows[name]["set_up"]["integrations"]
                assert "logging" in rows[name]["set_up"]["integrations"]
            assert rows["sdk"]["set_up"]["traces_sample_rate"] == 0.1
            assert rows["sdk_off"]["set_up"]["traces_sample_rate"] is None
            for name in ("ours", "ours_off", "correlation_id"):
                assert "x-request-id" in rows[name]["set_up"]["response_headers"]
            assert "x-request-id" not in rows["sdk"]["set_up"]["response_headers"]

    def test_ratio_targets_are_checked_for_every_framework(
        self, documented: dict[str, Any]
    ) -> None:
        """Two ratio targets per framework, each with a verdict; no server target without wrk."""
        checks = documented["documented"]["targets"]
        assert [c["target"] for c in checks] == [
            f"{framework}: our overhead / sentry-sdk's, {target}"
            for framework in FRAMEWORKS
            for target in ("traces off", "traces 0.1")
        ]
        for check in checks:
            assert check["value"] is None or finite(check["value"])
            assert check["met"] is False  # one round: no target can hold

    def test_skipped_real_server_says_why(self, documented: dict[str, Any]) -> None:
        """Without --no-server's wrk run the section says it was not requested."""
        assert documented["documented"]["server"] == {"skipped": "not requested (--no-server)"}
        assert documented["server"] == {"skipped": "not requested (--documented-only)"}

    def test_report_shows_every_framework_row_and_verdict(self, documented: dict[str, Any]) -> None:
        """The text report has the section, each row's label and a PASS or MISS per target."""
        text = render(documented)
        assert "DOCUMENTED SET-UPS" in text
        for row in ROWS:
            assert row.label in text
        verdicts = [line for line in text.splitlines() if "[PASS]" in line or "[MISS]" in line]
        assert len(verdicts) == len(documented["documented"]["targets"])
        assert "IN-PROCESS" not in text  # --documented-only: no configurations tables

    def test_report_shows_each_framework_transactions_floor(
        self, documented: dict[str, Any]
    ) -> None:
        """Under FLOORS, one line per framework: what sentry-sdk's transactions alone cost."""
        text = render(documented)
        floors = text.split("FLOORS", 1)[1].splitlines()[1:]
        for framework in documented["documented"]["in_process"]:
            assert any(line.startswith(f"  {framework}: ") for line in floors)
        assert documented["documented"]["server_floor"] is None  # no server run: no estimate


def test_documented_overheads_are_paired_per_round() -> None:
    """Overhead is the median of per-round differences to bare; the spread their min..max."""
    samples = {row.name: [100.0, 110.0, 120.0] for row in ROWS}
    samples["sdk"] = [300.0, 290.0, 340.0]  # +200, +180, +220
    samples["ours"] = [120.0, 150.0, 140.0]  # +20, +40, +20
    calls = {row.name: 10.0 for row in ROWS}
    result = summarise(samples, calls)
    assert result["rows"]["sdk"]["overhead_us"] == 200.0
    assert result["rows"]["sdk"]["overhead_min_us"] == 180.0
    assert result["rows"]["sdk"]["overhead_max_us"] == 220.0
    ratio = result["ratios"]["traces 0.1"]
    assert ratio["value"] == pytest.approx(20 / 200)
    assert (ratio["min"], ratio["max"]) == (pytest.approx(20 / 220), pytest.approx(40 / 180))
    assert result["ratios"]["traces off"]["value"] is None  # sentry-sdk's overhead is 0 here


def test_documented_transactions_floor_is_the_sdk_traced_row_minus_its_untraced_row() -> None:
    """What sentry-sdk's sampled transactions alone cost; their share of its traces-0.1 cost."""
    samples = {row.name: [100.0, 100.0, 100.0] for row in ROWS}
    samples["sdk"] = [300.0, 300.0, 300.0]  # +200
    samples["sdk_off"] = [250.0, 250.0, 250.0]  # +150
    floor = summarise(samples, {row.name: 10.0 for row in ROWS})["transactions_floor"]
    assert floor == {"us": 50.0, "ratio": pytest.approx(50 / 200)}


def test_documented_server_floor_adds_the_transactions_to_the_bare_server_time() -> None:
    """The drop target's floor: bare's time per request plus the transactions' in-process cost."""
    runs = {
        "bare": [WrkResult(10_000.0, 3.0, 8.0)],  # 100 µs per request
        "sdk": [WrkResult(4_000.0, 8.0, 50.0)],  # -60 %
        "ours": [WrkResult(8_500.0, 4.0, 13.0)],
    }
    in_process = {"fastapi": {"transactions_floor": {"us": 25.0, "ratio": 0.3}}}
    floor = server_floor(in_process, {"skipped": None, "rows": summarise_server(runs)})
    assert floor is not None
    assert floor["requests_per_s"] == pytest.approx(8_000.0)  # 1 / 125 µs
    assert floor["drop_pct"] == pytest.approx(20.0)
    assert floor["drop_ratio"] == pytest.approx(20 / 60)
    assert server_floor(in_process, {"skipped": "no wrk"}) is None


def test_documented_server_targets_compare_drops_and_p99() -> None:
    """The req/s drop is compared with sentry-sdk's (at most 1/3), the p99 with bare's (1.5x)."""
    runs = {
        "bare": [WrkResult(10_000.0, 3.0, 8.0)],
        "sdk": [WrkResult(4_000.0, 8.0, 50.0)],  # -60 %
        "ours": [WrkResult(8_500.0, 4.0, 13.0)],  # -15 %: 1/4 of the SDK's drop; p99 1.625x
    }
    checks = targets({}, {"skipped": None, "rows": summarise_server(runs)}, 5, 5)
    assert [(c["value"], c["met"]) for c in checks] == [
        (pytest.approx(0.25), True),
        (pytest.approx(13 / 8), False),
    ]


def test_documented_targets_need_five_rounds() -> None:
    """A target whose value is within its limit is not met from fewer than 5 rounds."""
    runs = {
        "bare": [WrkResult(10_000.0, 3.0, 8.0)],
        "sdk": [WrkResult(4_000.0, 8.0, 50.0)],
        "ours": [WrkResult(9_000.0, 3.5, 9.0)],
    }
    checks = targets({}, {"skipped": None, "rows": summarise_server(runs)}, 5, 4)
    assert [c["value"] <= c["limit"] for c in checks] == [True, True]
    assert [c["met"] for c in checks] == [False, False]
