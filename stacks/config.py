"""Typed, validated configuration for each environment.

`app.py` is the only place that reads CDK context; it hands the raw `environments` block to
`parse_environments`, which returns frozen objects or raises `ConfigError` with one message naming the
environment, the key, the value and what is allowed. Stacks and constructs only ever see these objects.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, fields
from typing import Any, Literal, TypeVar

Architecture = Literal["x86_64", "arm64"]
SchemaMismatchPolicy = Literal["fail", "warn"]

ENVIRONMENT_NAMES = ("staging", "prod")
SUPPORTED_RUNTIMES = ("python3.11", "python3.12", "python3.13")
# CloudWatch Logs accepts only these retention periods (days).
LOG_RETENTION_DAYS = (
    1,
    3,
    5,
    7,
    14,
    30,
    60,
    90,
    120,
    150,
    180,
    365,
    400,
    545,
    731,
    1096,
    1827,
    2192,
    2557,
    2922,
    3288,
    3653,
)
PREDEFINED_DEPLOYMENT_CONFIGS = (
    "AllAtOnce",
    "Canary10Percent5Minutes",
    "Canary10Percent10Minutes",
    "Canary10Percent15Minutes",
    "Canary10Percent30Minutes",
    "Linear10PercentEvery1Minute",
    "Linear10PercentEvery2Minutes",
    "Linear10PercentEvery3Minutes",
    "Linear10PercentEvery10Minutes",
)
DEFAULT_CORS_ORIGINS = ("https://credentialmate.com",)
# What the API allows across origins (API Gateway preflight) and what the post-traffic hook and
# scripts/smoke_test.py require of it.
CORS_METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")
CORS_HEADERS = ("Authorization", "Content-Type")


class ConfigError(ValueError):
    """A configuration value that must be fixed in cdk.json (or on the command line with -c)."""


@dataclass(frozen=True)
class FunctionSettings:
    memory_mb: int = 1024
    timeout_seconds: int = 60
    runtime: str = "python3.11"
    architecture: Architecture = "x86_64"


@dataclass(frozen=True)
class NetworkSettings:
    """Existing VPC resources, given as IDs: nothing is looked up at synth."""

    vpc_id: str
    subnet_ids: tuple[str, ...]
    security_group_ids: tuple[str, ...]
    availability_zones: tuple[str, ...]


@dataclass(frozen=True)
class CustomCanary:
    """A custom CodeDeploy Lambda config: `canary` shifts `percent` then the rest after the interval;
    `linear` shifts `percent` every interval."""

    kind: Literal["canary", "linear"]
    percent: int
    interval_minutes: int


@dataclass(frozen=True)
class DeploymentSettings:
    config: str | CustomCanary = "AllAtOnce"
    schema_mismatch: SchemaMismatchPolicy = "fail"


@dataclass(frozen=True)
class AlarmSettings:
    emails: tuple[str, ...] = ()
    slack_workspace_id: str | None = None
    slack_channel_id: str | None = None
    paging_url: str | None = None
    # Overrides of stacks.constructs.alarms.AlarmThresholds fields; validated against that dataclass.
    thresholds: tuple[tuple[str, float], ...] = ()


@dataclass(frozen=True)
class GuardrailSettings:
    # Roles (e.g. the human admin role) that get a policy denying direct mutation of the functions.
    deny_direct_mutation_role_arns: tuple[str, ...] = ()
    drift_check_minutes: int = 60


@dataclass(frozen=True)
class MappedApi:
    """Another stack's REST API stage (the SAM stack's) that the name keeps serving during the migration."""

    rest_api_id: str
    stage: str


@dataclass(frozen=True)
class CustomDomainSettings:
    """The API's public name (api.credentialmate.com), mapped at the root to the API's stage.

    The domain and its mapping are retained when removed from the stack, so a config change or a stack
    deletion never takes the public name down; docs/migration-from-sam.md moves it from the SAM stack.
    """

    domain_name: str
    certificate_arn: str
    endpoint_type: Literal["REGIONAL", "EDGE"] = "REGIONAL"
    # Route 53 alias records (A and AAAA) for the name, when the stack owns the DNS record too.
    hosted_zone_id: str | None = None
    hosted_zone_name: str | None = None
    # The migration switch (docs/migration-from-sam.md): set, the name serves that API; removed, this
    # stack's. The mapping is the same resource either way, so the switch is an in-place update.
    mapped_api: MappedApi | None = None


@dataclass(frozen=True)
class EnvironmentConfig:
    name: str
    account: str | None = None
    region: str | None = None
    cors_origins: tuple[str, ...] = DEFAULT_CORS_ORIGINS
    function: FunctionSettings = field(default_factory=FunctionSettings)
    network: NetworkSettings | None = None
    secret_arn: str | None = None
    alarms: AlarmSettings = field(default_factory=AlarmSettings)
    deployment: DeploymentSettings = field(default_factory=DeploymentSettings)
    log_retention_days: int = 30
    campaign_schedule: str = "rate(1 hour)"
    # False while another stack's scheduler still runs the campaigns (the SAM stack during the migration):
    # two schedulers would send every renewal reminder twice. No MissedRuns alarm while off.
    campaign_schedule_enabled: bool = True
    termination_protection: bool = False
    guardrails: GuardrailSettings = field(default_factory=GuardrailSettings)
    custom_domain: CustomDomainSettings | None = None

    @property
    def stack_name(self) -> str:
        return f"credmate-backend-{self.name}"


# ---------------------------------------------------------------------------------------------------------
# Parsing. Each reader takes the path of the key (for the message) and returns a typed value or raises.

T = TypeVar("T")


def _fail(env: str, key: str, value: Any, allowed: str) -> ConfigError:
    return ConfigError(
        f"cdk.json context environments.{env}.{key}: invalid value {value!r}; allowed: {allowed}"
    )


class _Reader:
    """Reads one mapping, remembering which keys were consumed so unknown keys can be reported."""

    def __init__(self, env: str, prefix: str, raw: Any) -> None:
        if not isinstance(raw, Mapping):
            raise _fail(env, prefix.rstrip("."), raw, "an object")
        self.env = env
        self.prefix = prefix
        self.raw = raw
        self.seen: set[str] = set()

    def key(self, name: str) -> str:
        return f"{self.prefix}{name}"

    def get(self, name: str, default: T, check: Callable[[str, Any], T]) -> T:
        self.seen.add(name)
        if name not in self.raw or self.raw[name] is None:
            return default
        return check(self.key(name), self.raw[name])

    def child(self, name: str) -> _Reader:
        self.seen.add(name)
        return _Reader(self.env, f"{self.key(name)}.", self.raw.get(name) or {})

    def finish(self, allowed: Sequence[str]) -> None:
        unknown = sorted(set(self.raw) - self.seen)
        if unknown:
            where = self.prefix.rstrip(".") or "<environment>"
            raise ConfigError(
                f"cdk.json context environments.{self.env}.{self.prefix}{unknown[0]}: unknown key in "
                f"{where}; allowed keys: {', '.join(sorted(allowed))}"
            )


def _int_in(env: str, low: int, high: int) -> Callable[[str, Any], int]:
    def check(key: str, value: Any) -> int:
        if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
            raise _fail(env, key, value, f"an integer from {low} to {high}")
        return value

    return check


def _choice(env: str, choices: Sequence[Any]) -> Callable[[str, Any], Any]:
    def check(key: str, value: Any) -> Any:
        if value not in choices:
            raise _fail(env, key, value, ", ".join(str(c) for c in choices))
        return value

    return check


def _bool(env: str) -> Callable[[str, Any], bool]:
    def check(key: str, value: Any) -> bool:
        if not isinstance(value, bool):
            raise _fail(env, key, value, "true or false")
        return value

    return check


def _pattern(env: str, regex: str, what: str) -> Callable[[str, Any], str]:
    compiled = re.compile(regex)

    def check(key: str, value: Any) -> str:
        if not isinstance(value, str) or not compiled.fullmatch(value):
            raise _fail(env, key, value, what)
        return value

    return check


def _list_of(
    env: str, item: Callable[[str, Any], str], *, min_items: int = 0
) -> Callable[[str, Any], tuple[str, ...]]:
    def check(key: str, value: Any) -> tuple[str, ...]:
        if not isinstance(value, list) or len(value) < min_items:
            raise _fail(env, key, value, f"a list of at least {min_items} item(s)")
        return tuple(item(f"{key}[{i}]", v) for i, v in enumerate(value))

    return check


ACCOUNT_RE = r"\d{12}"
REGION_RE = r"[a-z]{2}(-gov)?-[a-z]+-\d"
ORIGIN_RE = r"https://[a-z0-9.-]+(:\d+)?|http://localhost(:\d+)?"
EMAIL_RE = r"[^@\s]+@[^@\s]+\.[a-z]{2,}"
SCHEDULE_RE = r"rate\(\d+ (minute|minutes|hour|hours|day|days)\)|cron\(\S+ \S+ \S+ \S+ \S+ \S+\)"
SECRET_ARN_RE = r"arn:aws[a-z-]*:secretsmanager:[a-z0-9-]+:\d{12}:secret:[A-Za-z0-9/_+=.@-]+"
ROLE_ARN_RE = r"arn:aws[a-z-]*:iam::\d{12}:role/[A-Za-z0-9/_+=,.@-]+"
DOMAIN_RE = r"(?=.{4,253}$)([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z]{2,63}"
CERTIFICATE_ARN_RE = r"arn:aws[a-z-]*:acm:([a-z0-9-]+):\d{12}:certificate/[0-9a-f-]{36}"
HOSTED_ZONE_RE = r"Z[A-Z0-9]{4,31}"


def _parse_function(r: _Reader) -> FunctionSettings:
    e = r.env
    d = FunctionSettings()
    result = FunctionSettings(
        memory_mb=r.get("memory_mb", d.memory_mb, _int_in(e, 128, 10240)),
        timeout_seconds=r.get("timeout_seconds", d.timeout_seconds, _int_in(e, 1, 900)),
        runtime=r.get("runtime", d.runtime, _choice(e, SUPPORTED_RUNTIMES)),
        architecture=r.get("architecture", d.architecture, _choice(e, ("x86_64", "arm64"))),
    )
    r.finish([f.name for f in fields(FunctionSettings)])
    return result


def _parse_network(r: _Reader) -> NetworkSettings | None:
    if not r.raw:
        return None
    e = r.env
    vpc_id: str = r.get(
        "vpc_id", "", _pattern(e, r"vpc-[0-9a-f]{8,17}", "a VPC ID like vpc-0123456789abcdef0")
    )
    no_ids: tuple[str, ...] = ()
    subnets = r.get(
        "subnet_ids", no_ids, _list_of(e, _pattern(e, r"subnet-[0-9a-f]{8,17}", "subnet-..."), min_items=1)
    )
    groups = r.get(
        "security_group_ids", no_ids, _list_of(e, _pattern(e, r"sg-[0-9a-f]{8,17}", "sg-..."), min_items=1)
    )
    azs = r.get(
        "availability_zones",
        no_ids,
        _list_of(e, _pattern(e, r"[a-z]{2}-[a-z]+-\d[a-z]", "eu-west-1a"), min_items=1),
    )
    r.finish([f.name for f in fields(NetworkSettings)])
    for key, value in (
        ("vpc_id", vpc_id),
        ("subnet_ids", subnets),
        ("security_group_ids", groups),
        ("availability_zones", azs),
    ):
        if not value:
            raise _fail(e, r.key(key), None, "required when network is set")
    if len(subnets) != len(azs):
        raise _fail(
            e, r.key("availability_zones"), list(azs), f"one zone per subnet ({len(subnets)} subnets)"
        )
    return NetworkSettings(
        vpc_id=vpc_id, subnet_ids=subnets, security_group_ids=groups, availability_zones=azs
    )


def _deployment_config(env: str) -> Callable[[str, Any], str | CustomCanary]:
    allowed = (
        f"one of {', '.join(PREDEFINED_DEPLOYMENT_CONFIGS)}, or "
        '{"type": "canary"|"linear", "percent": 1-99, "interval_minutes": 1-2880}'
    )

    def check(key: str, value: Any) -> str | CustomCanary:
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
        raise _fail(env, key, value, allowed)

    return check


def _parse_deployment(r: _Reader, default_config: str | CustomCanary) -> DeploymentSettings:
    e = r.env
    result = DeploymentSettings(
        config=r.get("config", default_config, _deployment_config(e)),
        schema_mismatch=r.get("schema_mismatch", "fail", _choice(e, ("fail", "warn"))),
    )
    r.finish([f.name for f in fields(DeploymentSettings)])
    return result


def _parse_thresholds(env: str, key: str, value: Any) -> tuple[tuple[str, float], ...]:
    from stacks.constructs.alarms import AlarmThresholds  # the single source of threshold names

    known = {f.name for f in fields(AlarmThresholds)}
    if not isinstance(value, Mapping):
        raise _fail(env, key, value, "an object of threshold overrides")
    out = []
    for name, number in value.items():
        if name not in known:
            raise _fail(env, f"{key}.{name}", number, f"a known threshold: {', '.join(sorted(known))}")
        if isinstance(number, bool) or not isinstance(number, (int, float)) or number < 0:
            raise _fail(env, f"{key}.{name}", number, "a number >= 0")
        out.append((name, float(number)))
    return tuple(sorted(out))


def _parse_alarms(r: _Reader) -> AlarmSettings:
    e = r.env
    result = AlarmSettings(
        emails=r.get("emails", (), _list_of(e, _pattern(e, EMAIL_RE, "an email address"))),
        slack_workspace_id=r.get(
            "slack_workspace_id", None, _pattern(e, r"T[A-Z0-9]{6,}", "a Slack team ID like T0123ABCD")
        ),
        slack_channel_id=r.get(
            "slack_channel_id", None, _pattern(e, r"[CG][A-Z0-9]{6,}", "a Slack channel ID like C0123ABCD")
        ),
        paging_url=r.get("paging_url", None, _pattern(e, r"https://\S+", "an https:// URL")),
        thresholds=r.get("thresholds", (), lambda key, value: _parse_thresholds(e, key, value)),
    )
    r.finish([f.name for f in fields(AlarmSettings)])
    if (result.slack_workspace_id is None) != (result.slack_channel_id is None):
        raise _fail(
            e,
            r.key("slack_channel_id"),
            result.slack_channel_id,
            "slack_workspace_id and slack_channel_id set together (or neither)",
        )
    return result


def _parse_guardrails(r: _Reader) -> GuardrailSettings:
    e = r.env
    result = GuardrailSettings(
        deny_direct_mutation_role_arns=r.get(
            "deny_direct_mutation_role_arns", (), _list_of(e, _pattern(e, ROLE_ARN_RE, "an IAM role ARN"))
        ),
        drift_check_minutes=r.get("drift_check_minutes", 60, _int_in(e, 5, 1440)),
    )
    r.finish([f.name for f in fields(GuardrailSettings)])
    return result


def _parse_mapped_api(r: _Reader) -> MappedApi | None:
    if not r.raw:
        return None
    e = r.env
    api_id = r.get("rest_api_id", "", _pattern(e, r"[a-z0-9]{10}", "a REST API ID like a1b2c3d4e5"))
    stage = r.get("stage", "", _pattern(e, r"[A-Za-z0-9_-]{1,128}", "a stage name like Prod"))
    r.finish([f.name for f in fields(MappedApi)])
    for key, value in (("rest_api_id", api_id), ("stage", stage)):
        if not value:
            raise _fail(e, r.key(key), None, "required when mapped_api is set")
    return MappedApi(rest_api_id=api_id, stage=stage)


def _parse_custom_domain(r: _Reader, region: str | None) -> CustomDomainSettings | None:
    if not r.raw:
        return None
    e = r.env
    domain = r.get(
        "domain_name", "", _pattern(e, DOMAIN_RE, "a lower-case DNS name like api.credentialmate.com")
    )
    certificate = r.get(
        "certificate_arn", "", _pattern(e, CERTIFICATE_ARN_RE, "an ACM certificate ARN (arn:aws:acm:...)")
    )
    endpoint: Literal["REGIONAL", "EDGE"] = r.get(
        "endpoint_type", "REGIONAL", _choice(e, ("REGIONAL", "EDGE"))
    )
    zone_id = r.get(
        "hosted_zone_id", None, _pattern(e, HOSTED_ZONE_RE, "a Route 53 hosted zone ID like Z0123456789ABC")
    )
    zone_name = r.get("hosted_zone_name", None, _pattern(e, DOMAIN_RE, "the hosted zone's DNS name"))
    mapped = _parse_mapped_api(r.child("mapped_api"))
    r.finish([f.name for f in fields(CustomDomainSettings)])
    for key, value in (("domain_name", domain), ("certificate_arn", certificate)):
        if not value:
            raise _fail(e, r.key(key), None, "required when custom_domain is set")
    if (zone_id is None) != (zone_name is None):
        raise _fail(
            e,
            r.key("hosted_zone_name"),
            zone_name,
            "hosted_zone_id and hosted_zone_name set together (or neither)",
        )
    if zone_name is not None and not (domain == zone_name or domain.endswith("." + zone_name)):
        raise _fail(e, r.key("hosted_zone_name"), zone_name, f"a zone that contains {domain}")
    # API Gateway takes an EDGE certificate from us-east-1 only, a REGIONAL one from the API's region only.
    cert_region = re.fullmatch(CERTIFICATE_ARN_RE, certificate).group(1)  # type: ignore[union-attr]
    if endpoint == "EDGE" and cert_region != "us-east-1":
        raise _fail(
            e, r.key("certificate_arn"), certificate, "a certificate in us-east-1 for an EDGE endpoint"
        )
    if endpoint == "REGIONAL" and region is not None and cert_region != region:
        raise _fail(e, r.key("certificate_arn"), certificate, f"a certificate in the stack's region {region}")
    return CustomDomainSettings(
        domain_name=domain,
        certificate_arn=certificate,
        endpoint_type=endpoint,
        hosted_zone_id=zone_id,
        hosted_zone_name=zone_name,
        mapped_api=mapped,
    )


def parse_environment(name: str, raw: Any) -> EnvironmentConfig:
    if name not in ENVIRONMENT_NAMES:
        raise ConfigError(
            f"cdk.json context environments.{name}: unknown environment; "
            f"allowed: {', '.join(ENVIRONMENT_NAMES)}"
        )
    r = _Reader(name, "", raw if raw is not None else {})
    e = name
    is_prod = name == "prod"
    # Read once: the custom domain's certificate must come from this region.
    region = r.get("region", None, _pattern(e, REGION_RE, "an AWS region like eu-west-1, or null"))
    config = EnvironmentConfig(
        name=name,
        account=r.get("account", None, _pattern(e, ACCOUNT_RE, "a 12-digit AWS account ID, or null")),
        region=region,
        cors_origins=r.get(
            "cors_origins",
            DEFAULT_CORS_ORIGINS,
            _list_of(e, _pattern(e, ORIGIN_RE, "an https:// origin without a path"), min_items=1),
        ),
        function=_parse_function(r.child("function")),
        network=_parse_network(r.child("network")),
        secret_arn=r.get("secret_arn", None, _pattern(e, SECRET_ARN_RE, "a Secrets Manager secret ARN")),
        alarms=_parse_alarms(r.child("alarms")),
        deployment=_parse_deployment(
            r.child("deployment"), "Canary10Percent5Minutes" if is_prod else "AllAtOnce"
        ),
        log_retention_days=r.get("log_retention_days", 30, _choice(e, LOG_RETENTION_DAYS)),
        campaign_schedule=r.get(
            "campaign_schedule",
            "rate(1 hour)",
            _pattern(e, SCHEDULE_RE, "rate(N minutes|hours|days) or cron(6 fields)"),
        ),
        campaign_schedule_enabled=r.get("campaign_schedule_enabled", True, _bool(e)),
        termination_protection=r.get("termination_protection", is_prod, _bool(e)),
        guardrails=_parse_guardrails(r.child("guardrails")),
        custom_domain=_parse_custom_domain(r.child("custom_domain"), region),
    )
    r.finish([f.name for f in fields(EnvironmentConfig) if f.name != "name"])
    if (config.account is None) != (config.region is None):
        raise _fail(
            e,
            "region" if config.region is None else "account",
            None,
            "account and region set together (or both null for an environment-agnostic synth)",
        )
    return config


def parse_environments(raw: Any) -> dict[str, EnvironmentConfig]:
    if not isinstance(raw, Mapping):
        raise ConfigError(
            f"cdk.json context environments: invalid value {raw!r}; allowed: an object with "
            f"one block per environment ({', '.join(ENVIRONMENT_NAMES)})"
        )
    missing = [n for n in ENVIRONMENT_NAMES if n not in raw]
    if missing:
        raise ConfigError(
            f"cdk.json context environments.{missing[0]}: missing; every environment "
            f"({', '.join(ENVIRONMENT_NAMES)}) needs a block (it may be empty: {{}})"
        )
    return {name: parse_environment(name, block) for name, block in raw.items()}
