"""OutboundPropagation: which hosts are targets, and which headers a call gets."""

from __future__ import annotations

import re

import pytest

from asgi_sentry_ctx import OutboundPropagation, business_context


class TestTargets:
    @pytest.mark.parametrize(
        ("targets", "host", "port"),
        [
            (["billing.internal"], "billing.internal", 443),
            (["Billing.Internal"], "billing.internal", 80),
            (["billing.internal:8443"], "billing.internal", 8443),
            ([".svc.cluster.local"], "orders.prod.svc.cluster.local", 80),
            (["10.0.0.7"], "10.0.0.7", 8000),
            (["[fd00::7]:8000"], "fd00::7", 8000),
            ([re.compile(r"[a-z]+\.internal")], "search.internal", 443),
        ],
        ids=["host", "case", "host-port", "domain", "ipv4", "ipv6-port", "pattern"],
    )
    def test_a_named_host_is_a_target(
        self, targets: list[str | re.Pattern[str]], host: str, port: int
    ) -> None:
        """Host names, host:port, .domain, IP addresses and patterns match as documented."""
        assert OutboundPropagation(targets).allows(host, port)

    @pytest.mark.parametrize(
        ("targets", "host", "port"),
        [
            ([], "billing.internal", 443),
            (["billing.internal"], "billing.internal.evil.example", 443),
            (["billing.internal"], "evil-billing.internal", 443),
            (["billing.internal:8443"], "billing.internal", 443),
            ([".svc.cluster.local"], "svc.cluster.local", 80),
            ([".svc.cluster.local"], "evilsvc.cluster.local", 80),
            ([re.compile(r"[a-z]+\.internal")], "search.internal.evil.example", 443),
        ],
        ids=[
            "default-empty",
            "suffix-of-host",
            "prefix-of-host",
            "other-port",
            "domain-itself",
            "domain-without-dot",
            "pattern-is-full-match",
        ],
    )
    def test_anything_else_is_not(
        self, targets: list[str | re.Pattern[str]], host: str, port: int
    ) -> None:
        """No substring match: a target never matches a host by accident."""
        assert not OutboundPropagation(targets).allows(host, port)

    @pytest.mark.parametrize(
        "target",
        ["*", "https://billing.internal", "billing.internal/api", "", "::1", 42],
        ids=["glob", "url", "path", "empty", "bare-ipv6", "not-a-string"],
    )
    def test_a_malformed_target_is_refused(self, target: object) -> None:
        """A target that is not a host, host:port, .domain or pattern raises at set-up."""
        with pytest.raises(ValueError, match="target"):
            OutboundPropagation([target])  # type: ignore[list-item]

    @pytest.mark.parametrize(
        "options",
        [{"header_name": "X-Request-ID\r\nX-Evil"}, {"business_headers": {"shop": "X Shop"}}],
        ids=["request-id-header", "business-header"],
    )
    def test_a_malformed_header_name_is_refused(self, options: dict[str, object]) -> None:
        """Header names are checked once, at set-up."""
        with pytest.raises(ValueError, match="not a valid header name"):
            OutboundPropagation(["billing.internal"], **options)  # type: ignore[arg-type]


def test_outside_any_request_a_target_gets_nothing() -> None:
    """No request, no headers: not even business fields in force outside requests."""
    outbound = OutboundPropagation(["billing.internal"], business_headers={"shop": "X-Shop"})
    with business_context(shop="s-1"):
        assert outbound.headers_for("billing.internal", 443) == ()
