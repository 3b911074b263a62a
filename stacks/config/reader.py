"""Reading cdk.json: `ConfigError`, the readers, and the wording of every configuration error.

Every error names the key exactly where the user wrote it (`cdk.json context environments.prod.alarms...`
or `cdk.json context functions.Api...`), the value, and what is allowed, in one line: app.py prints it and
stops, without a traceback. The parsers (environment_parser.py, security.py, catalog_parser.py) only read
through these helpers, so the wording stays the same everywhere.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any, TypeVar

T = TypeVar("T")

# A literal API path as the client calls it: leading slash, no trailing slash, no {parameters}. Routed
# prefixes, login paths and throttled routes use it: each names an API Gateway resource too.
PATH_RE = r"(/[A-Za-z0-9._~-]+)+"
# A path only requested (health checks): also the root, or with a trailing slash. FastAPI serves a route
# declared with one (`@router.get("/health-check/")`) only with it; without it the check gets a redirect.
REQUEST_PATH_RE = r"/|(/[A-Za-z0-9._~-]+)+/?"
ENV_VAR_RE = r"[A-Za-z_][A-Za-z0-9_]*"
# Set by the stack on every function and the migration step: a catalog `environment` (or the migrations')
# may not redefine them.
RESERVED_ENV_VARS = ("ENVIRONMENT", "CORS_ALLOWED_ORIGINS", "COMBINED_SECRET_ARN")
RESERVED_ENV_PREFIXES = ("CREDMATE_", "AWS_", "LAMBDA_", "_")


class ConfigError(ValueError):
    """A configuration value that must be fixed in cdk.json (or on the command line with -c)."""


def env_key(env: str, key: str) -> str:
    """Where an environment's setting is written."""
    return f"cdk.json context environments.{env}.{key}"


def fail(env: str, key: str, value: Any, allowed: str) -> ConfigError:
    return ConfigError(f"{env_key(env, key)}: invalid value {value!r}; allowed: {allowed}")


class Reader:
    """Reads one mapping of an environment's settings, remembering which keys were consumed so unknown keys
    can be reported."""

    def __init__(self, env: str, prefix: str, raw: Any) -> None:
        if not isinstance(raw, Mapping):
            raise fail(env, prefix.rstrip("."), raw, "an object")
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

    def child(self, name: str) -> Reader:
        self.seen.add(name)
        return Reader(self.env, f"{self.key(name)}.", self.raw.get(name) or {})

    def finish(self, allowed: Sequence[str]) -> None:
        unknown = sorted(set(self.raw) - self.seen)
        if unknown:
            where = self.prefix.rstrip(".") or "<environment>"
            raise ConfigError(
                f"{env_key(self.env, self.prefix + unknown[0])}: unknown key in "
                f"{where}; allowed keys: {', '.join(sorted(allowed))}"
            )


def int_in(env: str, low: int, high: int) -> Callable[[str, Any], int]:
    def check(key: str, value: Any) -> int:
        if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
            raise fail(env, key, value, f"an integer from {low} to {high}")
        return value

    return check


def choice(env: str, choices: Sequence[Any]) -> Callable[[str, Any], Any]:
    def check(key: str, value: Any) -> Any:
        if value not in choices:
            raise fail(env, key, value, ", ".join(str(c) for c in choices))
        return value

    return check


def boolean(env: str) -> Callable[[str, Any], bool]:
    def check(key: str, value: Any) -> bool:
        if not isinstance(value, bool):
            raise fail(env, key, value, "true or false")
        return value

    return check


def pattern(env: str, regex: str, what: str) -> Callable[[str, Any], str]:
    compiled = re.compile(regex)

    def check(key: str, value: Any) -> str:
        if not isinstance(value, str) or not compiled.fullmatch(value):
            raise fail(env, key, value, what)
        return value

    return check


def list_of(
    env: str, item: Callable[[str, Any], str], *, min_items: int = 0
) -> Callable[[str, Any], tuple[str, ...]]:
    def check(key: str, value: Any) -> tuple[str, ...]:
        if not isinstance(value, list) or len(value) < min_items:
            raise fail(env, key, value, f"a list of at least {min_items} item(s)")
        return tuple(item(f"{key}[{i}]", v) for i, v in enumerate(value))

    return check


def positive_number(env: str, high: float) -> Callable[[str, Any], float]:
    def check(key: str, value: Any) -> float:
        if isinstance(value, bool) or not isinstance(value, int | float) or not 0 < value <= high:
            raise fail(env, key, value, f"a number of requests per second above 0, at most {high:g}")
        return float(value)

    return check


# ---------------------------------------------------------------------------------------------------------
# The function catalog: `functions.<name>` in cdk.json, overridable per environment under
# `environments.<env>.functions.<name>`.

# Keys whose values are objects: an environment's override merges into them key by key.
MERGED_KEYS = ("trigger", "environment", "queue_urls", "deployment", "alarms", "post_traffic")


def catalog_key(env: str, name: str, *path: str) -> str:
    """Where a catalog entry's value is written (the environment named, since overrides may differ)."""
    return f"cdk.json context {'.'.join(('functions', name, *path))} (environment {env})"


class FunctionReader:
    """Reads one function's spec as one environment deploys it, and names where a bad value came from."""

    def __init__(self, env: str, name: str, base: Mapping[str, Any], override: Mapping[str, Any]) -> None:
        self.env, self.name, self.override = env, name, override
        merged: dict[str, Any] = dict(base)
        # Keys whose whole value is the override's: a non-object override, or a trigger of another type
        # (the catalog's `batch_size` means nothing to a schedule trigger, so it is not carried over).
        self.replaced: set[str] = set()
        for key, value in override.items():
            old = base.get(key)
            if (
                key in MERGED_KEYS
                and isinstance(value, Mapping)
                and isinstance(old, Mapping)
                and not (key == "trigger" and "type" in value and value["type"] != old.get("type"))
            ):
                merged[key] = {**old, **value}
            else:
                merged[key] = value
                self.replaced.add(key)
        self.raw = merged

    def written_by_override(self, path: Sequence[str]) -> bool:
        """Whether the environment's override wrote the value at `path` (or the object replacing it)."""
        if not path or path[0] in self.replaced:
            return bool(path)
        node: Any = self.override
        for part in path:
            if not isinstance(node, Mapping) or part not in node:
                return False
            node = node[part]
        return True

    def where(self, *path: str) -> str:
        """Where to fix the value: the environment's override when it wrote that value, else the catalog
        entry, with the environment named."""
        if self.written_by_override(path):
            return env_key(self.env, ".".join(("functions", self.name, *path)))
        return catalog_key(self.env, self.name, *path)

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
