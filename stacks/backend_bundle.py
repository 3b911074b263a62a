"""The backend bundle and its synth-time checks, derived from an environment's function catalog.

No aws_cdk import on purpose: the stack, the local harness, `make local-invoke` and the benchmark all build
the bundle from here, so they cannot disagree about what ships and what is verified, and the scripts do not
pay for jsii's start-up.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path

from stacks.bundling import manifest
from stacks.bundling.spec import DEFAULT_EXCLUDES, BundleSpec, HandlerCheck, bytecode_modules_for, source_root
from stacks.config import ConfigError, EnvironmentConfig, FunctionConfig

REPO_ROOT = Path(__file__).resolve().parents[1]
PROBE_MODULE = REPO_ROOT / "lambda_src" / "probe" / "credmate_probe.py"
MIGRATE_MODULE = REPO_ROOT / "lambda_src" / "migrate" / "credmate_migrate.py"
# Every backend function's Lambda handler: the probe wrapper, which imports the real handler at init.
PROBE_HANDLER = "credmate_probe.handler"
REAL_HANDLER_ENV = "CREDMATE_REAL_HANDLER"
FUNCTION_LABEL_ENV = "CREDMATE_FUNCTION_LABEL"
# What the environment's shared deployment hooks check on this function; its probe answers with it.
CHECKS_ENV = "CREDMATE_CHECKS"
# What a queue URL looks like to a handler at synth-time verification, where the queue does not exist yet.
VERIFY_QUEUE_URL = "https://sqs.us-east-1.amazonaws.com/123456789012/credmate-verify-{name}"


def wrapper_environment(fn: FunctionConfig) -> dict[str, str]:
    """The variables the probe wrapper needs: which real handler to import, which function it is, and what
    the deployment hooks check on it."""
    return {REAL_HANDLER_ENV: fn.handler, FUNCTION_LABEL_ENV: fn.name, CHECKS_ENV: checks_json(fn)}


def has_post_traffic_checks(fn: FunctionConfig) -> bool:
    """The function has checks after traffic shifts: a path the API routes to it (config resolved it)."""
    return fn.post_traffic is not None and fn.post_traffic.health_path is not None


def deployment_checks(fn: FunctionConfig) -> dict[str, object]:
    """The checks the shared hooks run on a new version of `fn` (lambda_src/hooks): before traffic, on the
    version itself; after traffic, through the API on a path routed to it (None: no post-traffic checks)."""
    post = fn.post_traffic if has_post_traffic_checks(fn) else None
    return {
        "pre": {
            "http_health": fn.is_api,
            "health_path": fn.health_path or "/health",
            "uses_database": fn.uses_database,
            "schema_mismatch": fn.deployment.schema_mismatch,
        },
        "post": (
            {"health_path": post.health_path, "login_path": post.login_path, "login_body": post.login_body}
            if post is not None
            else None
        ),
    }


def checks_json(fn: FunctionConfig) -> str:
    return json.dumps(deployment_checks(fn), sort_keys=True, separators=(",", ":"))


def base_environment(config: EnvironmentConfig) -> dict[str, str]:
    """What the stack sets on every function of the environment."""
    env = {"ENVIRONMENT": config.name, "CORS_ALLOWED_ORIGINS": ",".join(config.cors_origins)}
    if config.secret_arn:
        env["COMBINED_SECRET_ARN"] = config.secret_arn
    return env


def function_environment(
    config: EnvironmentConfig, fn: FunctionConfig, queue_urls: Mapping[str, str]
) -> dict[str, str]:
    """Everything function `fn` sees: the environment's variables, its own, its queues' URLs (`queue_urls`:
    variable -> URL) and the probe wrapper's."""
    return {**base_environment(config), **dict(fn.environment), **queue_urls, **wrapper_environment(fn)}


def verify_environment(config: EnvironmentConfig, fn: FunctionConfig) -> dict[str, str]:
    """The function's environment as synth-time verification sees it: the deployed variables, with queue
    URLs (tokens until deploy) replaced by well-formed placeholders, and without the secret's ARN: synth never
    reads secrets or calls AWS, so the handlers are verified as they run with no database configured."""
    placeholders = {var: VERIFY_QUEUE_URL.format(name=target.lower()) for var, target in fn.queue_urls}
    env = function_environment(config, fn, placeholders)
    env.pop("COMBINED_SECRET_ARN", None)
    return env


def bundle_spec(
    config: EnvironmentConfig,
    *,
    backend_root: Path,
    cache_dir: Path,
    extra_files: Mapping[str, Path] | None = None,
) -> BundleSpec:
    """One bundle of the backend's source folder (`backend_root/src`, or `backend_root` itself in the flat
    layout: spec.source_root) plus the probe wrapper, and the migration runner when the environment runs
    migrations, with the dependencies its manifest locks, serves every function of the catalog."""
    fn_settings = config.function
    extra = {"credmate_probe.py": PROBE_MODULE, **(extra_files or {})}
    migrations = config.migrations.directory
    source = source_root(backend_root)
    if config.migrations.enabled:
        if not (source / migrations / "env.py").is_file():
            raise ConfigError(
                f"cdk.json context environments.{config.name}.migrations.directory: "
                f"{source / migrations} has no Alembic env.py; set the folder of the backend's Alembic "
                f"scripts (relative to {source}), or migrations.enabled false for a backend without Alembic"
            )
        extra["credmate_migrate.py"] = MIGRATE_MODULE
    return BundleSpec(
        source_dir=source,
        # pyproject.toml (uv or Poetry) or requirements.txt, in manifest.py's order.
        requirements=manifest.primary_file(backend_root),
        cache_dir=cache_dir,
        runtime=fn_settings.runtime,
        architecture=fn_settings.architecture,
        excludes=DEFAULT_EXCLUDES,
        extra_files=tuple(sorted(extra.items())),
        migrations_dir=f"{migrations}/versions",
        # Bytecode for what init imports: the probe and each real handler's module, and their imports.
        bytecode_modules=bytecode_modules_for([PROBE_HANDLER, *(f.handler for f in config.functions)]),
        handlers=tuple((f.name, f.handler) for f in config.functions),
    )


def handler_checks(config: EnvironmentConfig) -> list[HandlerCheck]:
    """Each function imports from the bundle through the probe wrapper, as Lambda will start it; API
    functions also answer their health path through the real handler."""
    return [
        HandlerCheck(
            function=f.name,
            handler=PROBE_HANDLER,
            http_health=f.is_api,
            health_path=f.health_path or "/health",
            memory_mb=f.memory_mb,
            timeout_seconds=f.timeout_seconds,
            environment=tuple(sorted(verify_environment(config, f).items())),
            label_variables=(FUNCTION_LABEL_ENV,),
        )
        for f in config.functions
    ]
