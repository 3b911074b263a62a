"""The synthesized staging and prod stacks: what must hold for a canary deployment to be safe."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import pytest
from aws_cdk.assertions import Template

from tests.cfn_lint import cfn_lint_errors

ENVS = ("staging", "prod")
BACKEND = ("BackendApi", "Worker", "CampaignScheduler")
REAL_HANDLERS = {
    "BackendApi": "handler.lambda_handler",
    "Worker": "worker.lambda_handler",
    "CampaignScheduler": "campaign_scheduler.lambda_handler",
}
# Resources that must never be replaced: their logical IDs are part of the contract with live stacks.
PROTECTED_IDS = {
    "ApiF70053CD",
    "ApiAccessLogsE9DF007D",
    "OnCallKey6DF8E67A",
    "OnCallTopic2FB15ED5",
    "WorkerQueueE3D427EB",
    "WorkerDeadLetterQueue1A7FDBB6",
    "BackendApiFunction3EB85A5D",
    "BackendApiLiveAlias5A421A23",
    "BackendApiCanaryDeploymentGroup3592B64A",
    "WorkerFunctionAF8A26AF",
    "WorkerLiveAliasB1B87D8B",
    "WorkerCanaryDeploymentGroup954CC464",
    "CampaignSchedulerFunction117DAFC8",
    "CampaignSchedulerLiveAlias9EEA7A08",
    "CampaignSchedulerCanaryDeploymentGroup7F655AC5",
}


def template(synthesized: dict[str, Any], env: str) -> dict[str, Any]:
    path = Path(synthesized["outdir"]) / f"credmate-backend-{env}.template.json"
    return json.loads(path.read_text())


def resources(tpl: dict[str, Any], type_: str) -> dict[str, Any]:
    return {k: v for k, v in tpl["Resources"].items() if v["Type"] == type_}


def logical_id(tpl: dict[str, Any], type_: str, prefix: str) -> str:
    (found,) = [k for k in resources(tpl, type_) if k.startswith(prefix)]
    return found


@pytest.mark.parametrize("env", ENVS)
def test_protected_logical_ids_never_change(synthesized: dict[str, Any], env: str) -> None:
    tpl = template(synthesized, env)
    missing = PROTECTED_IDS - set(tpl["Resources"])
    assert not missing, f"renamed or removed (CloudFormation would replace them): {sorted(missing)}"
    policy = json.loads(
        (Path(synthesized["outdir"]) / f"credmate-backend-{env}.stack-policy.json").read_text()
    )
    (deny,) = [s for s in policy["Statement"] if s["Effect"] == "Deny"]
    denied = {r.removeprefix("LogicalResourceId/") for r in deny["Resource"]}
    assert denied >= PROTECTED_IDS
    assert denied <= set(tpl["Resources"]), "the policy names only IDs in the template"


def test_stack_names_and_termination_protection(synthesized: dict[str, Any]) -> None:
    stacks = synthesized["stacks"]
    assert stacks["prod"].stack_name == "credmate-backend-prod"
    assert stacks["staging"].stack_name == "credmate-backend-staging"
    assert stacks["prod"].termination_protection is True
    assert stacks["staging"].termination_protection is False
    assert synthesized["policies"]["prod"].dependencies == [stacks["prod"]]


@pytest.mark.parametrize("env", ENVS)
def test_backend_functions_share_one_verified_bundle_behind_the_probe(
    synthesized: dict[str, Any], env: str
) -> None:
    tpl = template(synthesized, env)
    keys = set()
    for label in BACKEND:
        fn = tpl["Resources"][logical_id(tpl, "AWS::Lambda::Function", f"{label}Function")]["Properties"]
        assert fn["Handler"] == "credmate_probe.handler"
        assert fn["Runtime"] == "python3.11" and fn["MemorySize"] == 1024 and fn["Timeout"] == 60
        assert fn["Environment"]["Variables"]["CREDMATE_REAL_HANDLER"] == REAL_HANDLERS[label]
        keys.add(fn["Code"]["S3Key"])
    assert len(keys) == 1 and next(iter(keys)).endswith(".zip")


def _targets_alias(value: Any, label: str, alias_id: str) -> bool:
    text = json.dumps(value)
    return alias_id in text or (f"{label}Function" in text and ":live" in text)


@pytest.mark.parametrize("env", ENVS)
def test_event_sources_target_the_live_alias(synthesized: dict[str, Any], env: str) -> None:
    t = Template.from_json(template(synthesized, env))
    tpl = template(synthesized, env)
    worker_alias = logical_id(tpl, "AWS::Lambda::Alias", "WorkerLiveAlias")
    sched_alias = logical_id(tpl, "AWS::Lambda::Alias", "CampaignSchedulerLiveAlias")
    api_alias = logical_id(tpl, "AWS::Lambda::Alias", "BackendApiLiveAlias")
    (mapping,) = resources(tpl, "AWS::Lambda::EventSourceMapping").values()
    assert _targets_alias(mapping["Properties"]["FunctionName"], "Worker", worker_alias)
    assert mapping["Properties"]["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
    t.has_resource_properties("AWS::Events::Rule", {"ScheduleExpression": "rate(1 hour)"})
    rule_targets = [
        r["Properties"]["Targets"]
        for r in resources(tpl, "AWS::Events::Rule").values()
        if r["Properties"].get("ScheduleExpression") == "rate(1 hour)"
    ]
    assert any(
        _targets_alias(target["Arn"], "CampaignScheduler", sched_alias)
        for targets in rule_targets
        for target in targets
    )
    integration_uri = json.dumps(
        [
            m["Properties"]["Integration"]
            for m in resources(tpl, "AWS::ApiGateway::Method").values()
            if m["Properties"].get("HttpMethod") == "ANY"
        ]
    )
    assert api_alias in integration_uri
    for alias in resources(tpl, "AWS::Lambda::Alias").values():
        assert alias["Properties"]["Name"] == "live"


@pytest.mark.parametrize(
    ("env", "config"),
    [
        ("staging", "CodeDeployDefault.LambdaAllAtOnce"),
        ("prod", "CodeDeployDefault.LambdaCanary10Percent5Minutes"),
    ],
)
def test_alias_update_policy_points_at_hooks_with_rollback(
    synthesized: dict[str, Any], env: str, config: str
) -> None:
    tpl = template(synthesized, env)
    topic = logical_id(tpl, "AWS::SNS::Topic", "OnCallTopic")
    for label in BACKEND:
        alias = tpl["Resources"][logical_id(tpl, "AWS::Lambda::Alias", f"{label}LiveAlias")]
        update = alias["UpdatePolicy"]["CodeDeployLambdaAliasUpdate"]
        group_id = logical_id(tpl, "AWS::CodeDeploy::DeploymentGroup", f"{label}CanaryDeploymentGroup")
        assert update["DeploymentGroupName"] == {"Ref": group_id}
        # The environment's one pre-traffic hook serves every group; the post-traffic hook only the
        # functions with post-traffic checks (the API function's health path is routed to it).
        assert update["BeforeAllowTrafficHook"] == {
            "Ref": logical_id(tpl, "AWS::Lambda::Function", "DeploymentHooksPreTrafficHook")
        }
        if label == "BackendApi":
            assert update["AfterAllowTrafficHook"] == {
                "Ref": logical_id(tpl, "AWS::Lambda::Function", "DeploymentHooksPostTrafficHook")
            }
        else:
            assert "AfterAllowTrafficHook" not in update
        # The alias waits for the grants that name its new version, so the hook may invoke it.
        assert any(d.startswith("DeploymentGrants") for d in alias.get("DependsOn", []))
        group = tpl["Resources"][group_id]["Properties"]
        assert group["DeploymentConfigName"] == config
        assert set(group["AutoRollbackConfiguration"]["Events"]) == {
            "DEPLOYMENT_FAILURE",
            "DEPLOYMENT_STOP_ON_REQUEST",
            "DEPLOYMENT_STOP_ON_ALARM",
        }
        assert group["AlarmConfiguration"]["Enabled"] is True
        alarm_names = json.dumps(group["AlarmConfiguration"]["Alarms"])
        assert f"{label}AlarmsErrorRate" in alarm_names and f"{label}AlarmsInitErrors" in alarm_names
        # A route's exception is a 500 response to Mangum, not a failed invocation: only the API's 5XX rate
        # sees it, so BackendApi's canary rolls back on that alarm as well.
        assert ("ApiAlarmsApi5xxRate" in alarm_names) == (label == "BackendApi")
        assert len(group["AlarmConfiguration"]["Alarms"]) == (3 if label == "BackendApi" else 2)
        (trigger,) = group["TriggerConfigurations"]
        assert trigger["TriggerTargetArn"] == {"Ref": topic}
        assert {"DeploymentStart", "DeploymentSuccess", "DeploymentFailure", "DeploymentRollback"} <= set(
            trigger["TriggerEvents"]
        )


def _role_statements(tpl: dict[str, Any], function_id: str) -> list[dict[str, Any]]:
    role = tpl["Resources"][function_id]["Properties"]["Role"]["Fn::GetAtt"][0]
    return [
        s
        for type_ in ("AWS::IAM::Policy", "AWS::IAM::ManagedPolicy")
        for p in resources(tpl, type_).values()
        if {"Ref": role} in p["Properties"].get("Roles", [])
        for s in p["Properties"]["PolicyDocument"]["Statement"]
    ]


def test_the_shared_hooks_may_invoke_exactly_the_new_versions_and_report_only_to_this_application(
    synthesized: dict[str, Any],
) -> None:
    tpl = template(synthesized, "prod")
    versions = []
    for label in BACKEND:
        target = logical_id(tpl, "AWS::Lambda::Function", f"{label}Function")
        alias = logical_id(tpl, "AWS::Lambda::Alias", f"{label}LiveAlias")
        version = tpl["Resources"][alias]["Properties"]["FunctionVersion"]["Fn::GetAtt"][0]
        assert tpl["Resources"][version]["Properties"]["FunctionName"] == {"Ref": target}
        versions.append({"Ref": version})
    application = logical_id(tpl, "AWS::CodeDeploy::Application", "DeployApplication")
    for hook_prefix in ("DeploymentHooksPreTrafficHook", "DeploymentHooksPostTrafficHook"):
        hook = logical_id(tpl, "AWS::Lambda::Function", hook_prefix)
        statements = _role_statements(tpl, hook)
        invoke = [s for s in statements if "lambda:InvokeFunction" in json.dumps(s["Action"])]
        # Exactly the versions the live aliases are deployed to (the ones CodeDeploy shifts to): no alias,
        # no `ARN:*`, no $LATEST.
        (grant,) = invoke
        assert sorted(map(json.dumps, grant["Resource"])) == sorted(map(json.dumps, versions))
        report = [s for s in statements if "PutLifecycleEventHookExecutionStatus" in json.dumps(s["Action"])]
        (scope,) = report
        # This application's deployment groups only (the `/*` is a group's name).
        assert application in json.dumps(scope["Resource"]) and '"/*"' in json.dumps(scope["Resource"])
        env = tpl["Resources"][hook]["Properties"]["Environment"]["Variables"]
        assert env["TARGET_ALIAS"] == "live"
        assert not any(json.dumps(v).count("Function") for k, v in env.items() if k != "API_URL")


@pytest.mark.parametrize("env", ENVS)
def test_cfn_lint_finds_no_errors(synthesized: dict[str, Any], env: str) -> None:
    errors = cfn_lint_errors(Path(synthesized["outdir"]) / f"credmate-backend-{env}.template.json")
    assert errors == [], errors


def _context(backend_root: Path) -> dict[str, Any]:
    from tests.conftest import REPO_ROOT

    context = json.loads((REPO_ROOT / "cdk.json").read_text())["context"]
    return {**context, "backend_root": str(backend_root)}


def test_backend_root_points_the_app_at_another_backend(
    synthesized: dict[str, Any], mini_backend: Path
) -> None:
    import aws_cdk as cdk

    from app import build_app

    stacks, _ = build_app(cdk.App(context=_context(mini_backend)))
    default_hash = synthesized["stacks"]["prod"].bundle.result.asset_hash
    other = stacks["prod"].bundle.result
    assert other.asset_hash != default_hash
    assert (other.directory / "shared_pkg").is_dir(), "the mini backend's own package is bundled"


def test_backend_missing_mangum_stops_synth_naming_function(mini_backend: Path) -> None:
    import aws_cdk as cdk

    from app import build_app
    from stacks.bundling.spec import BundlingError

    (mini_backend / "requirements.txt").write_text("fastapi==0.115.6\n")
    with pytest.raises(BundlingError) as caught:
        build_app(cdk.App(context=_context(mini_backend)))
    message = str(caught.value)
    assert "function BackendApi" in message and "No module named 'mangum'" in message
    assert "mangum is not in" in message


def test_bad_backend_root_is_a_config_error(tmp_path: Path) -> None:
    import aws_cdk as cdk

    from app import build_app
    from stacks.config import ConfigError

    # A folder without a dependency manifest: the error names the manifests it looks for
    with pytest.raises(ConfigError, match=r"backend_root=.*requirements\.txt"):
        build_app(cdk.App(context=_context(tmp_path)))


@pytest.mark.parametrize("env", ENVS)
def test_post_traffic_hook_checks_this_stacks_api(synthesized: dict[str, Any], env: str) -> None:
    tpl = template(synthesized, env)
    hook_id = logical_id(tpl, "AWS::Lambda::Function", "DeploymentHooksPostTrafficHook")
    variables = tpl["Resources"][hook_id]["Properties"]["Environment"]["Variables"]
    assert "ApiF70053CD" in json.dumps(variables["API_URL"])
    assert variables["ALLOWED_ORIGIN"].startswith("https://")


@pytest.mark.parametrize("env", ENVS)
def test_each_function_tells_the_hooks_what_to_check(synthesized: dict[str, Any], env: str) -> None:
    tpl = template(synthesized, env)
    checks = {
        label: json.loads(
            tpl["Resources"][logical_id(tpl, "AWS::Lambda::Function", f"{label}Function")]["Properties"][
                "Environment"
            ]["Variables"]["CREDMATE_CHECKS"]
        )
        for label in BACKEND
    }
    mode = "fail" if env == "prod" else "warn"
    assert checks["BackendApi"] == {
        "pre": {
            "http_health": True,
            "health_path": "/health",
            "uses_database": True,
            "schema_mismatch": mode,
        },
        "post": {"health_path": "/health", "login_path": "/api/v1/auth/login", "login_body": "json"},
    }
    for label in ("Worker", "CampaignScheduler"):
        assert checks[label]["pre"]["http_health"] is False and checks[label]["post"] is None


# ---------------------------------------------------------------------------------------------------------
# Hooks: runtime, timeouts from their targets, configuration


def _newest_python_runtime() -> str:
    from aws_cdk import aws_lambda as lambda_

    versions = [
        tuple(int(part) for part in name.removeprefix("PYTHON_").split("_"))
        for name in dir(lambda_.Runtime)
        if name.startswith("PYTHON_")
    ]
    return "python" + ".".join(map(str, max(versions)))


@pytest.mark.parametrize("env", ENVS)
def test_hooks_and_check_lambdas_run_the_newest_python_runtime(synthesized: dict[str, Any], env: str) -> None:
    tpl = template(synthesized, env)
    newest = _newest_python_runtime()
    functions = resources(tpl, "AWS::Lambda::Function")
    tools = {
        k: f["Properties"]["Runtime"]
        for k, f in functions.items()
        if any(part in k for part in ("PreTrafficHook", "PostTrafficHook", "CodeDriftCheck", "HealthCheck"))
    }
    assert len([k for k in tools if "PreTrafficHook" in k]) == 1  # one for the whole environment
    assert any("CodeDriftCheck" in k for k in tools) and any("HealthCheck" in k for k in tools)
    assert set(tools.values()) == {newest}, tools
    # The backend keeps its configured runtime: the hooks' runtime never moves it.
    configured = json.loads((Path(__file__).resolve().parents[1] / "cdk.json").read_text())["context"]
    runtime = configured["environments"][env]["function"]["runtime"]
    for label in BACKEND:
        target = functions[logical_id(tpl, "AWS::Lambda::Function", f"{label}Function")]
        assert target["Properties"]["Runtime"] == runtime


def test_the_pre_traffic_hook_outlasts_the_invokes_of_the_slowest_function(
    synthesized: dict[str, Any],
) -> None:
    from stacks.hook_budget import hook_timeout_seconds

    tpl = template(synthesized, "prod")
    hook = tpl["Resources"][logical_id(tpl, "AWS::Lambda::Function", "DeploymentHooksPreTrafficHook")]
    needed = []
    for label in BACKEND:
        target = tpl["Resources"][logical_id(tpl, "AWS::Lambda::Function", f"{label}Function")]
        checks = json.loads(target["Properties"]["Environment"]["Variables"]["CREDMATE_CHECKS"])
        invokes = 2 if checks["pre"]["http_health"] else 1
        needed.append(hook_timeout_seconds(target["Properties"]["Timeout"], invokes=invokes))
        assert hook["Properties"]["Timeout"] > target["Properties"]["Timeout"] * invokes
    assert hook["Properties"]["Timeout"] == max(needed)


def _hooks_stack(code: Any, *, pre_traffic_timeout_seconds: int, log_retention_days: int) -> Any:
    import aws_cdk as cdk
    from aws_cdk import aws_codedeploy as codedeploy
    from aws_cdk import aws_sns as sns

    from stacks.constructs.deploy_hooks import DeploymentHooks, PostTrafficSettings

    stack = cdk.Stack(cdk.App(), "HookTest")
    DeploymentHooks(
        stack,
        "DeploymentHooks",
        application=codedeploy.LambdaApplication(stack, "App"),
        code=code,
        topic=sns.Topic(stack, "Topic"),
        log_retention_days=log_retention_days,
        pre_traffic_timeout_seconds=pre_traffic_timeout_seconds,
        group_count=7,
        post_traffic=PostTrafficSettings(
            api_url="https://example.invalid/v1/",
            allowed_origin="https://app.example.com",
            cors_methods=("GET",),
            cors_headers=("Content-Type",),
        ),
    )
    return stack


def test_the_shared_hooks_carry_nothing_per_function_and_keep_the_environments_log_retention(
    shared_cache: Path,
) -> None:
    from stacks.bundling.build import build_bundle
    from stacks.constructs.canary import hooks_bundle_spec, hooks_code
    from stacks.hook_budget import hook_timeout_seconds

    # GIVEN an environment whose slowest API function has a 5-minute timeout and whose logs stay a year
    stack = _hooks_stack(
        hooks_code(shared_cache, log=lambda _m: None),
        pre_traffic_timeout_seconds=hook_timeout_seconds(300, invokes=2),
        log_retention_days=365,
    )
    tpl = dict(Template.from_stack(stack).to_json())
    functions = resources(tpl, "AWS::Lambda::Function")
    pre = functions[logical_id(tpl, "AWS::Lambda::Function", "DeploymentHooksPreTrafficHook")]["Properties"]
    post = functions[logical_id(tpl, "AWS::Lambda::Function", "DeploymentHooksPostTrafficHook")]["Properties"]
    # THEN the pre-traffic hook outlasts two 300 s invokes and knows only the alias: which function and what
    # to check come from the deployment and the function (lambda_src/hooks)
    assert pre["Timeout"] == hook_timeout_seconds(300, invokes=2) > 600
    assert pre["Environment"]["Variables"] == {"TARGET_ALIAS": "live"}
    assert set(post["Environment"]["Variables"]) == {
        "TARGET_ALIAS",
        "API_URL",
        "ALLOWED_ORIGIN",
        "CORS_METHODS",
        "CORS_HEADERS",
    }
    assert post["Timeout"] == 180
    # AND each runs as many at once as there are deployment groups (one lifecycle event per group at a time)
    assert pre["ReservedConcurrentExecutions"] == post["ReservedConcurrentExecutions"] == 7
    # AND their log groups keep the environment's retention, not a fixed month
    retention = {g["Properties"]["RetentionInDays"] for g in resources(tpl, "AWS::Logs::LogGroup").values()}
    assert retention == {365}
    # AND both run the bundler's hook asset (sources plus PyYAML), whose hash is the bundle's input hash
    asset_hash = build_bundle(hooks_bundle_spec(shared_cache)).asset_hash
    cdk_key = hashlib.sha256(asset_hash.encode()).hexdigest()  # CDK hashes a custom asset hash once more
    for props in (pre, post):
        assert props["Runtime"] == _newest_python_runtime()
        assert props["Code"]["S3Key"] == f"{cdk_key}.zip"
