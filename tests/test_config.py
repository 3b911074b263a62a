"""Configuration: cdk.json's environments parse into typed objects; every bad value stops synth with a
message naming the environment, the key, the value and what is allowed."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest

from stacks.config import (
    LOG_RETENTION_DAYS,
    ConfigError,
    CustomCanary,
    CustomDomainSettings,
    parse_environment,
    parse_environments,
)

CDK_JSON = Path(__file__).resolve().parents[1] / "cdk.json"


def real_environments() -> dict[str, Any]:
    return json.loads(CDK_JSON.read_text())["context"]["environments"]


def test_committed_cdk_json_parses_with_the_documented_defaults() -> None:
    envs = parse_environments(real_environments())
    assert set(envs) == {"staging", "prod"}
    prod, staging = envs["prod"], envs["staging"]
    assert prod.stack_name == "credmate-backend-prod"
    assert staging.stack_name == "credmate-backend-staging"
    assert prod.termination_protection is True
    assert prod.deployment.config == "Canary10Percent5Minutes"
    assert staging.deployment.config == "AllAtOnce"
    assert prod.function.memory_mb == 1024 and prod.function.timeout_seconds == 60
    assert prod.function.runtime == "python3.11"
    assert prod.cors_origins == ("https://credentialmate.com",)


def test_empty_block_takes_defaults_per_environment() -> None:
    prod = parse_environment("prod", {})
    staging = parse_environment("staging", {})
    assert prod.account is None and prod.region is None  # environment-agnostic synth
    assert prod.termination_protection and not staging.termination_protection
    assert prod.deployment.config == "Canary10Percent5Minutes"
    assert staging.deployment.config == "AllAtOnce"
    assert prod.cors_origins == ("https://credentialmate.com",)
    assert prod.log_retention_days == 30


def test_security_defaults_and_committed_values() -> None:
    prod, staging = parse_environment("prod", {}), parse_environment("staging", {})
    # The web ACL is on by default in prod only; both stages are always throttled.
    assert prod.security.waf.enabled and not staging.security.waf.enabled
    for cfg in (prod, staging):
        t = cfg.security.throttle
        assert t.rate_limit > 0 and t.burst_limit > 0
        assert t.login_rate_limit < t.rate_limit and t.login_burst_limit < t.burst_limit
        assert cfg.security.disable_execute_api_endpoint is False
    committed = parse_environments(real_environments())
    assert committed["prod"].security.waf.enabled and committed["staging"].security.waf.enabled
    assert committed["prod"].security.throttle.rate_limit == 200.0


def test_execute_api_endpoint_can_be_disabled_only_behind_this_stacks_domain() -> None:
    domain = {"domain_name": "api.credentialmate.com", "certificate_arn": CERT_EU}
    block = {"account": "123456789012", "region": "eu-west-1", "custom_domain": domain}
    cfg = parse_environment("prod", {**block, "security": {"disable_execute_api_endpoint": True}})
    assert cfg.security.disable_execute_api_endpoint
    mapped = {**domain, "mapped_api": {"rest_api_id": "a1b2c3d4e5", "stage": "Prod"}}
    with pytest.raises(ConfigError, match="disable_execute_api_endpoint"):
        parse_environment(
            "prod", {**block, "custom_domain": mapped, "security": {"disable_execute_api_endpoint": True}}
        )


def test_custom_canary_and_network_parse() -> None:
    cfg = parse_environment(
        "prod",
        {
            "account": "123456789012",
            "region": "eu-west-1",
            "deployment": {"config": {"type": "linear", "percent": 20, "interval_minutes": 3}},
            "network": {
                "vpc_id": "vpc-0123456789abcdef0",
                "subnet_ids": ["subnet-0123456789abcdef0"],
                "security_group_ids": ["sg-0123456789abcdef0"],
                "availability_zones": ["eu-west-1a"],
            },
            "alarms": {"thresholds": {"error_rate_percent": 2}},
        },
    )
    assert cfg.deployment.config == CustomCanary(kind="linear", percent=20, interval_minutes=3)
    assert cfg.network is not None and cfg.network.subnet_ids == ("subnet-0123456789abcdef0",)
    assert cfg.alarms.thresholds == (("error_rate_percent", 2.0),)


CERT_EU = "arn:aws:acm:eu-west-1:123456789012:certificate/0b6c9e2e-5a8e-4b8e-9c1e-0123456789ab"
CERT_US = "arn:aws:acm:us-east-1:123456789012:certificate/1c7d0f3f-6b9f-4c9f-8d2f-0123456789ab"


def test_custom_domain_parses_with_defaults() -> None:
    cfg = parse_environment(
        "prod",
        {
            "account": "123456789012",
            "region": "eu-west-1",
            "custom_domain": {"domain_name": "api.credentialmate.com", "certificate_arn": CERT_EU},
        },
    )
    assert cfg.custom_domain == CustomDomainSettings(
        domain_name="api.credentialmate.com", certificate_arn=CERT_EU, endpoint_type="REGIONAL"
    )
    assert parse_environment("prod", {"custom_domain": None}).custom_domain is None


# Each case: (environment block overrides, text that must appear in the one error message)
BAD_VALUES: list[tuple[str, dict[str, Any], list[str]]] = [
    (
        "memory too small",
        {"function": {"memory_mb": 64}},
        ["environments.prod.function.memory_mb", "64", "integer from 128 to 10240"],
    ),
    (
        "timeout above Lambda max",
        {"function": {"timeout_seconds": 901}},
        ["function.timeout_seconds", "901", "1 to 900"],
    ),
    (
        "unsupported runtime",
        {"function": {"runtime": "python3.8"}},
        ["function.runtime", "python3.8", "python3.11"],
    ),
    ("bad architecture", {"function": {"architecture": "arm"}}, ["function.architecture", "'arm'", "arm64"]),
    (
        "account not 12 digits",
        {"account": "1234", "region": "eu-west-1"},
        ["prod.account", "'1234'", "12-digit"],
    ),
    (
        "region malformed",
        {"account": "123456789012", "region": "Europe"},
        ["prod.region", "'Europe'", "eu-west-1"],
    ),
    ("account without region", {"account": "123456789012"}, ["prod.region", "together"]),
    (
        "CORS origin with path",
        {"cors_origins": ["https://credentialmate.com/app"]},
        ["cors_origins[0]", "https://credentialmate.com/app", "origin"],
    ),
    ("CORS origin list empty", {"cors_origins": []}, ["cors_origins", "at least 1"]),
    ("retention not a CloudWatch value", {"log_retention_days": 10}, ["log_retention_days", "10", "365"]),
    (
        "unknown deployment config",
        {"deployment": {"config": "Canary50Percent"}},
        ["deployment.config", "Canary50Percent", "Canary10Percent5Minutes"],
    ),
    (
        "custom canary percent 0",
        {"deployment": {"config": {"type": "canary", "percent": 0, "interval_minutes": 5}}},
        ["deployment.config", "percent", "1-99"],
    ),
    (
        "schema mismatch policy",
        {"deployment": {"schema_mismatch": "ignore"}},
        ["deployment.schema_mismatch", "ignore", "fail, warn"],
    ),
    ("bad email", {"alarms": {"emails": ["oncall"]}}, ["alarms.emails[0]", "'oncall'", "email address"]),
    (
        "paging URL not https",
        {"alarms": {"paging_url": "http://pager.example.com"}},
        ["alarms.paging_url", "http://pager.example.com", "https://"],
    ),
    (
        "slack channel without workspace",
        {"alarms": {"slack_channel_id": "C0123ABCD"}},
        ["alarms.slack_channel_id", "together"],
    ),
    (
        "unknown threshold",
        {"alarms": {"thresholds": {"error_rate": 5}}},
        ["alarms.thresholds.error_rate", "known threshold", "error_rate_percent"],
    ),
    (
        "negative threshold",
        {"alarms": {"thresholds": {"error_rate_percent": -1}}},
        ["alarms.thresholds.error_rate_percent", "-1", ">= 0"],
    ),
    (
        "threshold fraction above 1",
        {"alarms": {"thresholds": {"duration_p99_fraction_of_timeout": 1.5}}},
        ["alarms.thresholds.duration_p99_fraction_of_timeout", "1.5", "(0, 1]"],
    ),
    (
        "termination protection not bool",
        {"termination_protection": "yes"},
        ["termination_protection", "'yes'", "true or false"],
    ),
    ("secret ARN malformed", {"secret_arn": "my-secret"}, ["secret_arn", "my-secret", "Secrets Manager"]),
    (
        "VPC ID malformed",
        {
            "network": {
                "vpc_id": "vpc-1",
                "subnet_ids": ["subnet-0123456789abcdef0"],
                "security_group_ids": ["sg-0123456789abcdef0"],
                "availability_zones": ["eu-west-1a"],
            }
        },
        ["network.vpc_id", "vpc-1", "VPC ID"],
    ),
    (
        "subnets and zones mismatch",
        {
            "network": {
                "vpc_id": "vpc-0123456789abcdef0",
                "subnet_ids": ["subnet-0123456789abcdef0", "subnet-0123456789abcdef1"],
                "security_group_ids": ["sg-0123456789abcdef0"],
                "availability_zones": ["eu-west-1a"],
            }
        },
        ["network.availability_zones", "one zone per subnet"],
    ),
    ("unknown top-level key", {"memory": 512}, ["environments.prod.memory", "unknown key", "allowed keys"]),
    ("unknown nested key", {"function": {"memory": 512}}, ["function.memory", "unknown key", "memory_mb"]),
    (
        "custom domain without certificate",
        {"custom_domain": {"domain_name": "api.credentialmate.com"}},
        ["custom_domain.certificate_arn", "required when custom_domain is set"],
    ),
    (
        "custom domain given as a URL",
        {"custom_domain": {"domain_name": "https://api.credentialmate.com", "certificate_arn": CERT_EU}},
        ["custom_domain.domain_name", "https://api.credentialmate.com", "DNS name"],
    ),
    (
        "certificate not an ACM ARN",
        {"custom_domain": {"domain_name": "api.credentialmate.com", "certificate_arn": "my-cert"}},
        ["custom_domain.certificate_arn", "my-cert", "ACM certificate ARN"],
    ),
    (
        "regional certificate from another region",
        {
            "account": "123456789012",
            "region": "eu-west-1",
            "custom_domain": {"domain_name": "api.credentialmate.com", "certificate_arn": CERT_US},
        },
        ["custom_domain.certificate_arn", "stack's region eu-west-1"],
    ),
    (
        "edge certificate outside us-east-1",
        {
            "custom_domain": {
                "domain_name": "api.credentialmate.com",
                "certificate_arn": CERT_EU,
                "endpoint_type": "EDGE",
            }
        },
        ["custom_domain.certificate_arn", "us-east-1 for an EDGE endpoint"],
    ),
    (
        "hosted zone that does not contain the name",
        {
            "custom_domain": {
                "domain_name": "api.credentialmate.com",
                "certificate_arn": CERT_EU,
                "hosted_zone_id": "Z0123456789ABC",
                "hosted_zone_name": "example.com",
            }
        },
        ["custom_domain.hosted_zone_name", "example.com", "contains api.credentialmate.com"],
    ),
    (
        "hosted zone ID without its name",
        {
            "custom_domain": {
                "domain_name": "api.credentialmate.com",
                "certificate_arn": CERT_EU,
                "hosted_zone_id": "Z0123456789ABC",
            }
        },
        ["custom_domain.hosted_zone_name", "together"],
    ),
    (
        "mapped API ID malformed",
        {
            "custom_domain": {
                "domain_name": "api.credentialmate.com",
                "certificate_arn": CERT_EU,
                "mapped_api": {"rest_api_id": "SAM-API", "stage": "Prod"},
            }
        },
        ["custom_domain.mapped_api.rest_api_id", "SAM-API", "REST API ID"],
    ),
    (
        "mapped API without stage",
        {
            "custom_domain": {
                "domain_name": "api.credentialmate.com",
                "certificate_arn": CERT_EU,
                "mapped_api": {"rest_api_id": "a1b2c3d4e5"},
            }
        },
        ["custom_domain.mapped_api.stage", "required when mapped_api is set"],
    ),
    (
        "threshold not a number",
        {"alarms": {"thresholds": {"throttles": "1"}}},
        ["alarms.thresholds.throttles", "'1'", "a finite number >= 0"],
    ),
    (
        "migrations switch not bool",
        {"migrations": {"enabled": "yes"}},
        ["migrations.enabled", "'yes'", "true or false"],
    ),
    (
        "migrations without the database secret",
        {"migrations": {"enabled": True}},
        ["migrations.enabled", "secret_arn is null"],
    ),
    (
        "migrations folder outside src",
        {"migrations": {"enabled": False, "directory": "../alembic"}},
        ["migrations.directory", "../alembic", "inside the source folder"],
    ),
    (
        "migrations variable the stack sets itself",
        {"migrations": {"environment": {"COMBINED_SECRET_ARN": "x"}}},
        ["migrations.environment.COMBINED_SECRET_ARN", "the stack does not set itself"],
    ),
    (
        "migrations variable not a string",
        {"migrations": {"environment": {"POOL_SIZE": 5}}},
        ["migrations.environment.POOL_SIZE", "5", "a string"],
    ),
    (
        "migrations environment not an object",
        {"migrations": {"environment": ["SECRET_KEY"]}},
        ["migrations.environment", "an object of environment variables"],
    ),
    (
        "threshold not finite",
        {"alarms": {"thresholds": {"api_latency_p99_ms": float("nan")}}},
        ["alarms.thresholds.api_latency_p99_ms", "nan", "a finite number >= 0"],
    ),
    (
        "unknown custom domain key",
        {"custom_domain": {"domain": "api.credentialmate.com"}},
        ["custom_domain.domain", "unknown key", "certificate_arn"],
    ),
    (
        "WAF switch not a boolean",
        {"security": {"waf": {"enabled": "on"}}},
        ["security.waf.enabled", "'on'", "true or false"],
    ),
    (
        "WAF login rate below WAF's minimum",
        {"security": {"waf": {"login_rate_limit_per_5min": 5}}},
        ["security.waf.login_rate_limit_per_5min", "5", "10 to 2000000000"],
    ),
    (
        "WAF log destination without the aws-waf-logs- prefix",
        {"security": {"waf": {"log_destination_arn": "arn:aws:logs:eu-west-1:123456789012:log-group:waf"}}},
        ["security.waf.log_destination_arn", "log-group:waf", "aws-waf-logs-*"],
    ),
    (
        "WAF count-only rule with a space",
        {"security": {"waf": {"count_only_rules": ["Size Body"]}}},
        ["security.waf.count_only_rules[0]", "Size Body", "managed rule name"],
    ),
    (
        "unknown WAF key",
        {"security": {"waf": {"block": True}}},
        ["security.waf.block", "unknown key", "login_rate_limit_per_5min"],
    ),
    (
        "stage rate zero",
        {"security": {"throttle": {"rate_limit": 0}}},
        ["security.throttle.rate_limit", "0", "above 0"],
    ),
    (
        "stage burst not whole",
        {"security": {"throttle": {"burst_limit": 2.5}}},
        ["security.throttle.burst_limit", "2.5", "integer from 1 to 5000"],
    ),
    (
        "login limit above the stage's",
        {"security": {"throttle": {"rate_limit": 10, "burst_limit": 20, "login_rate_limit": 50}}},
        ["security.throttle.login_rate_limit", "50/10", "at most the stage's 10/20"],
    ),
    (
        "route limit with a parameter in its path",
        {
            "security": {
                "throttle": {
                    "method_limits": [
                        {"path": "/users/{id}", "method": "GET", "rate_limit": 1, "burst_limit": 1}
                    ]
                }
            }
        },
        ["security.throttle.method_limits[0].path", "/users/{id}", "literal path"],
    ),
    (
        "route limit with an unknown method",
        {
            "security": {
                "throttle": {
                    "method_limits": [
                        {"path": "/users", "method": "FETCH", "rate_limit": 1, "burst_limit": 1}
                    ]
                }
            }
        },
        ["security.throttle.method_limits[0].method", "FETCH", "POST"],
    ),
    (
        "route limit missing its burst",
        {"security": {"throttle": {"method_limits": [{"path": "/users", "method": "GET", "rate_limit": 1}]}}},
        ["security.throttle.method_limits[0].burst_limit", "required"],
    ),
    (
        "route listed twice",
        {
            "security": {
                "throttle": {
                    "method_limits": [
                        {"path": "/users", "method": "GET", "rate_limit": 1, "burst_limit": 1},
                        {"path": "/users", "method": "GET", "rate_limit": 2, "burst_limit": 2},
                    ]
                }
            }
        },
        ["security.throttle.method_limits[1]", "GET /users", "each route listed once"],
    ),
    (
        "execute-api endpoint disabled without a custom domain",
        {"security": {"disable_execute_api_endpoint": True}},
        ["security.disable_execute_api_endpoint", "True", "custom_domain is set without mapped_api"],
    ),
    (
        "unknown security key",
        {"security": {"kms": True}},
        ["security.kms", "unknown key", "disable_execute_api_endpoint"],
    ),
    (
        "deny role not an ARN",
        {"guardrails": {"deny_direct_mutation_role_arns": ["admin"]}},
        ["guardrails.deny_direct_mutation_role_arns[0]", "admin", "IAM role ARN"],
    ),
]


@pytest.mark.parametrize(("case", "block", "expected"), BAD_VALUES, ids=[c[0] for c in BAD_VALUES])
def test_each_bad_value_gets_its_own_clear_error(
    case: str, block: dict[str, Any], expected: list[str]
) -> None:
    # GIVEN the committed prod block with one bad value
    envs = real_environments()
    prod = copy.deepcopy(envs["prod"])
    for key, value in block.items():
        if isinstance(value, dict) and isinstance(prod.get(key), dict):
            prod[key] = {**prod[key], **value}
        else:
            prod[key] = value
    # WHEN it is parsed THEN one ConfigError names the key, the value and what is allowed
    with pytest.raises(ConfigError) as caught:
        parse_environments({**envs, "prod": prod})
    message = str(caught.value)
    assert message.startswith("cdk.json context environments.prod"), message
    for fragment in expected:
        assert fragment in message, f"{fragment!r} not in {message!r}"


def test_bad_values_have_distinct_messages() -> None:
    messages = set()
    for _case, block, _expected in BAD_VALUES:
        with pytest.raises(ConfigError) as caught:
            parse_environment("prod", {**block})
        messages.add(str(caught.value))
    assert len(messages) >= 20


def test_missing_and_unknown_environments_are_errors() -> None:
    with pytest.raises(ConfigError, match=r"environments.prod: missing"):
        parse_environments({"staging": {}})
    with pytest.raises(ConfigError, match=r"environments.dev: unknown environment; allowed: staging, prod"):
        parse_environments({"staging": {}, "prod": {}, "dev": {}})
    with pytest.raises(ConfigError, match=r"context environments: invalid value"):
        parse_environments(None)


def test_retention_days_match_the_cdk_enum_mapping() -> None:
    from stacks.constructs.guarded_function import RETENTION_BY_DAYS

    assert set(RETENTION_BY_DAYS) == set(LOG_RETENTION_DAYS)
