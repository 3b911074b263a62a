"""The catalog drives the stack: today's templates keep every logical ID, a new catalog entry gets the whole
safety net with no code change, and a backend with another layout synthesizes and verifies as it is."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import REPO_ROOT

ENVS = ("staging", "prod")
FIXTURES = REPO_ROOT / "tests" / "fixtures"


def _template(outdir: Path, env: str) -> dict[str, Any]:
    return json.loads((outdir / f"credmate-backend-{env}.template.json").read_text())


def _ids(tpl: dict[str, Any], type_: str, prefix: str) -> list[str]:
    return sorted(k for k, v in tpl["Resources"].items() if v["Type"] == type_ and k.startswith(prefix))


# Types whose deployed resources may be replaced by resources of another logical ID. An inline
# AWS::IAM::Policy holds no state: its statements now live in a customer-managed policy attached to the same
# role (stacks/constructs/managed_policy_role.py). CloudFormation creates and attaches the new policy during
# the update (every function waits for it) and deletes the old one only in the cleanup phase, after
# everything else has been updated, so the role is never without its permissions.
REPLACEABLE_TYPES = frozenset({"AWS::IAM::Policy"})


def _stable(ids: dict[str, str]) -> dict[str, str]:
    """Logical IDs minus the content-hashed types (a new one on every change of what they hash) and the
    stateless ones that may be replaced (REPLACEABLE_TYPES)."""
    from stacks.constructs.stack_policy import CONTENT_HASHED_TYPES

    return {k: t for k, t in ids.items() if t not in CONTENT_HASHED_TYPES | REPLACEABLE_TYPES}


def _synth(tmp_path_factory: pytest.TempPathFactory, context: dict[str, Any], name: str) -> dict[str, Any]:
    import aws_cdk as cdk

    from app import build_app, write_policies

    outdir = tmp_path_factory.mktemp(name)
    app = cdk.App(context=context, outdir=str(outdir))
    stacks, policies = build_app(app)
    app.synth()  # cdk-nag included: a new function must not bring unacknowledged findings
    write_policies(outdir, policies)
    return {"outdir": outdir, "stacks": stacks}


# What the lean layout of a large catalog (one pre- and one post-traffic hook, one CodeDeploy role and one
# FunctionRole per environment) retired on purpose, by logical-ID prefix, with the reason. None holds state:
# a retired hook log group is RETAIN, so its logs stay in the account. Nothing else may disappear.
RETIRED: dict[str, str] = (
    {
        f"{fn}CanaryPreTrafficHook": "the environment's shared hook replaces each function's own"
        for fn in ("BackendApi", "Worker", "CampaignScheduler")
    }
    | {
        "BackendApiCanaryPostTrafficHook": "the environment's shared hook replaces each function's own",
    }
    | {
        f"{fn}CanaryDeploymentGroupServiceRole": "the environment's one CodeDeploy role replaces each group's"
        for fn in ("BackendApi", "Worker", "CampaignScheduler")
    }
    | {
        f"CodeDriftCheck{fn}CodeDriftAlarm": "one CodeDrift alarm per stack replaces one per function"
        for fn in ("BackendApi", "Worker", "CampaignScheduler")
    }
    | {
        f"{fn}Alarms{f}": "timeouts are read from Duration, and INIT_REPORT statuses share one filter"
        for fn in ("BackendApi", "Worker", "CampaignScheduler")
        for f in ("TimeoutsFilter", "InitErrorsFilter2")
    }
    | {
        "BackendApiFunctionServiceRole": "a function with no grants of its own uses its stack's FunctionRole",
    }
)
STATELESS_OR_RETAINED = {
    "AWS::Lambda::Function",
    "AWS::Logs::LogGroup",
    "AWS::IAM::Role",
    "AWS::CloudWatch::Alarm",
    "AWS::Logs::MetricFilter",
}


@pytest.mark.parametrize("env", ENVS)
def test_default_catalog_keeps_every_logical_id_of_the_live_templates(
    synthesized: dict[str, Any], env: str
) -> None:
    """GIVEN the templates deployed before the catalog existed (versions excluded: they change with code;
    API deployments too: a new one is how any API change is published, by design)
    WHEN today's default catalog is synthesized
    THEN every resource is still there under the same logical ID and type, so an upgrade replaces nothing."""
    before = _stable(json.loads((FIXTURES / "logical_ids" / f"credmate-backend-{env}.json").read_text()))
    resources = _template(Path(synthesized["outdir"]), env)["Resources"]
    now = {k: v["Type"] for k, v in resources.items()}
    retired = {k for k in before if any(k.startswith(prefix) for prefix in RETIRED)}
    missing = sorted(k for k in before if k not in now and k not in retired)
    assert not missing, f"renamed or removed (CloudFormation would replace them): {missing}"
    assert {k: now[k] for k in before if k not in retired} == {
        k: before[k] for k in before if k not in retired
    }
    # Each retired ID is really gone, holds no state, and each reason still names something.
    assert not retired & set(now)
    assert {before[k] for k in retired} <= STATELESS_OR_RETAINED
    assert all(any(k.startswith(p) for k in retired) for p in RETIRED), "a RETIRED entry matches nothing"


@pytest.fixture(scope="module")
def four_functions(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    context = json.loads((REPO_ROOT / "cdk.json").read_text())["context"]
    functions = copy.deepcopy(context["functions"])
    # The fourth entry reuses a real handler of the sample: what matters is that no code names it.
    functions["Reminders"] = {
        "handler": "worker.lambda_handler",
        "description": "Renewal reminders (SQS)",
        "trigger": {"type": "sqs", "batch_size": 5},
        "reserved_concurrency": 5,
        "environment": {"REMINDER_BATCH": "50"},
    }
    # Prod also runs the backend's migrations in the deploy (they need the database secret).
    context["environments"]["prod"]["secret_arn"] = SECRET
    context["environments"]["prod"]["migrations"] = {
        "enabled": True,
        "directory": "migrations",
        "environment": {
            "SETTINGS_MODULE": "app.settings"
        },  # what an env.py importing the app's settings needs
    }
    return _synth(tmp_path_factory, {**context, "functions": json.dumps(functions)}, "four-functions")


SECRET = "arn:aws:secretsmanager:eu-west-1:123456789012:secret:credmate/prod-AbCdEf"


@pytest.mark.synth
def test_migrations_run_after_every_new_version_and_before_any_alias_moves(
    four_functions: dict[str, Any],
) -> None:
    tpl = _template(four_functions["outdir"], "prod")
    res = tpl["Resources"]
    (trigger,) = [k for k, v in res.items() if v["Type"] == "Custom::Migrations"]
    (runner,) = _ids(tpl, "AWS::Lambda::Function", "MigrationsFunction")
    assert res[runner]["Properties"]["Handler"] == "credmate_migrate.handler"
    # The runner ships in the very bundle the functions run.
    (api_fn,) = _ids(tpl, "AWS::Lambda::Function", "BackendApiFunction")
    assert res[runner]["Properties"]["Code"] == res[api_fn]["Properties"]["Code"]
    variables = res[runner]["Properties"]["Environment"]["Variables"]
    assert variables["COMBINED_SECRET_ARN"] == SECRET and variables["SETTINGS_MODULE"] == "app.settings"
    after = res[trigger].get("DependsOn", [])
    for name in ("BackendApi", "Worker", "CampaignScheduler", "Reminders"):
        (fn_id,) = _ids(tpl, "AWS::Lambda::Function", f"{name}Function")
        (alias_id,) = _ids(tpl, "AWS::Lambda::Alias", f"{name}LiveAlias")
        assert fn_id in after, f"migrations must wait for {name}'s new code"
        assert trigger in res[alias_id].get("DependsOn", []), f"{name}'s alias must wait for the migrations"
    # Staging (migrations off in cdk.json) has no step and no runner in its bundle.
    staging = _template(four_functions["outdir"], "staging")
    assert not [k for k, v in staging["Resources"].items() if v["Type"] == "Custom::Migrations"]
    assert not (four_functions["stacks"]["staging"].bundle.result.directory / "credmate_migrate.py").exists()
    assert (four_functions["stacks"]["prod"].bundle.result.directory / "credmate_migrate.py").is_file()


@pytest.mark.synth
def test_a_fourth_catalog_entry_gets_the_whole_safety_net(four_functions: dict[str, Any]) -> None:
    outdir = four_functions["outdir"]
    tpl = _template(outdir, "prod")
    res = tpl["Resources"]
    (fn_id,) = _ids(tpl, "AWS::Lambda::Function", "RemindersFunction")
    fn = res[fn_id]["Properties"]
    assert fn["Handler"] == "credmate_probe.handler"
    assert fn["Environment"]["Variables"]["CREDMATE_REAL_HANDLER"] == "worker.lambda_handler"
    assert fn["Environment"]["Variables"]["REMINDER_BATCH"] == "50"
    assert fn["ReservedConcurrentExecutions"] == 5
    (alias_id,) = _ids(tpl, "AWS::Lambda::Alias", "RemindersLiveAlias")
    alias = res[alias_id]
    assert alias["Properties"]["Name"] == "live"
    (group_id,) = _ids(tpl, "AWS::CodeDeploy::DeploymentGroup", "RemindersCanaryDeploymentGroup")
    hooks = alias["UpdatePolicy"]["CodeDeployLambdaAliasUpdate"]
    assert hooks["DeploymentGroupName"] == {"Ref": group_id}
    (pre_hook,) = _ids(tpl, "AWS::Lambda::Function", "DeploymentHooksPreTrafficHook")
    assert hooks["BeforeAllowTrafficHook"] == {"Ref": pre_hook}  # the environment's one, shared
    group = res[group_id]["Properties"]
    assert group["DeploymentConfigName"] == "CodeDeployDefault.LambdaCanary10Percent5Minutes"
    assert set(group["AutoRollbackConfiguration"]["Events"]) >= {
        "DEPLOYMENT_FAILURE",
        "DEPLOYMENT_STOP_ON_ALARM",
    }
    rollback_alarms = json.dumps(group["AlarmConfiguration"]["Alarms"])
    assert "RemindersAlarmsErrorRate" in rollback_alarms and "RemindersAlarmsInitErrors" in rollback_alarms
    # Its own queue, dead-letter queue, event source on the alias, and their alarms.
    assert _ids(tpl, "AWS::SQS::Queue", "RemindersQueue") and _ids(
        tpl, "AWS::SQS::Queue", "RemindersDeadLetterQueue"
    )
    mappings = [m["Properties"] for m in res.values() if m["Type"] == "AWS::Lambda::EventSourceMapping"]
    assert any(alias_id in json.dumps(m["FunctionName"]) and m["BatchSize"] == 5 for m in mappings)
    alarms = _ids(tpl, "AWS::CloudWatch::Alarm", "RemindersAlarms")
    for key in (
        "ErrorRate",
        "InitErrors",
        "Throttles",
        "TimeoutRate",
        "DurationP99",
        "DlqDepth",
        "DlqOldestAge",
    ):
        assert any(a.startswith(f"RemindersAlarms{key}") for a in alarms), key
    # Dashboard row, stack policy, drift check and out-of-band alert name it.
    (dashboard,) = _ids(tpl, "AWS::CloudWatch::Dashboard", "Dashboard")
    assert "Reminders" in json.dumps(res[dashboard]["Properties"]["DashboardBody"])
    policy = json.loads((outdir / "credmate-backend-prod.stack-policy.json").read_text())
    (deny,) = [s for s in policy["Statement"] if s["Effect"] == "Deny"]
    denied = {r.removeprefix("LogicalResourceId/") for r in deny["Resource"]}
    assert {fn_id, alias_id, group_id} <= denied
    drift = [
        r
        for k, r in res.items()
        if r["Type"] == "AWS::Lambda::Function" and k.startswith("CodeDriftCheckFunction")
    ]
    assert drift and fn_id in json.dumps(drift[0]["Properties"]["Environment"])
    rules = [r["Properties"] for r in res.values() if r["Type"] == "AWS::Events::Rule"]
    assert any("EventPattern" in r and fn_id in json.dumps(r["EventPattern"]) for r in rules)
    # Nothing that already existed moved.
    before = _stable(json.loads((FIXTURES / "logical_ids" / "credmate-backend-prod.json").read_text()))
    assert {k for k in before if not any(k.startswith(p) for p in RETIRED)} <= set(res)


@pytest.fixture(scope="module")
def layout_backend(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """A backend written for this test: handlers/ and contexts/ packages, its own handler names and an
    environment variable that its modules read at import."""
    context = json.loads((REPO_ROOT / "cdk.json").read_text())["context"]
    functions = {
        "Auth": {
            "handler": "handlers.auth.main",
            "trigger": {"type": "api", "paths": ["/auth"]},
            "health_path": "/auth/health",
            "memory_mb": 512,
            "timeout_seconds": 20,
            # Its health answer checks that verification passes the catalog's environment and a context
            # object with this function's name, memory and timeout.
            "environment": {
                "LAYOUT_SERVICE_NAME": "credmate-test",
                "LAYOUT_EXPECT_MEMORY": "512",
                "LAYOUT_EXPECT_TIMEOUT_MS": "20000",
            },
        },
        "CreateGoal": {
            "handler": "handlers.goals.create_goal.main",
            "trigger": {"type": "none"},
            "environment": {"LAYOUT_SERVICE_NAME": "credmate-test"},
            "memory_mb": 256,
        },
    }
    return _synth(
        tmp_path_factory,
        {**context, "backend_root": str(FIXTURES / "layout_backend"), "functions": json.dumps(functions)},
        "layout",
    )


@pytest.mark.synth
def test_a_backend_with_another_layout_synthesizes_and_verifies(layout_backend: dict[str, Any]) -> None:
    stack = layout_backend["stacks"]["prod"]
    assert stack.bundle.verified
    assert (stack.bundle.result.directory / "handlers" / "goals" / "create_goal.py").is_file()
    tpl = _template(layout_backend["outdir"], "prod")
    handlers = {
        k: v["Properties"]["Environment"]["Variables"]["CREDMATE_REAL_HANDLER"]
        for k, v in tpl["Resources"].items()
        if v["Type"] == "AWS::Lambda::Function" and "CREDMATE_REAL_HANDLER" in json.dumps(v["Properties"])
    }
    assert sorted(handlers.values()) == ["handlers.auth.main", "handlers.goals.create_goal.main"]
    assert tpl["Metadata"]["CredmateBundles"][0]["verified"] is True
    # No catalog queue, no schedule, no sample function: only what the catalog asked for (and the
    # environment's failed-invocations queue, for the hooks and checks). The API routes /auth (no catch-all
    # function), and the lazily imported sdist-only dependency is recorded for the probe.
    assert _ids(tpl, "AWS::SQS::Queue", "") == _ids(tpl, "AWS::SQS::Queue", "AsyncFailuresQueue")
    assert not _ids(tpl, "AWS::Lambda::Function", "BackendApi")
    paths = {
        r["Properties"]["PathPart"]
        for r in tpl["Resources"].values()
        if r["Type"] == "AWS::ApiGateway::Resource"
    }
    assert paths == {"auth", "{proxy+}"}
    build_info = json.loads((stack.bundle.result.directory / "build_info.json").read_text())
    assert "docopt" in build_info["lazy_imports"]["CreateGoal"]


def test_layout_backend_without_its_import_time_environment_stops_synth(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    from stacks.bundling.spec import BundlingError

    context = json.loads((REPO_ROOT / "cdk.json").read_text())["context"]
    functions = {
        "Auth": {"handler": "handlers.auth.main", "trigger": {"type": "api"}, "health_path": "/healthz"}
    }
    with pytest.raises(BundlingError) as caught:
        _synth(
            tmp_path_factory,
            {
                **context,
                "backend_root": str(FIXTURES / "layout_backend"),
                "functions": json.dumps(functions),
            },
            "layered-no-env",
        )
    message = str(caught.value)
    assert "function Auth" in message and "LAYOUT_SERVICE_NAME" in message
    assert "functions.Auth.environment" in message, "the hint names the catalog key to fix"


@pytest.mark.synth
def test_a_catalog_without_api_functions_has_no_api(tmp_path_factory: pytest.TempPathFactory) -> None:
    """A backend of workers only: no REST API, API alarms or firewall, and everything else as usual."""
    context = json.loads((REPO_ROOT / "cdk.json").read_text())["context"]
    functions = {
        "Jobs": {
            "handler": "handlers.goals.create_goal.main",
            "trigger": {"type": "sqs", "batch_size": 2},
            "environment": {"LAYOUT_SERVICE_NAME": "credmate-test"},
        }
    }
    synth = _synth(
        tmp_path_factory,
        {**context, "backend_root": str(FIXTURES / "layout_backend"), "functions": json.dumps(functions)},
        "workers-only",
    )
    tpl = _template(synth["outdir"], "prod")
    types = {v["Type"] for v in tpl["Resources"].values()}
    assert not {t for t in types if t.startswith(("AWS::ApiGateway::", "AWS::WAFv2::"))}
    assert _ids(tpl, "AWS::Lambda::Alias", "JobsLiveAlias")
    assert _ids(tpl, "AWS::CodeDeploy::DeploymentGroup", "JobsCanaryDeploymentGroup")
    assert not _ids(tpl, "AWS::Lambda::Function", "JobsCanaryPostTrafficHook")
    assert _ids(tpl, "AWS::SQS::Queue", "JobsQueue")
    assert not _ids(tpl, "AWS::CloudWatch::Alarm", "ApiAlarms")
    policy = json.loads((synth["outdir"] / "credmate-backend-prod.stack-policy.json").read_text())
    assert any(s["Effect"] == "Deny" for s in policy["Statement"])
