"""The parser of an environment's settings (`environments.<env>` in cdk.json, environment.py's values).

`parse_settings` reads one environment's block; stacks/config/load.py adds the function catalog. Each
reader takes the path of the key (for the message) and returns a typed value or raises `ConfigError`.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, fields
from typing import Any, Literal

from stacks.config.environment import (
    DEFAULT_CORS_ORIGINS,
    ENVIRONMENT_NAMES,
    LOG_RETENTION_DAYS,
    PREDEFINED_DEPLOYMENT_CONFIGS,
    SUPPORTED_RUNTIMES,
    AlarmSettings,
    AlarmThresholds,
    CustomCanary,
    CustomDomainSettings,
    DeploymentSettings,
    EnvironmentConfig,
    FunctionSettings,
    GuardrailSettings,
    MappedApi,
    MigrationSettings,
    NetworkSettings,
    SchemaMismatchPolicy,
)

# The reader's checks this parser uses; security.py's list is alike because both read settings the same way.
from stacks.config.reader import (
    ENV_VAR_RE,
    RESERVED_ENV_PREFIXES,
    RESERVED_ENV_VARS,
    ConfigError,
    Reader,
    boolean,
    choice,
    fail,
    int_in,
    list_of,
    pattern,
)
from stacks.config.security import parse_security

ACCOUNT_RE = r"\d{12}"
REGION_RE = r"[a-z]{2}(-gov)?-[a-z]+-\d"
ORIGIN_RE = r"https://[a-z0-9.-]+(:\d+)?|http://localhost(:\d+)?"
EMAIL_RE = r"[^@\s]+@[^@\s]+\.[a-z]{2,}"
SECRET_ARN_RE = r"arn:aws[a-z-]*:secretsmanager:[a-z0-9-]+:\d{12}:secret:[A-Za-z0-9/_+=.@-]+"
ROLE_ARN_RE = r"arn:aws[a-z-]*:iam::\d{12}:role/[A-Za-z0-9/_+=,.@-]+"
DOMAIN_RE = r"(?=.{4,253}$)([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z]{2,63}"
CERTIFICATE_ARN_RE = r"arn:aws[a-z-]*:acm:([a-z0-9-]+):\d{12}:certificate/[0-9a-f-]{36}"
HOSTED_ZONE_RE = r"Z[A-Z0-9]{4,31}"

DEPLOYMENT_CONFIG_ALLOWED = (
    f"one of {', '.join(PREDEFINED_DEPLOYMENT_CONFIGS)}, or "
    '{"type": "canary"|"linear", "percent": 1-99, "interval_minutes": 1-2880}'
)
# Reports a bad value at a path inside the object being read: (path, value, what is allowed) -> error.
Fail = Callable[[tuple[str, ...], Any, str], ConfigError]


def deployment_config(value: Any) -> str | CustomCanary | None:
    """A `deployment.config` value as a predefined name or a CustomCanary; None if it is neither (the caller
    names the key it came from, with DEPLOYMENT_CONFIG_ALLOWED)."""
    if isinstance(value, str) and value in PREDEFINED_DEPLOYMENT_CONFIGS:
        return value
    if isinstance(value, Mapping) and set(value) == {"type", "percent", "interval_minutes"}:
        kind, percent, minutes = value["type"], value["percent"], value["interval_minutes"]
        if (
            kind in ("canary", "linear")
            and isinstance(percent, int)
            and 1 <= percent <= 99
            and isinstance(minutes, int)
            and 1 <= minutes <= 2880
        ):
            return CustomCanary(kind=kind, percent=percent, interval_minutes=minutes)
    return None


def _deployment_config_check(env: str) -> Callable[[str, Any], str | CustomCanary]:
    def check(key: str, value: Any) -> str | CustomCanary:
        config = deployment_config(value)
        if config is None:
            raise fail(env, key, value, DEPLOYMENT_CONFIG_ALLOWED)
        return config

    return check


def parse_thresholds(value: Any, fail_at: Fail) -> tuple[tuple[str, float], ...]:
    """Threshold overrides by AlarmThresholds field name (`alarms.thresholds`, a function's `alarms`)."""
    known = {f.name for f in fields(AlarmThresholds)}
    if not isinstance(value, Mapping):
        raise fail_at((), value, "an object of threshold overrides")
    out = []
    for name, number in value.items():
        if name not in known:
            raise fail_at((name,), number, f"a known threshold: {', '.join(sorted(known))}")
        if isinstance(number, bool) or not isinstance(number, (int, float)) or not 0 <= number < math.inf:
            raise fail_at((name,), number, "a finite number >= 0")
        if name == "duration_p99_fraction_of_timeout" and not 0 < number <= 1:
            raise fail_at((name,), number, "a fraction of the timeout in (0, 1]")
        if name == "waf_blocked_requests" and number < 1:
            raise fail_at((name,), number, "a number of blocked requests >= 1")
        out.append((name, float(number)))
    return tuple(sorted(out))


def _parse_function(r: Reader) -> FunctionSettings:
    e = r.env
    d = FunctionSettings()
    result = FunctionSettings(
        memory_mb=r.get("memory_mb", d.memory_mb, int_in(e, 128, 10240)),
        timeout_seconds=r.get("timeout_seconds", d.timeout_seconds, int_in(e, 1, 900)),
        runtime=r.get("runtime", d.runtime, choice(e, SUPPORTED_RUNTIMES)),
        architecture=r.get("architecture", d.architecture, choice(e, ("x86_64", "arm64"))),
    )
    r.finish([f.name for f in fields(FunctionSettings)])
    return result


def _parse_network(r: Reader) -> NetworkSettings | None:
    if not r.raw:
        return None
    e = r.env
    vpc_id: str = r.get(
        "vpc_id", "", pattern(e, r"vpc-[0-9a-f]{8,17}", "a VPC ID like vpc-0123456789abcdef0")
    )
    no_ids: tuple[str, ...] = ()
    subnets = r.get(
        "subnet_ids", no_ids, list_of(e, pattern(e, r"subnet-[0-9a-f]{8,17}", "subnet-..."), min_items=1)
    )
    groups = r.get(
        "security_group_ids", no_ids, list_of(e, pattern(e, r"sg-[0-9a-f]{8,17}", "sg-..."), min_items=1)
    )
    azs = r.get(
        "availability_zones",
        no_ids,
        list_of(e, pattern(e, r"[a-z]{2}-[a-z]+-\d[a-z]", "eu-west-1a"), min_items=1),
    )
    r.finish([f.name for f in fields(NetworkSettings)])
    for key, value in (
        ("vpc_id", vpc_id),
        ("subnet_ids", subnets),
        ("security_group_ids", groups),
        ("availability_zones", azs),
    ):
        if not value:
            raise fail(e, r.key(key), None, "required when network is set")
    if len(subnets) != len(azs):
        raise fail(e, r.key("availability_zones"), list(azs), f"one zone per subnet ({len(subnets)} subnets)")
    return NetworkSettings(
        vpc_id=vpc_id, subnet_ids=subnets, security_group_ids=groups, availability_zones=azs
    )


def _parse_deployment(
    r: Reader, default_config: str | CustomCanary, default_schema: SchemaMismatchPolicy = "fail"
) -> DeploymentSettings:
    e = r.env
    result = DeploymentSettings(
        config=r.get("config", default_config, _deployment_config_check(e)),
        schema_mismatch=r.get("schema_mismatch", default_schema, choice(e, ("fail", "warn"))),
    )
    r.finish([f.name for f in fields(DeploymentSettings)])
    return result


def _parse_alarms(r: Reader) -> AlarmSettings:
    e = r.env
    result = AlarmSettings(
        emails=r.get("emails", (), list_of(e, pattern(e, EMAIL_RE, "an email address"))),
        slack_workspace_id=r.get(
            "slack_workspace_id", None, pattern(e, r"T[A-Z0-9]{6,}", "a Slack team ID like T0123ABCD")
        ),
        slack_channel_id=r.get(
            "slack_channel_id", None, pattern(e, r"[CG][A-Z0-9]{6,}", "a Slack channel ID like C0123ABCD")
        ),
        paging_url=r.get("paging_url", None, pattern(e, r"https://\S+", "an https:// URL")),
        thresholds=r.get(
            "thresholds",
            (),
            lambda key, value: parse_thresholds(
                value, lambda path, v, allowed: fail(e, ".".join((key, *path)), v, allowed)
            ),
        ),
    )
    r.finish([f.name for f in fields(AlarmSettings)])
    if (result.slack_workspace_id is None) != (result.slack_channel_id is None):
        raise fail(
            e,
            r.key("slack_channel_id"),
            result.slack_channel_id,
            "slack_workspace_id and slack_channel_id set together (or neither)",
        )
    return result


def _parse_guardrails(r: Reader) -> GuardrailSettings:
    e = r.env
    result = GuardrailSettings(
        deny_direct_mutation_role_arns=r.get(
            "deny_direct_mutation_role_arns", (), list_of(e, pattern(e, ROLE_ARN_RE, "an IAM role ARN"))
        ),
        drift_check_minutes=r.get("drift_check_minutes", 60, int_in(e, 5, 1440)),
    )
    r.finish([f.name for f in fields(GuardrailSettings)])
    arns = result.deny_direct_mutation_role_arns
    for i, arn in enumerate(arns):
        if arn in arns[:i]:
            raise fail(e, r.key(f"deny_direct_mutation_role_arns[{i}]"), arn, "each role listed once")
    return result


def _parse_migrations(r: Reader) -> MigrationSettings:
    e = r.env
    result = MigrationSettings(
        enabled=r.get("enabled", False, boolean(e)),
        directory=r.get(
            "directory",
            "migrations",
            pattern(
                e,
                r"[A-Za-z0-9_.-]+(/[A-Za-z0-9_.-]+)*",
                "a folder relative to the source folder, like migrations",
            ),
        ),
        environment=r.get("environment", (), _variables(e)),
    )
    r.finish([f.name for f in fields(MigrationSettings)])
    if ".." in result.directory.split("/"):
        raise fail(e, r.key("directory"), result.directory, "a folder inside the source folder (no ..)")
    return result


def _variables(env: str) -> Callable[[str, Any], tuple[tuple[str, str], ...]]:
    """An object of environment variables, checked as a function's `environment` is."""

    def check(key: str, value: Any) -> tuple[tuple[str, str], ...]:
        if not isinstance(value, dict):
            raise fail(env, key, value, 'an object of environment variables, like {"SECRET_KEY": "..."}')
        for name, text in value.items():
            if (
                not re.fullmatch(ENV_VAR_RE, name)
                or name in RESERVED_ENV_VARS
                or name.startswith(RESERVED_ENV_PREFIXES)
            ):
                raise fail(
                    env,
                    f"{key}.{name}",
                    name,
                    "a variable name the stack does not set itself (reserved: "
                    f"{', '.join(RESERVED_ENV_VARS)} and names starting with "
                    f"{', '.join(RESERVED_ENV_PREFIXES)})",
                )
            if not isinstance(text, str):
                raise fail(env, f"{key}.{name}", text, "a string (Lambda environment values are strings)")
        return tuple(sorted(value.items()))

    return check


def _parse_mapped_api(r: Reader) -> MappedApi | None:
    if not r.raw:
        return None
    e = r.env
    api_id = r.get("rest_api_id", "", pattern(e, r"[a-z0-9]{10}", "a REST API ID like a1b2c3d4e5"))
    stage = r.get("stage", "", pattern(e, r"[A-Za-z0-9_-]{1,128}", "a stage name like Prod"))
    r.finish([f.name for f in fields(MappedApi)])
    for key, value in (("rest_api_id", api_id), ("stage", stage)):
        if not value:
            raise fail(e, r.key(key), None, "required when mapped_api is set")
    return MappedApi(rest_api_id=api_id, stage=stage)


def _parse_custom_domain(r: Reader, region: str | None) -> CustomDomainSettings | None:
    if not r.raw:
        return None
    e = r.env
    domain = r.get(
        "domain_name", "", pattern(e, DOMAIN_RE, "a lower-case DNS name like api.credentialmate.com")
    )
    certificate = r.get(
        "certificate_arn", "", pattern(e, CERTIFICATE_ARN_RE, "an ACM certificate ARN (arn:aws:acm:...)")
    )
    endpoint: Literal["REGIONAL", "EDGE"] = r.get(
        "endpoint_type", "REGIONAL", choice(e, ("REGIONAL", "EDGE"))
    )
    zone_id = r.get(
        "hosted_zone_id", None, pattern(e, HOSTED_ZONE_RE, "a Route 53 hosted zone ID like Z0123456789ABC")
    )
    zone_name = r.get("hosted_zone_name", None, pattern(e, DOMAIN_RE, "the hosted zone's DNS name"))
    mapped = _parse_mapped_api(r.child("mapped_api"))
    r.finish([f.name for f in fields(CustomDomainSettings)])
    for key, value in (("domain_name", domain), ("certificate_arn", certificate)):
        if not value:
            raise fail(e, r.key(key), None, "required when custom_domain is set")
    if (zone_id is None) != (zone_name is None):
        raise fail(
            e,
            r.key("hosted_zone_name"),
            zone_name,
            "hosted_zone_id and hosted_zone_name set together (or neither)",
        )
    if zone_name is not None and not (domain == zone_name or domain.endswith("." + zone_name)):
        raise fail(e, r.key("hosted_zone_name"), zone_name, f"a zone that contains {domain}")
    # API Gateway takes an EDGE certificate from us-east-1 only, a REGIONAL one from the API's region only.
    cert_region = re.fullmatch(CERTIFICATE_ARN_RE, certificate).group(1)  # type: ignore[union-attr]
    if endpoint == "EDGE" and cert_region != "us-east-1":
        raise fail(
            e, r.key("certificate_arn"), certificate, "a certificate in us-east-1 for an EDGE endpoint"
        )
    if endpoint == "REGIONAL" and region is not None and cert_region != region:
        raise fail(e, r.key("certificate_arn"), certificate, f"a certificate in the stack's region {region}")
    # Keyword arguments one a line, alike in shape to other constructor calls: no logic to share.
    return CustomDomainSettings(
        domain_name=domain,
        certificate_arn=certificate,
        endpoint_type=endpoint,
        hosted_zone_id=zone_id,
        hosted_zone_name=zone_name,
        mapped_api=mapped,
    )


def _check_security(config: EnvironmentConfig) -> None:
    domain = config.custom_domain
    if config.security.disable_execute_api_endpoint and (domain is None or domain.mapped_api is not None):
        raise fail(
            config.name,
            "security.disable_execute_api_endpoint",
            True,
            "false unless custom_domain is set without mapped_api: the execute-api URL is then the only "
            "way to reach this stack's API",
        )


@dataclass(frozen=True)
class ParsedSettings:
    """One environment's settings, with what the catalog step (load.py) still needs from its block."""

    config: EnvironmentConfig
    # `environments.<env>.functions`: per-function overrides, read by the catalog parser.
    function_overrides: Any
    # Whether `security.login_routes` was written; if not, the catalog's login paths fill it in.
    login_routes_written: bool


def parse_settings(name: str, raw: Any) -> ParsedSettings:
    if name not in ENVIRONMENT_NAMES:
        raise ConfigError(
            f"cdk.json context environments.{name}: unknown environment; "
            f"allowed: {', '.join(ENVIRONMENT_NAMES)}"
        )
    r = Reader(name, "", raw if raw is not None else {})
    e = name
    is_prod = name == "prod"
    # Read once: the custom domain's certificate must come from this region.
    region = r.get("region", None, pattern(e, REGION_RE, "an AWS region like eu-west-1, or null"))
    security, login_routes_written = parse_security(r.child("security"), is_prod)
    config = EnvironmentConfig(
        name=name,
        account=r.get("account", None, pattern(e, ACCOUNT_RE, "a 12-digit AWS account ID, or null")),
        region=region,
        cors_origins=r.get(
            "cors_origins",
            DEFAULT_CORS_ORIGINS,
            list_of(e, pattern(e, ORIGIN_RE, "an https:// origin without a path"), min_items=1),
        ),
        function=_parse_function(r.child("function")),
        network=_parse_network(r.child("network")),
        secret_arn=r.get("secret_arn", None, pattern(e, SECRET_ARN_RE, "a Secrets Manager secret ARN")),
        alarms=_parse_alarms(r.child("alarms")),
        deployment=_parse_deployment(
            r.child("deployment"), "Canary10Percent5Minutes" if is_prod else "AllAtOnce"
        ),
        log_retention_days=r.get("log_retention_days", 30, choice(e, LOG_RETENTION_DAYS)),
        termination_protection=r.get("termination_protection", is_prod, boolean(e)),
        guardrails=_parse_guardrails(r.child("guardrails")),
        custom_domain=_parse_custom_domain(r.child("custom_domain"), region),
        migrations=_parse_migrations(r.child("migrations")),
        security=security,
    )
    overrides = r.get("functions", None, lambda _key, value: value)
    r.finish([*(f.name for f in fields(EnvironmentConfig) if f.name not in ("name",)), "functions"])
    if (config.account is None) != (config.region is None):
        raise fail(
            e,
            "region" if config.region is None else "account",
            None,
            "account and region set together (or both null for an environment-agnostic synth)",
        )
    if config.migrations.enabled and config.secret_arn is None:
        raise fail(
            e,
            "migrations.enabled",
            True,
            "false while secret_arn is null: the migration step reads the database credentials "
            "from that secret",
        )
    _check_security(config)
    return ParsedSettings(config, overrides, login_routes_written)
