"""The function catalog (context key `functions`): defaults, per-environment overrides, the command line's
JSON string, and one clear message per bad value naming the environment, the function and the key."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest

from stacks.backend_bundle import bundle_spec, handler_checks, verify_environment
from stacks.config import (
    ApiTrigger,
    ConfigError,
    NoTrigger,
    ScheduleTrigger,
    SqsTrigger,
    parse_catalog_context,
    parse_environments,
)

CDK_JSON = Path(__file__).resolve().parents[1] / "cdk.json"


def context() -> dict[str, Any]:
    return json.loads(CDK_JSON.read_text())["context"]


def catalog() -> dict[str, Any]:
    return copy.deepcopy(context()["functions"])


def environments() -> dict[str, Any]:
    return copy.deepcopy(context()["environments"])


def test_default_catalog_describes_the_three_functions() -> None:
    prod = parse_environments(environments(), catalog())["prod"]
    api, worker, scheduler = prod.functions
    assert (api.name, api.handler, api.trigger) == ("BackendApi", "handler.lambda_handler", ApiTrigger())
    assert api.health_path == "/health" and api.post_traffic is not None
    assert api.post_traffic.login_path == "/api/v1/auth/login"
    assert (worker.name, worker.trigger) == ("Worker", SqsTrigger(batch_size=10))
    assert worker.health_path is None and worker.post_traffic is None
    assert scheduler.trigger == ScheduleTrigger(expression="rate(1 hour)", rule_id="CampaignSchedule")
    assert scheduler.queue_urls == (("WORKER_QUEUE_URL", "Worker"),)
    # Environment-wide defaults reach every function.
    assert {f.memory_mb for f in prod.functions} == {1024}
    assert {f.deployment.config for f in prod.functions} == {"Canary10Percent5Minutes"}
    assert all(f.uses_database for f in prod.functions)


def test_environment_overrides_merge_into_the_function() -> None:
    envs = environments()
    envs["staging"]["functions"] = {
        "CampaignScheduler": {"trigger": {"enabled": False}, "memory_mb": 512},
        "Worker": {"alarms": {"error_rate_percent": 1}, "deployment": {"config": "Canary10Percent10Minutes"}},
        "BackendApi": {"environment": {"LOG_LEVEL": "debug"}, "reserved_concurrency": 50},
    }
    staging = parse_environments(envs, catalog())["staging"]
    scheduler = staging.function_named("CampaignScheduler")
    # The trigger merges key by key: the expression stays, only `enabled` changes.
    assert scheduler.trigger == ScheduleTrigger("rate(1 hour)", enabled=False, rule_id="CampaignSchedule")
    assert scheduler.memory_mb == 512
    worker = staging.function_named("Worker")
    assert worker.thresholds.error_rate_percent == 1.0
    assert worker.thresholds.throttles == staging.thresholds.throttles
    assert worker.deployment.config == "Canary10Percent10Minutes"
    assert worker.deployment.schema_mismatch == staging.deployment.schema_mismatch
    api = staging.function_named("BackendApi")
    assert dict(api.environment) == {"LOG_LEVEL": "debug"} and api.reserved_concurrency == 50
    # Overrides are per environment: prod is untouched.
    prod = parse_environments(envs, catalog())["prod"]
    assert prod.function_named("CampaignScheduler").trigger.enabled  # type: ignore[union-attr]


def test_command_line_catalog_is_json_text_and_replaces_the_default() -> None:
    text = json.dumps(
        {
            "Auth": {"handler": "handlers.auth.main", "trigger": {"type": "api"}},
            "CreateGoal": {
                "handler": "handlers.goals.create_goal.main",
                "trigger": {"type": "api", "paths": ["/goals"]},
                "health_path": "/goals/health",
            },
            "Nightly": {
                "handler": "jobs.nightly.run",
                "trigger": {"type": "schedule", "expression": "cron(0 3 * * ? *)"},
            },
            "Internal": {"handler": "jobs.internal.run", "trigger": {"type": "none"}},
        }
    )
    envs = environments()
    prod = parse_environments(envs, parse_catalog_context(text))["prod"]
    assert [f.name for f in prod.functions] == ["Auth", "CreateGoal", "Nightly", "Internal"]
    assert prod.function_named("CreateGoal").trigger == ApiTrigger(paths=("/goals",))
    assert prod.function_named("Internal").trigger == NoTrigger()
    assert [f.name for f in prod.api_functions] == ["Auth", "CreateGoal"]


def test_bundle_spec_and_checks_follow_the_catalog(tmp_path: Path) -> None:
    text = {
        "Auth": {
            "handler": "handlers.auth.main",
            "trigger": {"type": "api"},
            "health_path": "/healthz",
            "environment": {"JWT_AUDIENCE": "credmate"},
            "memory_mb": 512,
        },
        "Jobs": {"handler": "jobs.run.main", "trigger": {"type": "sqs"}},
        "Kick": {
            "handler": "jobs.kick.main",
            "trigger": {"type": "none"},
            "queue_urls": {"JOBS_URL": "Jobs"},
        },
    }
    prod = parse_environments(environments(), text)["prod"]
    spec = bundle_spec(prod, backend_root=tmp_path, cache_dir=tmp_path / "cache")
    assert spec.handlers == (
        ("Auth", "handlers.auth.main"),
        ("Jobs", "jobs.run.main"),
        ("Kick", "jobs.kick.main"),
    )
    assert set(spec.bytecode_modules) == {"credmate_probe", "handlers.auth", "jobs.run", "jobs.kick"}
    checks = {c.function: c for c in handler_checks(prod)}
    assert checks["Auth"].http_health and checks["Auth"].health_path == "/healthz"
    assert not checks["Jobs"].http_health
    assert checks["Auth"].memory_mb == 512
    auth_env = dict(checks["Auth"].environment)
    assert auth_env["JWT_AUDIENCE"] == "credmate"
    assert auth_env["CREDMATE_REAL_HANDLER"] == "handlers.auth.main"
    assert auth_env["CREDMATE_FUNCTION_LABEL"] == "Auth"
    # A queue URL is a token until deploy: verification gets a well-formed placeholder.
    kick_env = verify_environment(prod, prod.function_named("Kick"))
    assert kick_env["JOBS_URL"].startswith("https://sqs.") and "jobs" in kick_env["JOBS_URL"]
    # Synth never reads secrets: verification runs without the secret's ARN, as with no database configured.
    envs = environments()
    envs["prod"]["secret_arn"] = "arn:aws:secretsmanager:eu-west-1:123456789012:secret:credmate/prod-AbCdEf"
    with_secret = parse_environments(envs, text)["prod"]
    assert "COMBINED_SECRET_ARN" not in verify_environment(with_secret, with_secret.function_named("Auth"))


API = {"handler": "handler.main", "trigger": {"type": "api"}}

BAD_CATALOGS: list[tuple[str, Any, dict[str, Any] | None, str]] = [
    # (case, catalog, staging overrides, text the message must contain)
    ("empty catalog", {}, None, "cdk context functions: invalid value {}"),
    (
        "bad name",
        {"backend-api": API},
        None,
        "functions.backend-api (environment staging): invalid function name",
    ),
    ("missing handler", {"Api": {"trigger": {"type": "api"}}}, None, "functions.Api.handler"),
    ("handler without module", {"Api": {**API, "handler": "main"}}, None, "functions.Api.handler"),
    ("unknown trigger", {"Api": {**API, "trigger": {"type": "http"}}}, None, "functions.Api.trigger.type"),
    (
        "unknown trigger key",
        {"Q": {"handler": "q.main", "trigger": {"type": "sqs", "paths": ["/x"]}}},
        None,
        "functions.Q.trigger.paths",
    ),
    (
        "batch size",
        {"Q": {"handler": "q.main", "trigger": {"type": "sqs", "batch_size": 0}}},
        None,
        "functions.Q.trigger.batch_size",
    ),
    (
        "schedule without expression",
        {"S": {"handler": "s.main", "trigger": {"type": "schedule"}}},
        None,
        "functions.S.trigger.expression",
    ),
    (
        "bad schedule",
        {"S": {"handler": "s.main", "trigger": {"type": "schedule", "expression": "every hour"}}},
        None,
        "functions.S.trigger.expression",
    ),
    ("bad path", {"Api": {**API, "trigger": {"type": "api", "paths": ["goals/"]}}}, None, "trigger.paths"),
    ("two catch-alls", {"A": API, "B": API}, None, "B.trigger"),
    (
        "path routed twice",
        {
            "A": {**API, "trigger": {"type": "api", "paths": ["/goals"]}, "health_path": "/goals/health"},
            "B": {**API, "trigger": {"type": "api", "paths": ["/goals"]}, "health_path": "/goals/health"},
        },
        None,
        "functions.B.trigger.paths",
    ),
    ("memory", {"Api": {**API, "memory_mb": 64}}, None, "functions.Api.memory_mb"),
    ("timeout", {"Api": {**API, "timeout_seconds": 901}}, None, "functions.Api.timeout_seconds"),
    (
        "timeout the pre-traffic hook cannot wait for",
        {"Api": {**API, "timeout_seconds": 600}},
        None,
        "functions.Api.timeout_seconds (environment",
    ),
    ("concurrency", {"Api": {**API, "reserved_concurrency": 0}}, None, "functions.Api.reserved_concurrency"),
    (
        "environment value",
        {"Api": {**API, "environment": {"PORT": 80}}},
        None,
        "functions.Api.environment.PORT",
    ),
    (
        "reserved variable",
        {"Api": {**API, "environment": {"CREDMATE_REAL_HANDLER": "x.y"}}},
        None,
        "functions.Api.environment.CREDMATE_REAL_HANDLER",
    ),
    (
        "health path on a worker",
        {"Q": {"handler": "q.main", "trigger": {"type": "sqs"}, "health_path": "/health"}},
        None,
        "functions.Q.health_path",
    ),
    (
        "post-traffic path the API routes elsewhere",
        {
            "G": {
                **API,
                "trigger": {"type": "api", "paths": ["/goals"]},
                "post_traffic": {"health_path": "/health"},
            }
        },
        None,
        "functions.G.post_traffic.health_path",
    ),
    (
        "login check without a routed health path",
        {
            "G": {
                **API,
                "trigger": {"type": "api", "paths": ["/goals"]},
                "post_traffic": {"login_path": "/goals/in"},
            }
        },
        None,
        "functions.G.post_traffic.login_path",
    ),
    (
        "construct IDs that meet",
        {
            "Worker": {"handler": "w.main", "trigger": {"type": "sqs"}},
            "WorkerQueue": {"handler": "q.main", "trigger": {"type": "none"}},
        },
        None,
        "WorkerQueue, already used by function Worker",
    ),
    ("unknown key", {"Api": {**API, "memory": 512}}, None, "functions.Api.memory"),
    (
        "queue of a non-sqs function",
        {"Api": API, "S": {"handler": "s.main", "trigger": {"type": "none"}, "queue_urls": {"Q_URL": "Api"}}},
        None,
        "functions.S.queue_urls.Q_URL",
    ),
    (
        "bad deployment",
        {"Api": {**API, "deployment": {"config": "Fast"}}},
        None,
        "functions.Api.deployment.config",
    ),
    ("unknown alarm", {"Api": {**API, "alarms": {"errors": 1}}}, None, "functions.Api.alarms.errors"),
    ("uses_database", {"Api": {**API, "uses_database": "yes"}}, None, "functions.Api.uses_database"),
    # Overrides are named where they were written: environments.<env>.functions.<name>.<key>.
    (
        "override of an unknown function",
        {"Api": API},
        {"Apii": {"memory_mb": 512}},
        "environments.staging.functions.Apii",
    ),
    (
        "bad override value",
        {"Api": API},
        {"Api": {"timeout_seconds": 0}},
        "environments.staging.functions.Api.timeout_seconds",
    ),
    (
        "override breaks the trigger",
        {"Api": API},
        {"Api": {"trigger": {"type": "schedule"}}},
        "environments.staging.functions.Api.trigger",
    ),
]


@pytest.mark.parametrize(
    ("case", "functions", "overrides", "expected"), BAD_CATALOGS, ids=[c[0] for c in BAD_CATALOGS]
)
def test_each_bad_catalog_value_gets_a_message_naming_environment_function_and_key(
    case: str, functions: Any, overrides: dict[str, Any] | None, expected: str
) -> None:
    envs = environments()
    if overrides is not None:
        envs["staging"]["functions"] = overrides
    with pytest.raises(ConfigError) as err:
        parse_environments(envs, functions)
    message = str(err.value)
    assert expected in message, message
    assert "allowed" in message or "already" in message or "no function" in message, message
    # The environment is always named: in the key path or in parentheses.
    assert "staging" in message or "prod" in message or "cdk context functions:" in message, message


def test_bad_catalog_messages_are_all_distinct() -> None:
    messages = set()
    for _case, functions, overrides, _expected in BAD_CATALOGS:
        envs = environments()
        if overrides is not None:
            envs["staging"]["functions"] = overrides
        with pytest.raises(ConfigError) as err:
            parse_environments(envs, functions)
        messages.add(str(err.value))
    assert len(messages) == len(BAD_CATALOGS)


def test_command_line_catalog_that_is_not_json_names_the_key() -> None:
    with pytest.raises(ConfigError, match="cdk context functions: not valid JSON"):
        parse_catalog_context("{Api: handler.main}")


def test_custom_domain_needs_an_api_function() -> None:
    envs = environments()
    envs["prod"]["custom_domain"] = {
        "domain_name": "api.credentialmate.com",
        "certificate_arn": (
            "arn:aws:acm:us-east-1:123456789012:certificate/12345678-1234-1234-1234-123456789012"
        ),
    }
    with pytest.raises(
        ConfigError, match=r"environments\.prod\.custom_domain.*no function has an api trigger"
    ):
        parse_environments(envs, {"Q": {"handler": "q.main", "trigger": {"type": "sqs"}}})


def test_migrations_need_the_backends_alembic_scripts(tmp_path: Path) -> None:
    envs = environments()
    envs["prod"]["secret_arn"] = "arn:aws:secretsmanager:eu-west-1:123456789012:secret:credmate/prod-AbCdEf"
    envs["prod"]["migrations"] = {"enabled": True, "directory": "db/alembic"}
    prod = parse_environments(envs, catalog())["prod"]
    (tmp_path / "src").mkdir()
    with pytest.raises(
        ConfigError, match=r"environments\.prod\.migrations\.directory: .*db/alembic has no Alembic"
    ):
        bundle_spec(prod, backend_root=tmp_path, cache_dir=tmp_path / "cache")
    (tmp_path / "src" / "db" / "alembic").mkdir(parents=True)
    (tmp_path / "src" / "db" / "alembic" / "env.py").write_text("")
    spec = bundle_spec(prod, backend_root=tmp_path, cache_dir=tmp_path / "cache")
    assert "credmate_migrate.py" in dict(spec.extra_files)
    assert spec.migrations_dir == "db/alembic/versions"
