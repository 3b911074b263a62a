"""Typed, validated configuration for each environment.

`app.py` is the only place that reads CDK context; it hands the raw `environments` block to
`parse_environments`, which returns frozen objects or raises `ConfigError` with one message naming the
environment, the key, the value and what is allowed. Stacks and constructs only ever see these objects.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, fields, replace
from typing import Any, Literal, TypeVar

from stacks.hook_budget import check_fits

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
# scripts/deploy/smoke_test.py require of it.
CORS_METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")
CORS_HEADERS = ("Authorization", "Content-Type")


class ConfigError(ValueError):
    """A configuration value that must be fixed in cdk.json (or on the command line with -c)."""


@dataclass(frozen=True)
class AlarmThresholds:
    """Alarm thresholds; `alarms.thresholds` (per environment) and `functions.<name>.alarms` (per function)
    override any field by name. Values are validated by the parser, once."""

    error_rate_percent: float = 5.0
    throttles: float = 1.0
    timeout_rate_percent: float = 1.0
    init_errors: float = 1.0
    duration_p99_fraction_of_timeout: float = 0.8
    dlq_depth: float = 0.0
    # Dead letters unhandled for a day: redrive or discard well before the queue's 14-day retention.
    dlq_oldest_age_seconds: float = 86400.0
    # Fewer invocations than this within a scheduled function's expected window means it missed its runs.
    scheduler_min_invocations: float = 1.0
    api_5xx_count: float = 10.0
    api_5xx_rate_percent: float = 5.0
    # API Gateway's integration limit is 29 s; a cold start of the backend bundle is about 2.5 s.
    api_latency_p99_ms: float = 5000.0
    health_check_failures: float = 1.0
    # Requests the API's web ACL blocks in 5 minutes (security.waf): password guessing, scanning, or a
    # managed rule refusing real clients.
    waf_blocked_requests: float = 100.0

    def with_overrides(self, overrides: Sequence[tuple[str, float]]) -> AlarmThresholds:
        return replace(self, **dict(overrides))


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
    # Overrides of AlarmThresholds fields by name; validated by the parser.
    thresholds: tuple[tuple[str, float], ...] = ()

    @property
    def has_slack(self) -> bool:
        return self.slack_workspace_id is not None and self.slack_channel_id is not None


@dataclass(frozen=True)
class GuardrailSettings:
    # Roles (e.g. the human admin role) that get a policy denying direct mutation of the functions.
    deny_direct_mutation_role_arns: tuple[str, ...] = ()
    drift_check_minutes: int = 60


@dataclass(frozen=True)
class MigrationSettings:
    """Alembic migrations run by the deploy, after the functions' new versions exist and before any alias
    moves (expand/contract: docs/runbook.md). Off for backends without Alembic."""

    enabled: bool = False
    # The Alembic script folder, relative to the backend's src/ (where env.py and versions/ live).
    directory: str = "migrations"


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
class MethodLimit:
    """A stricter API Gateway limit on one route (`path` as the client calls it, without the stage)."""

    path: str
    method: str
    rate_limit: float
    burst_limit: int


@dataclass(frozen=True)
class ThrottleConfig:
    """API Gateway throttling: the stage's limit (all clients together), and stricter per-route limits.

    `login_rate_limit`/`login_burst_limit` apply to POST on every API function's `post_traffic.login_path`
    (the route that spends a password hash per request); `method_limits` add any other route."""

    rate_limit: float = 100.0
    burst_limit: int = 200
    login_rate_limit: float = 5.0
    login_burst_limit: int = 10
    method_limits: tuple[MethodLimit, ...] = ()


@dataclass(frozen=True)
class WafConfig:
    """The regional WAFv2 web ACL on the API stage (stacks/constructs/waf.py)."""

    enabled: bool = False
    # Requests one client IP may send to the login path in 5 minutes before WAF answers 429.
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


# ---------------------------------------------------------------------------------------------------------
# The function catalog: context key `functions` (name -> spec), overridable per environment under
# `environments.<env>.functions.<name>`. Adding a function is one catalog entry; every function gets its
# alias, canary, hooks, alarms, dashboard row, stack-policy entries and drift check from it.


@dataclass(frozen=True)
class ApiTrigger:
    """Invoked by the REST API: `paths` are the path prefixes routed to the function; none = the catch-all
    proxy (at most one function per catalog)."""

    paths: tuple[str, ...] = ()

    @property
    def catch_all(self) -> bool:
        return not self.paths


@dataclass(frozen=True)
class SqsTrigger:
    """Its own queue and dead-letter queue (`<name>Queue`, `<name>DeadLetterQueue`)."""

    batch_size: int = 10


@dataclass(frozen=True)
class ScheduleTrigger:
    expression: str
    # False while another stack's copy of the function still runs on schedule (a migration): two schedulers
    # would do every run twice. No MissedRuns alarm while off.
    enabled: bool = True
    # Construct ID of the EventBridge rule, default `<name>Schedule`; set it to keep an existing rule's
    # logical ID (a replaced rule fires twice while old and new both exist).
    rule_id: str | None = None

    def rule_construct_id(self, function: str) -> str:
        return self.rule_id or f"{function}Schedule"


@dataclass(frozen=True)
class NoTrigger:
    """Invoked by other code (`lambda:InvokeFunction` on the live alias)."""


Trigger = ApiTrigger | SqsTrigger | ScheduleTrigger | NoTrigger
TRIGGER_TYPES = ("api", "sqs", "schedule", "none")


@dataclass(frozen=True)
class PostTrafficSettings:
    """The API function's extra post-traffic check: a request with credentials that cannot exist to
    `login_path` must answer 401, not 5xx (the checks of /health and CORS always run)."""

    login_path: str | None = None
    login_body: Literal["json", "form"] = "json"
    # The path the post-traffic checks GET through the API: one the API routes to this function (default:
    # the function's health_path when it is routed to it). None: the function has no post-traffic checks.
    health_path: str | None = None


@dataclass(frozen=True)
class FunctionConfig:
    """One function of the catalog, as one environment deploys it (defaults and overrides applied)."""

    name: str
    handler: str  # module.function inside the bundle (dotted modules allowed)
    trigger: Trigger
    description: str
    memory_mb: int
    timeout_seconds: int
    reserved_concurrency: int | None
    environment: tuple[tuple[str, str], ...]
    # Environment variable -> SQS-triggered function whose queue URL it holds (send rights are granted).
    queue_urls: tuple[tuple[str, str], ...]
    health_path: str | None  # API functions only
    uses_database: bool
    deployment: DeploymentSettings
    thresholds: AlarmThresholds
    post_traffic: PostTrafficSettings | None  # API functions only
    # The ID its resources' construct IDs derive from: the name, or `<name>Function` when the name (or an ID
    # derived from it) is one the stacks use themselves (STACK_CONSTRUCT_IDS). See unit_construct_ids.
    construct_id: str = ""

    @property
    def is_api(self) -> bool:
        return isinstance(self.trigger, ApiTrigger)

    @property
    def handler_module(self) -> str:
        return self.handler.rpartition(".")[0]


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
    termination_protection: bool = False
    guardrails: GuardrailSettings = field(default_factory=GuardrailSettings)
    custom_domain: CustomDomainSettings | None = None
    migrations: MigrationSettings = field(default_factory=MigrationSettings)
    security: SecuritySettings = field(default_factory=SecuritySettings)
    functions: tuple[FunctionConfig, ...] = ()

    @property
    def stack_name(self) -> str:
        return f"credmate-backend-{self.name}"

    @property
    def thresholds(self) -> AlarmThresholds:
        """The environment's thresholds (per-function overrides live on each FunctionConfig)."""
        return AlarmThresholds().with_overrides(self.alarms.thresholds)

    @property
    def api_functions(self) -> tuple[FunctionConfig, ...]:
        return tuple(f for f in self.functions if f.is_api)

    def function_named(self, name: str) -> FunctionConfig:
        for f in self.functions:
            if f.name == name:
                return f
        raise KeyError(name)


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


def _parse_deployment(
    r: _Reader, default_config: str | CustomCanary, default_schema: SchemaMismatchPolicy = "fail"
) -> DeploymentSettings:
    e = r.env
    result = DeploymentSettings(
        config=r.get("config", default_config, _deployment_config(e)),
        schema_mismatch=r.get("schema_mismatch", default_schema, _choice(e, ("fail", "warn"))),
    )
    r.finish([f.name for f in fields(DeploymentSettings)])
    return result


def _parse_thresholds(env: str, key: str, value: Any) -> tuple[tuple[str, float], ...]:
    known = {f.name for f in fields(AlarmThresholds)}
    if not isinstance(value, Mapping):
        raise _fail(env, key, value, "an object of threshold overrides")
    out = []
    for name, number in value.items():
        if name not in known:
            raise _fail(env, f"{key}.{name}", number, f"a known threshold: {', '.join(sorted(known))}")
        if isinstance(number, bool) or not isinstance(number, (int, float)) or not 0 <= number < math.inf:
            raise _fail(env, f"{key}.{name}", number, "a finite number >= 0")
        if name == "duration_p99_fraction_of_timeout" and not 0 < number <= 1:
            raise _fail(env, f"{key}.{name}", number, "a fraction of the timeout in (0, 1]")
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


def _parse_migrations(r: _Reader) -> MigrationSettings:
    e = r.env
    result = MigrationSettings(
        enabled=r.get("enabled", False, _bool(e)),
        directory=r.get(
            "directory",
            "migrations",
            _pattern(e, r"[A-Za-z0-9_.-]+(/[A-Za-z0-9_.-]+)*", "a folder relative to src/, like migrations"),
        ),
    )
    r.finish([f.name for f in fields(MigrationSettings)])
    if ".." in result.directory.split("/"):
        raise _fail(e, r.key("directory"), result.directory, "a folder inside src/ (no ..)")
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


# ---------------------------------------------------------------------------------------------------------
# The function catalog's parser

FUNCTION_NAME_RE = r"[A-Z][A-Za-z0-9]{0,47}"
HANDLER_RE = r"[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)+"
API_PATH_RE = r"(/[A-Za-z0-9._~-]+)+"
ENV_VAR_RE = r"[A-Za-z_][A-Za-z0-9_]*"
# Set by the stack on every function: a catalog `environment` may not redefine them.
RESERVED_ENV_VARS = ("ENVIRONMENT", "CORS_ALLOWED_ORIGINS", "COMBINED_SECRET_ARN")
RESERVED_ENV_PREFIXES = ("CREDMATE_", "AWS_", "LAMBDA_", "_")
FUNCTION_KEYS = (
    "handler",
    "trigger",
    "description",
    "memory_mb",
    "timeout_seconds",
    "reserved_concurrency",
    "environment",
    "queue_urls",
    "health_path",
    "uses_database",
    "deployment",
    "alarms",
    "post_traffic",
)
TRIGGER_KEYS: Mapping[str, tuple[str, ...]] = {
    "api": ("type", "paths"),
    "sqs": ("type", "batch_size"),
    "schedule": ("type", "expression", "enabled", "rule_id"),
    "none": ("type",),
}
# Keys whose values are objects: an environment's override merges into them key by key.
_MERGED_KEYS = ("trigger", "environment", "queue_urls", "deployment", "alarms", "post_traffic")


def parse_catalog_context(raw: Any) -> Any:
    """`-c functions='<JSON>'` arrives as a string; cdk.json gives an object."""
    if isinstance(raw, str):
        try:
            return json.loads(raw)
        except ValueError as exc:
            raise ConfigError(
                f"cdk context functions: not valid JSON ({exc}); pass an object like "
                """-c functions='{"Api": {"handler": "handler.main", "trigger": {"type": "api"}}}'"""
            ) from exc
    return raw


class _FunctionReader:
    """Reads one function's spec as one environment deploys it, and names where a bad value came from."""

    def __init__(self, env: str, name: str, base: Mapping[str, Any], override: Mapping[str, Any]) -> None:
        self.env, self.name, self.override = env, name, override
        merged: dict[str, Any] = dict(base)
        for key, value in override.items():
            if key in _MERGED_KEYS and isinstance(value, Mapping) and isinstance(base.get(key), Mapping):
                merged[key] = {**base[key], **value}
            else:
                merged[key] = value
        self.raw = merged

    def where(self, *path: str) -> str:
        """Where to fix the value: the environment's override when it wrote (part of) that key, else the
        catalog entry, with the environment named."""
        if path and path[0] in self.override:
            return f"cdk.json context environments.{self.env}.functions.{self.name}.{'.'.join(path)}"
        return f"cdk.json context functions.{self.name}.{'.'.join(path)} (environment {self.env})"

    def fail(self, path: Sequence[str], value: Any, allowed: str) -> ConfigError:
        return ConfigError(f"{self.where(*path)}: invalid value {value!r}; allowed: {allowed}")

    def value(self, *path: str) -> Any:
        node: Any = self.raw
        for part in path:
            if not isinstance(node, Mapping):
                return None
            node = node.get(part)
        return node

    def int_in(self, path: Sequence[str], low: int, high: int, default: int | None) -> int | None:
        value = self.value(*path)
        if value is None:
            return default
        if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
            raise self.fail(path, value, f"an integer from {low} to {high}")
        return value

    def text(self, path: Sequence[str], regex: str, what: str, default: str | None) -> str | None:
        value = self.value(*path)
        if value is None:
            return default
        if not isinstance(value, str) or not re.fullmatch(regex, value):
            raise self.fail(path, value, what)
        return value

    def flag(self, path: Sequence[str], default: bool) -> bool:
        value = self.value(*path)
        if value is None:
            return default
        if not isinstance(value, bool):
            raise self.fail(path, value, "true or false")
        return value

    def obj(self, path: Sequence[str], allowed_keys: Sequence[str] | None) -> Mapping[str, Any]:
        value = self.value(*path)
        if value is None:
            return {}
        if not isinstance(value, Mapping):
            raise self.fail(path, value, "an object")
        if allowed_keys is not None:
            unknown = sorted(set(value) - set(allowed_keys))
            if unknown:
                raise ConfigError(
                    f"{self.where(*path, unknown[0])}: unknown key; allowed keys: {', '.join(allowed_keys)}"
                )
        return value


def _parse_trigger(r: _FunctionReader) -> Trigger:
    raw = r.value("trigger")
    if not isinstance(raw, Mapping) or raw.get("type") not in TRIGGER_TYPES:
        got = raw.get("type") if isinstance(raw, Mapping) else raw
        raise r.fail(
            ("trigger", "type") if isinstance(raw, Mapping) else ("trigger",),
            got,
            '{"type": "api"} (optional "paths"), {"type": "sqs", "batch_size": N}, '
            '{"type": "schedule", "expression": "rate(...)|cron(...)"} or {"type": "none"}',
        )
    kind = raw["type"]
    r.obj(("trigger",), TRIGGER_KEYS[kind])
    if kind == "api":
        paths = raw.get("paths") or []
        if not isinstance(paths, list):
            raise r.fail(("trigger", "paths"), paths, "a list of path prefixes like /goals")
        for i, path in enumerate(paths):
            if not isinstance(path, str) or not re.fullmatch(API_PATH_RE, path):
                raise r.fail(
                    ("trigger", "paths"), path, f"path prefixes like /goals or /api/v1/goals (item {i})"
                )
        if len(set(paths)) != len(paths):
            raise r.fail(("trigger", "paths"), paths, "each path once")
        return ApiTrigger(paths=tuple(paths))
    if kind == "sqs":
        # Above 10 Lambda needs a batching window; the backend's handlers report partial failures per batch.
        return SqsTrigger(batch_size=r.int_in(("trigger", "batch_size"), 1, 10, 10) or 10)
    if kind == "schedule":
        expression = r.text(
            ("trigger", "expression"), SCHEDULE_RE, "rate(N minutes|hours|days) or cron(6 fields)", None
        )
        if expression is None:
            raise r.fail(("trigger", "expression"), None, "required for a schedule trigger")
        return ScheduleTrigger(
            expression=expression,
            enabled=r.flag(("trigger", "enabled"), True),
            rule_id=r.text(
                ("trigger", "rule_id"), FUNCTION_NAME_RE, "a construct ID like NightlySchedule", None
            ),
        )
    return NoTrigger()


def _parse_function_environment(r: _FunctionReader) -> tuple[tuple[str, str], ...]:
    raw = r.obj(("environment",), None)
    out = []
    for key, value in raw.items():
        if not re.fullmatch(ENV_VAR_RE, key):
            raise r.fail(("environment",), key, "environment variable names like DATABASE_POOL_SIZE")
        if key in RESERVED_ENV_VARS or key.startswith(RESERVED_ENV_PREFIXES):
            raise r.fail(
                ("environment", key),
                value,
                f"a name the stack does not set itself (reserved: {', '.join(RESERVED_ENV_VARS)} and "
                f"names starting with {', '.join(RESERVED_ENV_PREFIXES)})",
            )
        if not isinstance(value, str):
            raise r.fail(("environment", key), value, "a string (Lambda environment values are strings)")
        out.append((key, value))
    return tuple(sorted(out))


def _parse_catalog_entry(
    env: str, name: str, base: Any, override: Any, defaults: FunctionSettings, env_config: EnvironmentConfig
) -> FunctionConfig:
    if not re.fullmatch(FUNCTION_NAME_RE, name):
        raise ConfigError(
            f"cdk.json context functions.{name} (environment {env}): invalid function name; allowed: a "
            "CamelCase construct ID "
            "starting with a capital letter, letters and digits only (e.g. CreateGoal)"
        )
    if not isinstance(base, Mapping):
        raise ConfigError(f"cdk.json context functions.{name}: invalid value {base!r}; allowed: an object")
    if override is not None and not isinstance(override, Mapping):
        raise ConfigError(
            f"cdk.json context environments.{env}.functions.{name}: invalid value {override!r}; "
            "allowed: an object of overrides"
        )
    r = _FunctionReader(env, name, base, override or {})
    unknown = sorted(set(r.raw) - set(FUNCTION_KEYS))
    if unknown:
        raise ConfigError(f"{r.where(unknown[0])}: unknown key; allowed keys: {', '.join(FUNCTION_KEYS)}")
    handler = r.text(("handler",), HANDLER_RE, "module.function, e.g. handlers.auth.main", None)
    if handler is None:
        raise r.fail(("handler",), None, "required: module.function, e.g. handlers.auth.main")
    trigger = _parse_trigger(r)
    is_api = isinstance(trigger, ApiTrigger)
    health_path = r.text(("health_path",), API_PATH_RE, "a path like /health", None)
    if health_path is not None and not is_api:
        raise r.fail(("health_path",), health_path, "only for functions with an api trigger")
    if is_api:
        # The pre-traffic hook invokes the new version directly: any path the app serves will do, routed by
        # the API or not (the post-traffic path, checked in parse_functions, must be routed).
        health_path = health_path or "/health"
    post_raw = r.obj(("post_traffic",), [f.name for f in fields(PostTrafficSettings)])
    if post_raw and not is_api:
        raise r.fail(("post_traffic",), dict(post_raw), "only for functions with an api trigger")
    post_traffic = (
        PostTrafficSettings(
            login_path=r.text(("post_traffic", "login_path"), API_PATH_RE, "a path like /auth/login", None),
            login_body=r.text(("post_traffic", "login_body"), "json|form", "json or form", "json"),  # type: ignore[arg-type]
            health_path=r.text(
                ("post_traffic", "health_path"), API_PATH_RE, "a path like /goals/health", None
            ),
        )
        if is_api
        else None
    )
    queue_urls = r.obj(("queue_urls",), None)
    for var, target in queue_urls.items():
        if not re.fullmatch(ENV_VAR_RE, var) or var.startswith(RESERVED_ENV_PREFIXES):
            raise r.fail(("queue_urls",), var, "environment variable names like WORKER_QUEUE_URL")
        if not isinstance(target, str):
            raise r.fail(("queue_urls", var), target, "the name of a function with an sqs trigger")
    deployment = (
        _parse_deployment(
            _Reader(env, f"functions.{name}.deployment.", r.obj(("deployment",), None)),
            env_config.deployment.config,
            env_config.deployment.schema_mismatch,
        )
        if r.value("deployment")
        else env_config.deployment
    )
    alarm_overrides = _parse_thresholds(env, f"functions.{name}.alarms", r.obj(("alarms",), None))
    environment = _parse_function_environment(r)
    clash = sorted(set(queue_urls) & {k for k, _ in environment})
    if clash:
        raise r.fail(("queue_urls", clash[0]), queue_urls[clash[0]], "a variable not also set in environment")
    timeout_seconds = (
        r.int_in(("timeout_seconds",), 1, 900, defaults.timeout_seconds) or defaults.timeout_seconds
    )
    try:
        # The pre-traffic hook invokes the new version (twice for an API function: probe and health) and
        # must still report before its own 900 s limit.
        check_fits(timeout_seconds, invokes=2 if is_api else 1)
    except ValueError as exc:
        raise r.fail(("timeout_seconds",), timeout_seconds, str(exc)) from exc
    description = r.value("description")
    if description is not None and (not isinstance(description, str) or not 0 < len(description) <= 256):
        raise r.fail(("description",), description, "a text of 1 to 256 characters")
    return FunctionConfig(
        name=name,
        handler=handler,
        trigger=trigger,
        description=description or f"{name} ({handler})",
        memory_mb=r.int_in(("memory_mb",), 128, 10240, defaults.memory_mb) or defaults.memory_mb,
        timeout_seconds=timeout_seconds,
        reserved_concurrency=r.int_in(("reserved_concurrency",), 1, 1000, None),
        environment=environment,
        queue_urls=tuple(sorted(queue_urls.items())),
        health_path=health_path,
        uses_database=r.flag(("uses_database",), False),
        deployment=deployment,
        thresholds=env_config.thresholds.with_overrides(alarm_overrides),
        post_traffic=post_traffic,
        construct_id=name,
    )


# Construct IDs the stacks give their own constructs, beside the functions' (tests/test_catalog_limits.py
# holds this list to what the stacks build). `FunctionGroup<n>` are the nested stacks of a large catalog.
STACK_CONSTRUCT_IDS = frozenset(
    {
        "OnCall",
        "DataKey",
        "Vpc",
        "Migrations",
        "Api",
        "ApiAccessLogs",
        "CustomDomain",
        "Firewall",
        "ApiAlarms",
        "DeployApplication",
        "DeploymentHooks",
        "DeploymentGrants",
        "FunctionRole",
        "ServiceHealth",
        "Dashboard",
        "OutOfBandChangeAlert",
        "CodeDriftCheck",
        "DirectMutationDeny",
        "AsyncFailures",
        "CDKMetadata",
        "BootstrapVersion",
        "CheckBootstrapVersion",
    }
)
_STACK_CONSTRUCT_ID_RE = re.compile(r"(Subnet|SecurityGroup|FunctionGroup)[0-9]+|AssetParameters.*")
# What a function's unit names at stack level, from its construct ID (stacks/function_unit.py).
UNIT_SUFFIXES = ("", "Queue", "DeadLetterQueue", "Alarms", "Canary")


def unit_construct_ids(fn: FunctionConfig) -> tuple[str, ...]:
    """Every stack-level construct ID the unit of `fn` takes."""
    ids = tuple(f"{fn.construct_id}{suffix}" for suffix in UNIT_SUFFIXES)
    if isinstance(fn.trigger, ScheduleTrigger):
        ids += (fn.trigger.rule_construct_id(fn.construct_id),)
    return ids


def _is_stack_construct_id(construct_id: str) -> bool:
    return construct_id in STACK_CONSTRUCT_IDS or bool(_STACK_CONSTRUCT_ID_RE.fullmatch(construct_id))


def _assign_construct_ids(env: str, functions: tuple[FunctionConfig, ...]) -> tuple[FunctionConfig, ...]:
    """Any valid name works: a function whose name (or an ID derived from it) is one of the stacks' own IDs
    gets `<name>Function` as its construct ID, so `Api`, `Dashboard` or `Alarms` deploy like any other.
    Names keep their own IDs otherwise, so no existing function is ever renamed. Two functions whose IDs
    would still meet (`Worker` and `WorkerQueue`: Worker's queue) are refused, naming both."""
    out: list[FunctionConfig] = []
    taken: dict[str, str] = {}
    for fn in functions:
        if any(_is_stack_construct_id(i) for i in unit_construct_ids(fn)):
            fn = replace(fn, construct_id=f"{fn.name}Function")
        for construct_id in unit_construct_ids(fn):
            other = taken.get(construct_id)
            if other is not None or _is_stack_construct_id(construct_id):
                what = f"function {other}" if other else "the stack itself"
                raise ConfigError(
                    f"cdk context functions.{fn.name} (environment {env}): its resources would take the "
                    f"construct ID {construct_id}, already used by {what}; rename one of them (IDs the "
                    f"stacks reserve: {', '.join(sorted(STACK_CONSTRUCT_IDS))}, FunctionGroup<n>)"
                )
            taken[construct_id] = fn.name
        out.append(fn)
    return tuple(out)


def parse_functions(
    catalog: Any, env_config: EnvironmentConfig, overrides: Any
) -> tuple[FunctionConfig, ...]:
    """The catalog as environment `env_config.name` deploys it; cross-function rules checked here."""
    env = env_config.name
    if not isinstance(catalog, Mapping) or not catalog:
        raise ConfigError(
            f"cdk context functions: invalid value {catalog!r}; allowed: an object with at least one "
            "function, "
            """e.g. {"Api": {"handler": "handler.main", "trigger": {"type": "api"}}}"""
        )
    overrides = overrides if overrides is not None else {}
    if not isinstance(overrides, Mapping):
        raise _fail(env, "functions", overrides, "an object of per-function overrides")
    for name in overrides:
        if name not in catalog:
            raise ConfigError(
                f"cdk.json context environments.{env}.functions.{name}: no function {name} in the catalog "
                f"(context key functions: {', '.join(catalog)})"
            )
    functions = tuple(
        _parse_catalog_entry(env, name, spec, overrides.get(name), env_config.function, env_config)
        for name, spec in catalog.items()
    )
    by_name = {f.name: f for f in functions}
    catch_all = [f.name for f in functions if isinstance(f.trigger, ApiTrigger) and f.trigger.catch_all]
    if len(catch_all) > 1:
        raise ConfigError(
            f"cdk context functions.{catch_all[1]}.trigger (environment {env}): {catch_all[0]} already takes "
            "the API's catch-all proxy; give this function `paths` (at most one api function has none)"
        )
    owner: dict[str, str] = {}
    for f in functions:
        for path in f.trigger.paths if isinstance(f.trigger, ApiTrigger) else ():
            if path in owner:
                raise ConfigError(
                    f"cdk context functions.{f.name}.trigger.paths (environment {env}): {path} is already "
                    f"routed to {owner[path]}; each path prefix goes to one function"
                )
            owner[path] = f.name
        for var, target in f.queue_urls:
            if target not in by_name or not isinstance(by_name[target].trigger, SqsTrigger):
                sqs_names = [n for n, g in by_name.items() if isinstance(g.trigger, SqsTrigger)]
                raise ConfigError(
                    f"cdk context functions.{f.name}.queue_urls.{var} (environment {env}): invalid value "
                    f"{target!r}; allowed: a function with an sqs trigger ({', '.join(sqs_names) or 'none'})"
                )
    rule_ids = [
        f.trigger.rule_construct_id(f.name) for f in functions if isinstance(f.trigger, ScheduleTrigger)
    ]
    if len(set(rule_ids)) != len(rule_ids):
        raise ConfigError(
            f"cdk context functions (environment {env}): two schedule rules share an ID {rule_ids}"
        )
    if env_config.custom_domain is not None and not any(f.is_api for f in functions):
        raise _fail(
            env, "custom_domain", env_config.custom_domain.domain_name, "null: no function has an api trigger"
        )
    functions = tuple(_with_post_traffic_path(env, f, functions) for f in functions)
    return _assign_construct_ids(env, functions)


def route_owner(functions: Sequence[FunctionConfig], path: str) -> FunctionConfig | None:
    """The API function a request for `path` reaches: the longest routed prefix, else the catch-all."""
    best: tuple[int, FunctionConfig] | None = None
    for fn in functions:
        if not isinstance(fn.trigger, ApiTrigger):
            continue
        for prefix in fn.trigger.paths:
            if (path == prefix or path.startswith(prefix.rstrip("/") + "/")) and (
                best is None or len(prefix) > best[0]
            ):
                best = (len(prefix), fn)
    if best is not None:
        return best[1]
    return next((f for f in functions if isinstance(f.trigger, ApiTrigger) and f.trigger.catch_all), None)


def _with_post_traffic_path(
    env: str, fn: FunctionConfig, functions: Sequence[FunctionConfig]
) -> FunctionConfig:
    """The post-traffic checks go through the API: their path must reach this function. An explicit
    `post_traffic.health_path` must; otherwise the health path is used when it does, and a function whose
    health path the API routes elsewhere has no post-traffic checks (its pre-traffic hook still GETs the
    health path on the new version directly)."""
    post = fn.post_traffic
    if post is None:
        return fn
    explicit = post.health_path
    candidate = explicit or fn.health_path
    routed = candidate is not None and route_owner(functions, candidate) is fn
    if explicit and not routed:
        raise ConfigError(
            f"cdk context functions.{fn.name}.post_traffic.health_path (environment {env}): {explicit} is "
            "not routed to this function by the API; allowed: a path under its trigger.paths"
        )
    if not routed:
        if post.login_path:
            raise ConfigError(
                f"cdk context functions.{fn.name}.post_traffic.login_path (environment {env}): the "
                f"post-traffic checks need a path the API routes to this function, and health_path "
                f"{fn.health_path} is not one; allowed: a post_traffic.health_path under its trigger.paths"
            )
        return replace(fn, post_traffic=None)
    return replace(fn, post_traffic=replace(post, health_path=candidate))


WAF_RULE_NAME_RE = r"[A-Za-z0-9_-]{1,128}"
LOG_DESTINATION_RE = (
    r"arn:aws[a-z-]*:(logs:[a-z0-9-]+:\d{12}:log-group:aws-waf-logs-[A-Za-z0-9_./#-]+"
    r"|s3:::aws-waf-logs-[a-z0-9.-]+|firehose:[a-z0-9-]+:\d{12}:deliverystream/aws-waf-logs-[A-Za-z0-9_.-]+)"
)
HTTP_METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS")
ROUTE_PATH_RE = r"(/[A-Za-z0-9._~-]+)+"


def _positive_number(env: str, high: float) -> Callable[[str, Any], float]:
    def check(key: str, value: Any) -> float:
        if isinstance(value, bool) or not isinstance(value, int | float) or not 0 < value <= high:
            raise _fail(env, key, value, f"a number of requests per second above 0, at most {high:g}")
        return float(value)

    return check


def _parse_method_limits(env: str, key: str, value: Any) -> tuple[MethodLimit, ...]:
    if not isinstance(value, list):
        raise _fail(env, key, value, "a list of {path, method, rate_limit, burst_limit} objects")
    out = []
    for i, item in enumerate(value):
        r = _Reader(env, f"{key}[{i}].", item)
        limit = MethodLimit(
            path=r.get("path", "", _pattern(env, ROUTE_PATH_RE, "a literal path like /api/v1/auth/login")),
            method=r.get("method", "", _choice(env, HTTP_METHODS)),
            rate_limit=r.get("rate_limit", 0.0, _positive_number(env, 10000)),
            burst_limit=r.get("burst_limit", 0, _int_in(env, 1, 5000)),
        )
        r.finish([f.name for f in fields(MethodLimit)])
        for name in ("path", "method", "rate_limit", "burst_limit"):
            if not getattr(limit, name):
                raise _fail(env, r.key(name), None, "required in every method_limits entry")
        out.append(limit)
    return tuple(out)


def _parse_security(r: _Reader, is_prod: bool) -> SecuritySettings:
    e = r.env
    w = r.child("waf")
    dw = WafConfig()
    waf = WafConfig(
        enabled=w.get("enabled", is_prod, _bool(e)),
        login_rate_limit_per_5min=w.get(
            "login_rate_limit_per_5min", dw.login_rate_limit_per_5min, _int_in(e, 10, 2_000_000_000)
        ),
        count_only_rules=w.get(
            "count_only_rules", (), _list_of(e, _pattern(e, WAF_RULE_NAME_RE, "a managed rule name"))
        ),
        log_destination_arn=w.get(
            "log_destination_arn",
            None,
            _pattern(
                e, LOG_DESTINATION_RE, "the ARN of an aws-waf-logs-* log group, bucket or Firehose stream"
            ),
        ),
    )
    w.finish([f.name for f in fields(WafConfig)])
    t = r.child("throttle")
    dt = ThrottleConfig()
    throttle = ThrottleConfig(
        rate_limit=t.get("rate_limit", dt.rate_limit, _positive_number(e, 10000)),
        burst_limit=t.get("burst_limit", dt.burst_limit, _int_in(e, 1, 5000)),
        login_rate_limit=t.get("login_rate_limit", dt.login_rate_limit, _positive_number(e, 10000)),
        login_burst_limit=t.get("login_burst_limit", dt.login_burst_limit, _int_in(e, 1, 5000)),
        method_limits=t.get("method_limits", (), lambda k, v: _parse_method_limits(e, k, v)),
    )
    t.finish([f.name for f in fields(ThrottleConfig)])
    for name, rate, burst in [
        ("login_rate_limit", throttle.login_rate_limit, throttle.login_burst_limit),
        *((f"method_limits[{i}]", m.rate_limit, m.burst_limit) for i, m in enumerate(throttle.method_limits)),
    ]:
        # A route limit above the stage's never applies: the stage limit is reached first.
        if rate > throttle.rate_limit or burst > throttle.burst_limit:
            raise _fail(
                e,
                t.key(name),
                f"{rate:g}/{burst}",
                f"a rate and burst at most the stage's {throttle.rate_limit:g}/{throttle.burst_limit}",
            )
    keys = [(m.path, m.method) for m in throttle.method_limits]
    for i, k in enumerate(keys):
        if k in keys[:i]:
            raise _fail(e, t.key(f"method_limits[{i}]"), f"{k[1]} {k[0]}", "each route listed once")
    result = SecuritySettings(
        waf=waf,
        throttle=throttle,
        disable_execute_api_endpoint=r.get("disable_execute_api_endpoint", False, _bool(e)),
    )
    r.finish([f.name for f in fields(SecuritySettings)])
    return result


def _check_security(config: EnvironmentConfig) -> None:
    domain = config.custom_domain
    if config.security.disable_execute_api_endpoint and (domain is None or domain.mapped_api is not None):
        raise _fail(
            config.name,
            "security.disable_execute_api_endpoint",
            True,
            "false unless custom_domain is set without mapped_api: the execute-api URL is then the only "
            "way to reach this stack's API",
        )


def parse_environment(name: str, raw: Any, catalog: Any = None) -> EnvironmentConfig:
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
        termination_protection=r.get("termination_protection", is_prod, _bool(e)),
        guardrails=_parse_guardrails(r.child("guardrails")),
        custom_domain=_parse_custom_domain(r.child("custom_domain"), region),
        migrations=_parse_migrations(r.child("migrations")),
        security=_parse_security(r.child("security"), is_prod),
    )
    overrides = r.get("functions", None, lambda _key, value: value)
    r.finish([*(f.name for f in fields(EnvironmentConfig) if f.name not in ("name",)), "functions"])
    if (config.account is None) != (config.region is None):
        raise _fail(
            e,
            "region" if config.region is None else "account",
            None,
            "account and region set together (or both null for an environment-agnostic synth)",
        )
    if config.migrations.enabled and config.secret_arn is None:
        raise _fail(
            e,
            "migrations.enabled",
            True,
            "false while secret_arn is null: the migration step reads the database credentials "
            "from that secret",
        )
    _check_security(config)
    if catalog is None:
        return config
    return replace(config, functions=parse_functions(parse_catalog_context(catalog), config, overrides))


def parse_environments(raw: Any, catalog: Any = None) -> dict[str, EnvironmentConfig]:
    """Every environment with its function catalog (`catalog`: the context key `functions`)."""
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
    return {name: parse_environment(name, block, catalog) for name, block in raw.items()}
