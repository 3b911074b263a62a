"""Security settings (`environments.<env>.security`): the web ACL, API Gateway throttling, the login routes
both protect, and the execute-api endpoint.

The login routes are a setting of their own (`security.login_routes`). Left out, they are the login path
each API function of the catalog declares (`functions.<name>.post_traffic.login_path`, as the catalog
writes it): an environment that switches its post-traffic login check off (`environments.<env>.functions.
<name>.post_traffic.login_path: null`) keeps its throttling and WAF rule. `[]` protects no route.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any

# The reader's checks this parser uses; environment_parser.py's list is alike (both read settings alike).
from stacks.config.reader import (
    PATH_RE,
    Reader,
    boolean,
    choice,
    fail,
    int_in,
    list_of,
    pattern,
    positive_number,
)

WAF_RULE_NAME_RE = r"[A-Za-z0-9_-]{1,128}"
LOG_DESTINATION_RE = (
    r"arn:aws[a-z-]*:(logs:[a-z0-9-]+:\d{12}:log-group:aws-waf-logs-[A-Za-z0-9_./#-]+"
    r"|s3:::aws-waf-logs-[a-z0-9.-]+|firehose:[a-z0-9-]+:\d{12}:deliverystream/aws-waf-logs-[A-Za-z0-9_.-]+)"
)
HTTP_METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS")
# WAF's bounds for a rate-based rule's limit (requests per evaluation window, here 5 minutes).
WAF_MIN_RATE_LIMIT, WAF_MAX_RATE_LIMIT = 10, 2_000_000_000


@dataclass(frozen=True)
class MethodLimit:
    """A stricter API Gateway limit on one route (`path` as the client calls it, without the stage)."""

    path: str
    method: str
    rate_limit: float
    burst_limit: int

    @property
    def method_options_key(self) -> str:
        """StageOptions.method_options key: resource path, then the HTTP method."""
        return f"{self.path}/{self.method}"


@dataclass(frozen=True)
class ThrottleConfig:
    """API Gateway throttling: the stage's limit (all clients together), and stricter per-route limits.

    `login_rate_limit`/`login_burst_limit` apply to POST on every login route (`security.login_routes`,
    the route that spends a password hash per request); `method_limits` add any other route."""

    rate_limit: float = 100.0
    burst_limit: int = 200
    login_rate_limit: float = 5.0
    login_burst_limit: int = 10
    method_limits: tuple[MethodLimit, ...] = ()


@dataclass(frozen=True)
class WafConfig:
    """The regional WAFv2 web ACL on the API stage (stacks/constructs/waf.py)."""

    enabled: bool = False
    # Requests one client IP may send to the login routes in 5 minutes before WAF answers 429.
    login_rate_limit_per_5min: int = 100
    # Managed rules counted instead of blocked (e.g. SizeRestrictions_BODY for bodies over 8 KB).
    count_only_rules: tuple[str, ...] = ()
    # An existing `aws-waf-logs-*` destination (log group, bucket or Firehose stream); null = no WAF logs.
    log_destination_arn: str | None = None


@dataclass(frozen=True)
class SecuritySettings:
    waf: WafConfig = field(default_factory=WafConfig)
    throttle: ThrottleConfig = field(default_factory=ThrottleConfig)
    # Only with a custom domain of this stack's own API (no mapped_api): the execute-api URL stops answering.
    disable_execute_api_endpoint: bool = False
    # The routes throttled at the login limits and rate-limited per client by the WAF (module docstring).
    login_routes: tuple[str, ...] = ()

    @property
    def route_limits(self) -> tuple[MethodLimit, ...]:
        """Every throttled route: POST on each login route at the login limits (unless method_limits lists
        it), then the configured route limits."""
        t = self.throttle
        configured = {(m.path, m.method) for m in t.method_limits}
        return (
            *(
                MethodLimit(path, "POST", t.login_rate_limit, t.login_burst_limit)
                for path in self.login_routes
                if (path, "POST") not in configured
            ),
            *t.method_limits,
        )


def _parse_method_limits(env: str, key: str, value: Any) -> tuple[MethodLimit, ...]:
    if not isinstance(value, list):
        raise fail(env, key, value, "a list of {path, method, rate_limit, burst_limit} objects")
    out = []
    for i, item in enumerate(value):
        r = Reader(env, f"{key}[{i}].", item)
        limit = MethodLimit(
            path=r.get("path", "", pattern(env, PATH_RE, "a literal path like /api/v1/auth/login")),
            method=r.get("method", "", choice(env, HTTP_METHODS)),
            rate_limit=r.get("rate_limit", 0.0, positive_number(env, 10000)),
            burst_limit=r.get("burst_limit", 0, int_in(env, 1, 5000)),
        )
        r.finish([f.name for f in fields(MethodLimit)])
        for name in ("path", "method", "rate_limit", "burst_limit"):
            if not getattr(limit, name):
                raise fail(env, r.key(name), None, "required in every method_limits entry")
        out.append(limit)
    return tuple(out)


def _parse_login_routes(env: str, key: str, value: Any) -> tuple[str, ...]:
    routes = list_of(env, pattern(env, PATH_RE, "a literal path like /api/v1/auth/login"))(key, value)
    for i, path in enumerate(routes):
        if path in routes[:i]:
            raise fail(env, f"{key}[{i}]", path, "each route listed once")
    return routes


def parse_security(r: Reader, is_prod: bool) -> tuple[SecuritySettings, bool]:
    """The settings, and whether `login_routes` was written (else the catalog's login paths fill it in:
    stacks/config/load.py)."""
    e = r.env
    w = r.child("waf")
    dw = WafConfig()
    waf = WafConfig(
        enabled=w.get("enabled", is_prod, boolean(e)),
        login_rate_limit_per_5min=w.get(
            "login_rate_limit_per_5min",
            dw.login_rate_limit_per_5min,
            int_in(e, WAF_MIN_RATE_LIMIT, WAF_MAX_RATE_LIMIT),
        ),
        count_only_rules=w.get(
            "count_only_rules", (), list_of(e, pattern(e, WAF_RULE_NAME_RE, "a managed rule name"))
        ),
        log_destination_arn=w.get(
            "log_destination_arn",
            None,
            pattern(
                e, LOG_DESTINATION_RE, "the ARN of an aws-waf-logs-* log group, bucket or Firehose stream"
            ),
        ),
    )
    w.finish([f.name for f in fields(WafConfig)])
    t = r.child("throttle")
    dt = ThrottleConfig()
    throttle = ThrottleConfig(
        rate_limit=t.get("rate_limit", dt.rate_limit, positive_number(e, 10000)),
        burst_limit=t.get("burst_limit", dt.burst_limit, int_in(e, 1, 5000)),
        login_rate_limit=t.get("login_rate_limit", dt.login_rate_limit, positive_number(e, 10000)),
        login_burst_limit=t.get("login_burst_limit", dt.login_burst_limit, int_in(e, 1, 5000)),
        method_limits=t.get("method_limits", (), lambda k, v: _parse_method_limits(e, k, v)),
    )
    t.finish([f.name for f in fields(ThrottleConfig)])
    for name, rate, burst in [
        ("login_rate_limit", throttle.login_rate_limit, throttle.login_burst_limit),
        *((f"method_limits[{i}]", m.rate_limit, m.burst_limit) for i, m in enumerate(throttle.method_limits)),
    ]:
        # A route limit above the stage's never applies: the stage limit is reached first.
        if rate > throttle.rate_limit or burst > throttle.burst_limit:
            raise fail(
                e,
                t.key(name),
                f"{rate:g}/{burst}",
                f"a rate and burst at most the stage's {throttle.rate_limit:g}/{throttle.burst_limit}",
            )
    keys = [(m.path, m.method) for m in throttle.method_limits]
    for i, k in enumerate(keys):
        if k in keys[:i]:
            raise fail(e, t.key(f"method_limits[{i}]"), f"{k[1]} {k[0]}", "each route listed once")
    written = r.raw.get("login_routes") is not None
    result = SecuritySettings(
        waf=waf,
        throttle=throttle,
        disable_execute_api_endpoint=r.get("disable_execute_api_endpoint", False, boolean(e)),
        login_routes=r.get("login_routes", (), lambda k, v: _parse_login_routes(e, k, v)),
    )
    r.finish([f.name for f in fields(SecuritySettings)])
    return result, written
