"""Every environment with its function catalog: the one entry point app.py calls.

The environment's settings (environment_parser.py) are read first, the catalog (catalog_parser.py) as that
environment deploys it second, then the checks that need both: the login routes the security settings
default to, and the rule that every throttled route is served by an API function.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from typing import Any

from stacks.config.catalog import FunctionConfig, route_owner
from stacks.config.catalog_parser import parse_catalog_context, parse_functions
from stacks.config.environment import ENVIRONMENT_NAMES, EnvironmentConfig
from stacks.config.environment_parser import parse_settings
from stacks.config.reader import ConfigError, catalog_key, env_key

# parse_environments(raw) without a catalog reads the settings alone (scripts/alarm_table/ needs no
# functions); a catalog given as None is cdk.json without its `functions` key, which synth refuses.
SETTINGS_ONLY: Any = object()
CATALOG_EXAMPLE = """{"Api": {"handler": "handler.main", "trigger": {"type": "api"}}}"""


def parse_environment(name: str, raw: Any, catalog: Any = SETTINGS_ONLY) -> EnvironmentConfig:
    parsed = parse_settings(name, raw)
    config = parsed.config
    if catalog is SETTINGS_ONLY:
        return config
    if catalog is None:
        raise ConfigError(
            "cdk.json context functions: missing; the function catalog is required beside environments "
            f"(an object with at least one function, e.g. {CATALOG_EXAMPLE})"
        )
    functions = parse_functions(parse_catalog_context(catalog), config, parsed.function_overrides)
    security = config.security
    if not parsed.login_routes_written:
        declared = (f.declared_login_path for f in functions if f.is_api)
        security = replace(security, login_routes=tuple(dict.fromkeys(p for p in declared if p)))
    config = replace(config, functions=functions, security=security)
    _check_routes_served(config, defaulted=not parsed.login_routes_written)
    return config


def _check_routes_served(config: EnvironmentConfig, *, defaulted: bool) -> None:
    """A throttled or WAF-protected route no API function serves would be an API resource with nowhere to
    send its requests."""
    functions = config.functions
    none_served = "served by no API function (no catch-all, no matching trigger.paths)"
    for i, path in enumerate(config.security.login_routes):
        if route_owner(functions, path) is not None:
            continue
        if defaulted:
            fn = _declaring(functions, path)
            where = catalog_key(config.name, fn, "post_traffic", "login_path")
            fix = f"set {env_key(config.name, 'security.login_routes')} to the routes to protect"
            raise ConfigError(
                f"{where}: {path} is {none_served} (security.login_routes defaults to it); {fix}"
            )
        where = env_key(config.name, f"security.login_routes[{i}]")
        raise ConfigError(f"{where}: {path} is {none_served}")
    for i, m in enumerate(config.security.throttle.method_limits):
        if route_owner(functions, m.path) is None:
            where = env_key(config.name, f"security.throttle.method_limits[{i}].path")
            raise ConfigError(f"{where}: {m.method} {m.path} is {none_served}")


def _declaring(functions: tuple[FunctionConfig, ...], path: str) -> str:
    return next(f.name for f in functions if f.declared_login_path == path)


def parse_environments(raw: Any, catalog: Any = SETTINGS_ONLY) -> dict[str, EnvironmentConfig]:
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
