"""A backend with dozens of handlers deploys: every stack within CloudFormation's limits, every function with
its whole safety net, any valid name, and a clear stop where no layout fits.

The 60-function app is synthesized once, without bundle verification: the bundle is the default catalog's
(the extra functions reuse its handlers, verified by the session's full synth), and what is under test here is
the stacks.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from stacks.config import STACK_CONSTRUCT_IDS, ConfigError
from stacks.deploy_limits import MAX_RESOURCES, DeployLimitError, template_problems
from tests.catalogs import AWKWARD_NAMES, base_catalog, extra_function, mixed_catalog
from tests.conftest import REPO_ROOT

ENVS = ("staging", "prod")
SIZE = 60
FUNCTION_ALARMS = ("ErrorRate", "InitErrors", "Throttles", "TimeoutRate", "DurationP99")


def _context(functions: dict[str, Any]) -> dict[str, Any]:
    context = json.loads((REPO_ROOT / "cdk.json").read_text())["context"]
    return {**context, "functions": json.dumps(functions), "skip_bundle_verification": "true"}


@pytest.fixture(scope="module")
def sixty(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    import aws_cdk as cdk

    from app import build_app, write_policies

    outdir = tmp_path_factory.mktemp("sixty")
    app = cdk.App(context=_context(mixed_catalog(SIZE)), outdir=str(outdir))
    stacks, policies = build_app(app)
    app.synth()  # cdk-nag included: every added function without an unacknowledged finding
    write_policies(outdir, policies)
    templates = {p.name: json.loads(p.read_text()) for p in outdir.glob("*.template.json")}
    return {"outdir": outdir, "stacks": stacks, "templates": templates}


def _stack_templates(sixty: dict[str, Any], env: str) -> dict[str, dict[str, Any]]:
    """The environment's main template and its nested ones, by file name."""
    compact = f"credmatebackend{env}"
    return {
        name: t
        for name, t in sixty["templates"].items()
        if name == f"credmate-backend-{env}.template.json" or name.startswith(compact)
    }


@pytest.mark.synth
def test_every_template_is_within_cloudformations_limits(sixty: dict[str, Any]) -> None:
    for name, template in sixty["templates"].items():
        size = (sixty["outdir"] / name).stat().st_size
        assert template_problems(name, template, size) == []
    # AND the catalog really needed nested stacks: more functions than one stack could hold
    for env in ENVS:
        assert len(_stack_templates(sixty, env)) > 1


@pytest.mark.synth
@pytest.mark.parametrize("env", ENVS)
def test_every_function_keeps_alias_canary_hooks_alarms_and_stack_policy(
    sixty: dict[str, Any], env: str
) -> None:
    stack = sixty["stacks"][env]
    templates = _stack_templates(sixty, env)
    hooks = [
        (name, k)
        for name, t in templates.items()
        for k, r in t["Resources"].items()
        if r["Type"] == "AWS::Lambda::Function"
        and r["Properties"].get("Handler") in ("pre_traffic.handler", "post_traffic.handler")
    ]
    # One pre-traffic and one post-traffic hook for the whole environment, in the main stack.
    assert len(hooks) == 2 and {n for n, _k in hooks} == {f"credmate-backend-{env}.template.json"}
    outdir: Path = sixty["outdir"]
    assert set(stack.units) == set(mixed_catalog(SIZE))
    for group in stack.groups:
        gstack = group.stack
        name = (
            f"credmate-backend-{env}.template.json"
            if gstack.nested_stack_parent is None
            else f"{gstack.artifact_id}.nested.template.json"
        )
        res = templates[name]["Resources"]
        policy_file = (
            f"credmate-backend-{env}.stack-policy.json"
            if gstack.nested_stack_parent is None
            else f"credmate-backend-{env}.{gstack.node.id}.stack-policy.json"
        )
        policy = json.loads((outdir / policy_file).read_text())
        (deny,) = [s for s in policy["Statement"] if s["Effect"] == "Deny"]
        denied = {r.removeprefix("LogicalResourceId/") for r in deny["Resource"]}
        for unit in group.units:
            cid = unit.config.construct_id
            alias_id = gstack.resolve(gstack.get_logical_id(unit.guarded.alias.node.default_child))
            fn_id = gstack.resolve(gstack.get_logical_id(unit.guarded.function.node.default_child))
            group_id = gstack.resolve(gstack.get_logical_id(unit.canary.deployment_group.node.default_child))
            update = res[alias_id]["UpdatePolicy"]["CodeDeployLambdaAliasUpdate"]
            assert update["DeploymentGroupName"] == {"Ref": group_id}
            assert "BeforeAllowTrafficHook" in update, cid
            # The alias waits for its stack's grants (the hooks may invoke exactly its new version).
            assert any(d.startswith("DeploymentGrants") for d in res[alias_id].get("DependsOn", [])), cid
            rollback = json.dumps(res[group_id]["Properties"]["AlarmConfiguration"]["Alarms"])
            assert f"{cid}AlarmsErrorRate" in rollback and f"{cid}AlarmsInitErrors" in rollback
            alarms = [k for k, r in res.items() if r["Type"] == "AWS::CloudWatch::Alarm"]
            for key in FUNCTION_ALARMS:
                assert any(a.startswith(f"{cid}Alarms{key}") for a in alarms), (cid, key)
            assert {fn_id, alias_id, group_id} <= denied, cid
            drift = [
                r
                for k, r in res.items()
                if r["Type"] == "AWS::Lambda::Function" and k.startswith("CodeDriftCheck")
            ]
            assert fn_id in json.dumps(drift[0]["Properties"]["Environment"]), cid
    # The main stack's policy protects each nested stack itself.
    main_policy = json.loads((outdir / f"credmate-backend-{env}.stack-policy.json").read_text())
    (deny,) = [s for s in main_policy["Statement"] if s["Effect"] == "Deny"]
    nested = [g for g in stack.groups if g.stack.nested_stack_parent is not None]
    for group in nested:
        resource = group.stack.nested_stack_resource
        assert f"LogicalResourceId/{stack.resolve(stack.get_logical_id(resource))}" in deny["Resource"]


@pytest.mark.synth
def test_names_the_stacks_use_themselves_deploy_like_any_other(sixty: dict[str, Any]) -> None:
    units = sixty["stacks"]["prod"].units
    for name in AWKWARD_NAMES:
        construct_id = units[name].config.construct_id
        assert construct_id == (f"{name}Function" if name in STACK_CONSTRUCT_IDS else name)
        assert units[name].guarded.function.node.path.endswith(f"{construct_id}/Function")


def _resources_of(context: dict[str, Any]) -> int:
    """Every CloudFormation resource the app would deploy (nested stacks included)."""
    import aws_cdk as cdk

    from app import build_app

    app = cdk.App(context=context)
    build_app(app)
    return sum(1 for c in app.node.find_all() if isinstance(c, cdk.CfnResource))


@pytest.mark.synth
def test_one_more_function_without_a_trigger_costs_at_most_twelve_resources() -> None:
    catalog = base_catalog()
    before = _resources_of(_context(catalog))
    catalog["Extra"] = extra_function(3, "Extra")  # trigger none
    assert catalog["Extra"]["trigger"] == {"type": "none"}
    per_environment = (_resources_of(_context(catalog)) - before) / len(ENVS)
    # Function, log group, version, alias, deployment group, five alarms, two init-error metric filters.
    assert per_environment <= 12, per_environment


@pytest.mark.synth
def test_a_catalog_no_layout_fits_stops_with_one_line_naming_the_count_and_the_limit() -> None:
    import aws_cdk as cdk

    from app import build_app

    # Each routed prefix adds its API resources and methods to the main stack, which holds the API.
    catalog = base_catalog()
    for i in range(60):
        catalog[f"Route{i:03d}"] = {
            "handler": "handler.lambda_handler",
            "trigger": {"type": "api", "paths": [f"/r{i}"]},
        }
    with pytest.raises(DeployLimitError) as caught:
        build_app(cdk.App(context=_context(catalog)))
    message = str(caught.value)
    assert "credmate-backend-" in message and f"limit of {MAX_RESOURCES}" in message
    assert "\n" not in message


def test_two_functions_whose_ids_would_meet_are_refused_naming_both() -> None:
    from stacks.config import parse_environments

    context = json.loads((REPO_ROOT / "cdk.json").read_text())["context"]
    catalog = base_catalog()
    catalog["WorkerQueue"] = {"handler": "handler.lambda_handler", "trigger": {"type": "none"}}
    with pytest.raises(
        ConfigError, match=r"functions\.WorkerQueue .*WorkerQueue, already used by function Worker"
    ):
        parse_environments(context["environments"], catalog)


@pytest.mark.synth
def test_a_catch_all_function_beside_a_deep_routed_prefix_keeps_every_other_path() -> None:
    import aws_cdk as cdk
    from aws_cdk.assertions import Template

    from app import build_app

    # GIVEN the catch-all BackendApi and a function routed at a three-segment prefix
    catalog = base_catalog()
    catalog["Goals"] = {
        "handler": "handler.lambda_handler",
        "trigger": {"type": "api", "paths": ["/api/v1/goals"]},
        "health_path": "/health",
    }
    app = cdk.App(context=_context(catalog))
    stacks, _policies = build_app(app)
    stack = stacks["prod"]
    res = Template.from_stack(stack).to_json()["Resources"]
    by_path: dict[str, str] = {}

    def path_of(logical_id: str) -> str:
        props = res[logical_id]["Properties"]
        parent = props["ParentId"]
        prefix = "" if "Fn::GetAtt" in parent else path_of(parent["Ref"])
        return f"{prefix}/{props['PathPart']}"

    for k, v in res.items():
        if v["Type"] == "AWS::ApiGateway::Resource":
            by_path[path_of(k)] = k

    def alias_id(name: str) -> str:
        cfn = stack.units[name].guarded.alias.node.default_child
        assert isinstance(cfn, cdk.CfnElement)
        return str(stack.resolve(stack.get_logical_id(cfn)))

    api_alias, goals_alias = alias_id("BackendApi"), alias_id("Goals")

    def any_target(path: str) -> str:
        (method,) = [
            v["Properties"]
            for v in res.values()
            if v["Type"] == "AWS::ApiGateway::Method"
            and v["Properties"]["HttpMethod"] == "ANY"
            and v["Properties"]["ResourceId"] == {"Ref": by_path[path]}
        ]
        return json.dumps(method["Integration"]["Uri"])

    # THEN the prefix and everything below it reach Goals
    assert goals_alias in any_target("/api/v1/goals") and goals_alias in any_target("/api/v1/goals/{proxy+}")
    # AND every other path below the resources on the way still reaches the catch-all
    for path in ("/api/{proxy+}", "/api/v1/{proxy+}"):
        assert api_alias in any_target(path), path
