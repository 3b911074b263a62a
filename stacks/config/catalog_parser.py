"""The parser of the function catalog: `functions` in cdk.json, with an environment's overrides
(`environments.<env>.functions.<name>`), into catalog.py's values.

A bad value is reported where the user wrote it: the environment's override when it wrote that value,
else the catalog entry (stacks/config/reader.py, FunctionReader.where).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import fields, replace
from typing import Any

from stacks.config.catalog import (
    STACK_CONSTRUCT_IDS,
    TRIGGER_TYPES,
    ApiTrigger,
    FunctionConfig,
    NoTrigger,
    PostTrafficSettings,
    ScheduleTrigger,
    SqsTrigger,
    Trigger,
    is_stack_construct_id,
    route_owner,
    unit_construct_ids,
)
from stacks.config.environment import DeploymentSettings, EnvironmentConfig, FunctionSettings
from stacks.config.environment_parser import DEPLOYMENT_CONFIG_ALLOWED, deployment_config, parse_thresholds
from stacks.config.reader import (
    ENV_VAR_RE,
    PATH_RE,
    REQUEST_PATH_RE,
    RESERVED_ENV_PREFIXES,
    RESERVED_ENV_VARS,
    ConfigError,
    FunctionReader,
    catalog_key,
    fail,
)
from stacks.hook_budget import check_fits

FUNCTION_NAME_RE = r"[A-Z][A-Za-z0-9]{0,47}"
HANDLER_RE = r"[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)+"
SCHEDULE_RE = r"rate\(\d+ (minute|minutes|hour|hours|day|days)\)|cron\(\S+ \S+ \S+ \S+ \S+ \S+\)"
# The keys a catalog entry may have, one a line (a list like others, e.g. canary.py's TRIGGER_EVENTS).
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


def _parse_trigger(r: FunctionReader) -> Trigger:
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
            if not isinstance(path, str) or not re.fullmatch(PATH_RE, path):
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


def _parse_function_environment(r: FunctionReader) -> tuple[tuple[str, str], ...]:
    raw = r.obj(("environment",), None)
    out = []
    for key, value in raw.items():
        if not re.fullmatch(ENV_VAR_RE, key):
            raise r.fail(("environment", key), key, "environment variable names like DATABASE_POOL_SIZE")
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
    r = FunctionReader(env, name, base, override or {})
    unknown = sorted(set(r.raw) - set(FUNCTION_KEYS))
    if unknown:
        raise ConfigError(f"{r.where(unknown[0])}: unknown key; allowed keys: {', '.join(FUNCTION_KEYS)}")
    handler = r.text(("handler",), HANDLER_RE, "module.function, e.g. handlers.auth.main", None)
    if handler is None:
        raise r.fail(("handler",), None, "required: module.function, e.g. handlers.auth.main")
    trigger = _parse_trigger(r)
    is_api = isinstance(trigger, ApiTrigger)
    health_path = r.text(("health_path",), REQUEST_PATH_RE, "a path like /health or /health/", None)
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
            login_path=r.text(("post_traffic", "login_path"), PATH_RE, "a path like /auth/login", None),
            login_body=r.text(("post_traffic", "login_body"), "json|form", "json or form", "json"),  # type: ignore[arg-type]
            health_path=r.text(
                ("post_traffic", "health_path"),
                REQUEST_PATH_RE,
                "a path like /goals/health or /goals/health/",
                None,
            ),
        )
        if is_api
        else None
    )
    # The catalog's own login path, read apart from the environment's override: security.py's default.
    declared_login_path = (
        FunctionReader(env, name, base, {}).text(
            ("post_traffic", "login_path"), PATH_RE, "a path like /auth/login", None
        )
        if is_api
        else None
    )
    queue_urls = r.obj(("queue_urls",), None)
    for var, target in queue_urls.items():
        if not re.fullmatch(ENV_VAR_RE, var) or var.startswith(RESERVED_ENV_PREFIXES):
            raise r.fail(("queue_urls", var), var, "environment variable names like WORKER_QUEUE_URL")
        if not isinstance(target, str):
            raise r.fail(("queue_urls", var), target, "the name of a function with an sqs trigger")
    deployment = _parse_function_deployment(r, env_config.deployment)
    alarm_overrides = parse_thresholds(
        r.obj(("alarms",), None), lambda path, value, allowed: r.fail(("alarms", *path), value, allowed)
    )
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
        declared_login_path=declared_login_path,
    )


def _parse_function_deployment(r: FunctionReader, defaults: DeploymentSettings) -> DeploymentSettings:
    """A function's `deployment`, each key defaulting to the environment's."""
    r.obj(("deployment",), [f.name for f in fields(DeploymentSettings)])
    raw_config = r.value("deployment", "config")
    config = defaults.config if raw_config is None else deployment_config(raw_config)
    if config is None:
        raise r.fail(("deployment", "config"), raw_config, DEPLOYMENT_CONFIG_ALLOWED)
    schema = r.text(("deployment", "schema_mismatch"), "fail|warn", "fail, warn", defaults.schema_mismatch)
    return DeploymentSettings(config=config, schema_mismatch=schema)  # type: ignore[arg-type]


def _assign_construct_ids(env: str, functions: tuple[FunctionConfig, ...]) -> tuple[FunctionConfig, ...]:
    """Any valid name works: a function whose name (or an ID derived from it) is one of the stacks' own IDs
    gets `<name>Function` as its construct ID, so `Api`, `Dashboard` or `Alarms` deploy like any other.
    Names keep their own IDs otherwise, so no existing function is ever renamed. Two functions whose IDs
    would still meet (`Worker` and `WorkerQueue`: Worker's queue) are refused, naming both."""
    out: list[FunctionConfig] = []
    taken: dict[str, str] = {}
    for fn in functions:
        if any(is_stack_construct_id(i) for i in unit_construct_ids(fn)):
            fn = replace(fn, construct_id=f"{fn.name}Function")
        for construct_id in unit_construct_ids(fn):
            other = taken.get(construct_id)
            if other is not None or is_stack_construct_id(construct_id):
                what = f"function {other}" if other else "the stack itself"
                raise ConfigError(
                    f"{catalog_key(env, fn.name)}: its resources would take the "
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
        raise fail(env, "functions", overrides, "an object of per-function overrides")
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
    # Where each function's values are written (its catalog entry or the environment's override).
    where = {
        name: FunctionReader(env, name, spec, overrides.get(name) or {}).where
        for name, spec in catalog.items()
    }
    catch_all = [f.name for f in functions if isinstance(f.trigger, ApiTrigger) and f.trigger.catch_all]
    if len(catch_all) > 1:
        raise ConfigError(
            f"{where[catch_all[1]]('trigger')}: {catch_all[0]} already takes "
            "the API's catch-all proxy; give this function `paths` (at most one api function has none)"
        )
    owner: dict[str, str] = {}
    for f in functions:
        for path in f.trigger.paths if isinstance(f.trigger, ApiTrigger) else ():
            if path in owner:
                raise ConfigError(
                    f"{where[f.name]('trigger', 'paths')}: {path} is already "
                    f"routed to {owner[path]}; each path prefix goes to one function"
                )
            owner[path] = f.name
        for var, target in f.queue_urls:
            if target not in by_name or not isinstance(by_name[target].trigger, SqsTrigger):
                sqs_names = [n for n, g in by_name.items() if isinstance(g.trigger, SqsTrigger)]
                raise ConfigError(
                    f"{where[f.name]('queue_urls', var)}: invalid value "
                    f"{target!r}; allowed: a function with an sqs trigger ({', '.join(sqs_names) or 'none'})"
                )
    rules: dict[str, str] = {}
    for f in functions:
        if isinstance(f.trigger, ScheduleTrigger):
            rule_id = f.trigger.rule_construct_id(f.name)
            if rule_id in rules:
                raise ConfigError(
                    f"{where[f.name]('trigger', 'rule_id')}: the schedule rule ID {rule_id} is already "
                    f"{rules[rule_id]}'s; each schedule rule needs its own"
                )
            rules[rule_id] = f.name
    if env_config.custom_domain is not None and not any(f.is_api for f in functions):
        raise fail(
            env, "custom_domain", env_config.custom_domain.domain_name, "null: no function has an api trigger"
        )
    functions = tuple(_with_post_traffic_path(where[f.name], f, functions) for f in functions)
    return _assign_construct_ids(env, functions)


def _with_post_traffic_path(
    where: Callable[..., str], fn: FunctionConfig, functions: Sequence[FunctionConfig]
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
            f"{where('post_traffic', 'health_path')}: {explicit} is "
            "not routed to this function by the API; allowed: a path under its trigger.paths"
        )
    if not routed:
        if post.login_path:
            raise ConfigError(
                f"{where('post_traffic', 'login_path')}: the "
                f"post-traffic checks need a path the API routes to this function, and health_path "
                f"{fn.health_path} is not one; allowed: a post_traffic.health_path under its trigger.paths"
            )
        return replace(fn, post_traffic=None)
    return replace(fn, post_traffic=replace(post, health_path=candidate))
