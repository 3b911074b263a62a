"""The function catalog (context key `functions`, name -> spec) as typed, frozen values.

Overridable per environment under `environments.<env>.functions.<name>`. Adding a function is one catalog
entry; every function gets its alias, canary, hooks, alarms, dashboard row, stack-policy entries and drift
check from it. The parser is catalog_parser.py.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from stacks.config.environment import AlarmThresholds, DeploymentSettings


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
    # The login route the catalog entry declares (`functions.<name>.post_traffic.login_path`, before any
    # environment's override): what `security.login_routes` defaults to, so switching the post-traffic
    # login check off in an environment leaves the login protections as they are.
    declared_login_path: str | None = None

    @property
    def is_api(self) -> bool:
        return isinstance(self.trigger, ApiTrigger)

    @property
    def handler_module(self) -> str:
        return self.handler.rpartition(".")[0]


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


def is_stack_construct_id(construct_id: str) -> bool:
    return construct_id in STACK_CONSTRUCT_IDS or bool(_STACK_CONSTRUCT_ID_RE.fullmatch(construct_id))


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
