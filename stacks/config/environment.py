"""An environment's settings (`environments.<env>` in cdk.json) as typed, frozen values.

The parser (environment_parser.py) validates every value once; stacks and constructs trust what they get.
The security settings live in security.py, the function catalog in catalog.py.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Literal

from stacks.config.security import SecuritySettings

if TYPE_CHECKING:
    from stacks.config.catalog import FunctionConfig

Architecture = Literal["x86_64", "arm64"]
SchemaMismatchPolicy = Literal["fail", "warn"]

ENVIRONMENT_NAMES = ("staging", "prod")
SUPPORTED_RUNTIMES = ("python3.11", "python3.12", "python3.13", "python3.14")
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


@dataclass(frozen=True)
class AlarmThresholds:
    """Alarm thresholds; `alarms.thresholds` (per environment) and `functions.<name>.alarms` (per function)
    override any field by name. Values are validated by the parser, once."""

    # One field per threshold: data, alike in shape line by line.
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
    moves (expand/contract: docs/runbook-procedures.md#migrations). Off for backends without Alembic."""

    enabled: bool = False
    # The Alembic script folder, relative to the backend's source folder (where env.py and versions/ live).
    directory: str = "migrations"
    # Variables the migration step runs with besides the stack's own (ENVIRONMENT, COMBINED_SECRET_ARN...):
    # what the backend's env.py needs when it imports the app's settings (fastapi's template: SECRET_KEY).
    environment: tuple[tuple[str, str], ...] = ()


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
